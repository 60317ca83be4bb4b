"""Fixed train/validation split by file-stem hash, so the held-out photos never change between runs.

A sample belongs to the validation set when the first 8 bytes of SHA-1(stem), read as an unsigned
integer and scaled to [0, 1), fall below `val_fraction`. The decision depends only on the stem (not
on the folder, the file order or Python's randomised `hash`), so adding or removing other files
never moves a photo between train and validation, and every tool, machine and seed agrees.
"""

from __future__ import annotations

import hashlib

from humanseg.errors import HumanSegError

DEFAULT_VAL_FRACTION = 0.15
_HASH_BYTES = 8
_HASH_RANGE = float(1 << (8 * _HASH_BYTES))


def stem_fraction(stem: str) -> float:
    """Map a file stem to a fixed pseudo-random number in [0, 1) (SHA-1, first 8 bytes)."""
    digest = hashlib.sha1(stem.encode("utf-8")).digest()[:_HASH_BYTES]
    return int.from_bytes(digest, "big") / _HASH_RANGE


def is_validation(stem: str, val_fraction: float = DEFAULT_VAL_FRACTION) -> bool:
    """True when the sample named `stem` is held out for validation."""
    if not 0.0 <= val_fraction <= 1.0:
        raise HumanSegError(f"val_fraction: must be in [0, 1], got {val_fraction}")
    return stem_fraction(stem) < val_fraction

