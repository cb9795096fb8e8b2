"""Edge service: camera frames -> faces -> emotions -> aggregate counts per window.

Submodules are imported directly (`emotionops.edge.service`, `.report`, ...) so that, e.g.,
the warehouse loader can use `EmotionWindow` without pulling in OpenCV or the interpreter.
Only aggregate counts leave this package: never frames, crops or embeddings.
"""
