"""Datasets for training and evaluation: the `DATASETS` registry and `build_dataset(spec)`.

A spec is a config's `train_dataset` / `val_dataset` mapping: `{type: Name, **constructor
arguments}`. The names below are loaded on first use, so that `humanseg.data.inference` (the
val / export transforms) imports neither torch nor albumentations.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "humanseg.data.registry",
    "build_dataset": "humanseg.data.registry",
    "check_dataset_spec": "humanseg.data.registry",
    "FolderDataset": "humanseg.data.datasets",
    "ListDataset": "humanseg.data.datasets",
    "build_transforms": "humanseg.data.transforms",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` when it is first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'humanseg.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = sorted(_EXPORTS)
