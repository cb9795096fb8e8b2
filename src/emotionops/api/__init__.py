"""The FastAPI inference app and the dashboard pages (built on the library's stages)."""
