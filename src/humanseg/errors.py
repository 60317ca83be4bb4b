"""The one exception type users see: the CLI prints its message as a single line and exits 2."""


class HumanSegError(Exception):
    """A user-facing error: bad input, bad config, missing file. Its message names what is wrong."""


class HumanSegWarning(UserWarning):
    """Damaged or suspicious input that still gave a result (a truncated photo or video, labels
    that teach nothing); the CLI prints its message as one line."""
