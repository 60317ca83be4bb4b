"""Networks: the `MODELS` registry, `build_model(spec)` from a config's `model:` section, and
`load_model_file(model, path)` for a saved `state_dict`; `fuse(model)` folds batch norm into the
convolutions for inference.

PaddleSeg keys are accepted as PaddleSeg writes them: `pretrained` (a local `.pt` / `.pdparams`
file loads; a URL is never downloaded, only warned about), `align_corners`, `backbone_indices`,
`in_channels` and the rest of each class's constructor arguments.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.models.backbones import BACKBONES
from humanseg.models.fcn import FCN
from humanseg.models.layers import fuse as fuse
from humanseg.models.pphumanseg_lite import PPHumanSegLite

MODELS: dict[str, type[nn.Module]] = {"FCN": FCN, "PPHumanSegLite": PPHumanSegLite}
MISFITS_NAMED = 3  # keys named per kind of misfit in a load error; the rest are counted

_warned_urls: set[str] = set()


def _check_kwargs(
    factory: Callable[..., Any], name: str, spec: Mapping[str, Any], where: str
) -> None:
    """Raise HumanSegError naming every key of `spec` the constructor does not take."""
    fixed = set(factory.keywords) if isinstance(factory, partial) else set()
    accepted = set(inspect.signature(factory).parameters) - fixed
    unknown = sorted(set(spec) - accepted)
    if unknown:
        raise HumanSegError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {name} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )


def _build(
    registry: Mapping[str, Callable[..., nn.Module]], spec: Any, where: str
) -> tuple[nn.Module, str | None]:
    """Build one registry entry from `{type: Name, **kwargs}`; returns it and its `pretrained`."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise HumanSegError(f"{where}: must be a mapping with a `type` key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = spec["type"]
    if not isinstance(name, str) or name not in registry:
        raise HumanSegError(
            f"{where}.type: unknown {name!r} (known: {', '.join(sorted(registry))})"
        )
    factory = registry[name]
    _check_kwargs(factory, name, kwargs, where)
    if "backbone" in kwargs:
        kwargs["backbone"] = build_backbone(kwargs["backbone"], f"{where}.backbone")
    try:
        module = factory(**kwargs)
    except TypeError as error:
        raise HumanSegError(f"{where}: {name}: {error}") from None
    return module, kwargs.get("pretrained")


def build_backbone(spec: Any, where: str = "model.backbone") -> nn.Module:
    """A backbone from `{type: HRNet_W18, ...}`, its `pretrained` weights loaded if local."""
    backbone, pretrained = _build(BACKBONES, spec, where)
    load_pretrained(backbone, pretrained, f"{where}.pretrained")
    return backbone


def build_model(spec: Any) -> nn.Module:
    """A model from a config's `model:` section; unknown types or keys raise HumanSegError."""
    model, pretrained = _build(MODELS, spec, "model")
    load_pretrained(model, pretrained, "model.pretrained")
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
