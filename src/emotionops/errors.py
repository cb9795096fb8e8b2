"""Exception base: every error a user can cause derives from it, so the CLI prints a clear
message instead of a traceback."""


class EmotionOpsError(Exception):
    """A problem the user can fix (bad input, missing tool, server down, port in use...)."""
