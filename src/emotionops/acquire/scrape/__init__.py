"""Scraping stage: image-search engines as configuration, a local search stand-in, the driver."""
