"""The `DATASETS` registry and `build_dataset(spec)` (re-exported by `humanseg.data`).

A spec is a config's `train_dataset` / `val_dataset` mapping: `{type: Name, **constructor
arguments}`. Its `transforms` list (PaddleSeg names) is built into a pipeline before the dataset
class sees it, so every registered class receives a callable `transforms(image, label)`. In
`val` / `test` mode that is the inference pipeline (`humanseg.data.inference`, deterministic ops
only), which also tells evaluation where the photo lies in the network input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from humanseg.config import KeyPath, SpecError, check_keys
from humanseg.data.composite import PortraitComposite
from humanseg.data.datasets import FolderDataset, ListDataset
from humanseg.data.inference import build_inference_transforms
from humanseg.data.transforms import build_transforms

# type name (as written in configs) -> dataset class; other modules register theirs here.
DATASETS: dict[str, type[Dataset]] = {
    "Dataset": ListDataset,
    "FolderDataset": FolderDataset,
    "PortraitComposite": PortraitComposite,
}


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters of a dataset class (its config keys)."""
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return params


def check_dataset_spec(spec: Any, path: KeyPath = ()) -> None:
    """Type known, keys known, required keys present, transforms valid; raise SpecError."""
    if not isinstance(spec, dict):
        raise SpecError(path, f"must be a mapping with a `type`, got {spec!r}")
    kind = spec.get("type")
    if kind not in DATASETS:
        raise SpecError(
            (*path, "type"), f"unknown dataset type {kind!r} (known: {', '.join(sorted(DATASETS))})"
        )
    params = _parameters(DATASETS[kind])
    check_keys(spec, {"type", *params}, path)
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in spec:
            raise SpecError((*path, name), f"missing (a {kind} needs it)")
    if "transforms" in spec:
        transforms_builder(spec)(spec["transforms"], (*path, "transforms"))


def transforms_builder(spec: dict[str, Any]) -> Callable[..., Any]:
    """Inference transforms for evaluation modes, the training pipeline otherwise."""
    return build_inference_transforms if spec.get("mode") in ("val", "test") else build_transforms


def build_dataset(spec: dict[str, Any], path: KeyPath = ()) -> Dataset:
    """The dataset a spec describes, with its transforms list built into a pipeline."""
    check_dataset_spec(spec, path)
    kwargs = {key: value for key, value in spec.items() if key != "type"}
    if "transforms" in kwargs:
        kwargs["transforms"] = transforms_builder(spec)(kwargs["transforms"], (*path, "transforms"))
    return DATASETS[spec["type"]](**kwargs)
