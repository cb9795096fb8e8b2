"""Image cleanup: checks and cleanup stage (images), quality scores (quality), faces (faces)."""
