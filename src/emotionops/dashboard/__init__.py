"""The reporting dashboard: pages, routes and the analytics data layer they read."""
