"""Networks: the `MODELS` registry (`humanseg.models.base`; importing this package registers every
built-in model), `build_model(spec)` from a config's `model:` section, and
`load_model_file(model, path)` for a saved `state_dict`; `fuse(model)` folds batch norm into the
convolutions for inference.

PaddleSeg keys are accepted as PaddleSeg writes them: `pretrained` (a local `.pt` / `.pdparams`
file loads; a URL is never downloaded, only warned about), `align_corners`, `backbone_indices`,
`in_channels` and the rest of each class's constructor arguments.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from humanseg.errors import HumanSegError, KeyPath, format_key
from humanseg.models import fcn, pphumanseg_lite  # noqa: F401  (register the models)
from humanseg.models.backbones import BACKBONES
from humanseg.models.base import MODELS, SegmentationModel
from humanseg.models.layers import fuse as fuse

MODEL_PATH: KeyPath = ("model",)
MISFITS_NAMED = 3  # keys named per kind of misfit in a load error; the rest are counted

_warned_urls: set[str] = set()

__all__ = ["BACKBONES", "MODELS", "MODEL_PATH", "SegmentationModel", "build_model", "fuse",
           "load_model_file", "load_pretrained", "without_pretrained"]


def build_model(spec: Any, path: KeyPath = MODEL_PATH) -> nn.Module:
    """A model from a config's `model:` section, `pretrained` weights (its own and its
    backbone's) loaded; a bad type, key or value raises SpecError at its key path."""
    model = MODELS.build(spec, path)
    backbone = spec.get("backbone")
    if isinstance(backbone, Mapping):
        load_pretrained(model.backbone, backbone.get("pretrained"),
                        format_key((*path, "backbone", "pretrained")))
    load_pretrained(model, spec.get("pretrained"), format_key((*path, "pretrained")))
    return model


def without_pretrained(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a `model:` spec with `pretrained` removed (also from its backbone)."""
    spec = {k: v for k, v in spec.items() if k != "pretrained"}
    if isinstance(spec.get("backbone"), Mapping):
        spec["backbone"] = {k: v for k, v in spec["backbone"].items() if k != "pretrained"}
    return spec


def load_pretrained(module: nn.Module, pretrained: str | None, key: str) -> None:
    """Load a local `.pdparams` or `.pt` file into `module`; warn once that a URL is ignored."""
    if not pretrained:
        return
    text = str(pretrained)
    if "://" in text:
        if text not in _warned_urls:
            _warned_urls.add(text)
            warnings.warn(
                f"{key}: {text} is a URL; humanseg never downloads weights, so it is ignored "
                "(download the file yourself and give its local path)",
                stacklevel=3,
            )
        return
    path = Path(text)
    if path.suffix == ".pdparams":
        from humanseg.models.paddle_import import load_pdparams_into

        load_pdparams_into(module, path)
    else:
        load_model_file(module, path)


def load_model_file(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a `state_dict` saved with `torch.save` into `model`; every misfit named in one error."""
    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: model file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a non-checkpoint file
        raise HumanSegError(
            f"{path}: not a PyTorch model file ({type(error).__name__}: "
            f"{str(error).splitlines()[0].split('. ')[0] if str(error) else 'unreadable'})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise HumanSegError(f"{path}: not a model state_dict (expected a mapping of tensors)")
    check_state_dict_fits(model, state, str(path))
    model.load_state_dict(state)
    return model


def check_state_dict_fits(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise one HumanSegError listing missing, unexpected and wrongly shaped keys, if any."""
    expected = model.state_dict()
    raise_if_misfit(
        model,
        source,
        missing=[k for k in expected if k not in state],
        unexpected=[k for k in state if k not in expected],
        wrong_shape=[
            f"{k} {tuple(state[k].shape)} (model: {tuple(expected[k].shape)})"
            for k in expected
            if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
        ],
    )


def raise_if_misfit(
    model: nn.Module,
    source: str,
    missing: list[str],
    unexpected: list[str],
    wrong_shape: list[str],
) -> None:
    """One HumanSegError counting the keys of `source` that do not fit `model`, if any, and
    naming the first few of each kind (a whole other architecture would mean hundreds)."""
    problems = [
        f"{label} {len(keys)}: {', '.join(keys[:MISFITS_NAMED])}"
        + (f", ... ({len(keys) - MISFITS_NAMED} more)" if len(keys) > MISFITS_NAMED else "")
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        )
        if keys
    ]
    if problems:
        hint = ""
        if len(missing) == len(model.state_dict()):
            hint = " (no key matches: are these weights of another model or config?)"
        raise HumanSegError(
            f"{source}: weights do not fit {type(model).__name__}{hint}: " + "; ".join(problems)
        )
