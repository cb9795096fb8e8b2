"""EmotionOps: keeps a facial-emotion classifier fresh and ships it to cameras."""

__version__ = "0.1.0"
