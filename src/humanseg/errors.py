"""The one exception type users see: the CLI prints its message as a single line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable

KeyPath = tuple[str | int, ...]


class HumanSegError(Exception):
    """A user-facing error: bad input, bad config, missing file. Its message names what is wrong."""


class HumanSegWarning(UserWarning):
    """Damaged or suspicious input that still gave a result (a truncated photo or video, labels
    that teach nothing); the CLI prints its message as one line."""


def format_key(path: Iterable[str | int]) -> str:
    """`('train_dataset', 'transforms', 2, 'prob')` -> `train_dataset.transforms[2].prob`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


class SpecError(HumanSegError):
    """A bad key or value at `path` inside a config section; config loading adds the file name
    (the file that set that key) in front of the message."""

    def __init__(self, path: KeyPath, message: str) -> None:
        """Keep the key path apart from the message so the loader can find the file that set it;
        an empty path (a spec built outside any config) leaves the message alone."""
        self.path = tuple(path)
        self.detail = message
        super().__init__(f"{format_key(self.path)}: {message}" if self.path else message)
