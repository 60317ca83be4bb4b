"""`build_dataset(spec)` and `check_dataset_spec(spec)` over the `DATASETS` registry (re-exported
by `humanseg.data`); importing this module registers every built-in dataset.

A spec is a config's `train_dataset` / `val_dataset` mapping: `{type: Name, **constructor
arguments}`. Its `transforms` list (PaddleSeg names) is built into a pipeline before the dataset
class sees it, so every registered class receives a callable `transforms(image, label)`. In
`val` / `test` mode that is the inference pipeline (`humanseg.data.inference`, deterministic ops
only), which also tells evaluation where the photo lies in the network input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from humanseg.data import composite  # noqa: F401  (registers PortraitComposite)
from humanseg.data.datasets import DATASETS
from humanseg.data.inference import build_inference_transforms
from humanseg.data.transforms import build_transforms
from humanseg.errors import KeyPath

__all__ = ["DATASETS", "build_dataset", "check_dataset_spec", "transforms_builder"]


def transforms_builder(spec: Any) -> Callable[..., Any]:
    """Inference transforms for evaluation modes, the training pipeline otherwise."""
    mode = spec.get("mode") if isinstance(spec, Mapping) else None
    return build_inference_transforms if mode in ("val", "test") else build_transforms


def check_dataset_spec(spec: Any, path: KeyPath = ()) -> None:
    """Type known, keys known, required keys present, transforms valid (built, which is cheap);
    the dataset itself is not built (its files may live elsewhere). Raise SpecError."""
    DATASETS.check(spec, path, nested={"transforms": transforms_builder(spec)})


def build_dataset(spec: Any, path: KeyPath = ()) -> Dataset:
    """The dataset a spec describes, with its transforms list built into a pipeline."""
    return DATASETS.build(spec, path, nested={"transforms": transforms_builder(spec)})
