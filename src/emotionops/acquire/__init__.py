"""Acquisition: scrape image search (scrape/), clean URLs (urls), guard (SSRF) and download."""
