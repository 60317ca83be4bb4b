"""Losses by PaddleSeg name: registry, builders for one spec and for a config's `loss:` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from humanseg.errors import HumanSegError, KeyPath, SpecError
from humanseg.losses.base import LOSSES
from humanseg.losses.cross_entropy import CrossEntropyLoss
from humanseg.losses.dice import DiceLoss
from humanseg.losses.lovasz import LovaszSoftmaxLoss
from humanseg.losses.mixed import MixedLoss
from humanseg.losses.semantic_connectivity import SemanticConnectivityLoss
from humanseg.registry import check_keys

LOSS_PATH: KeyPath = ("loss",)


def build_loss(spec: Any, path: KeyPath = LOSS_PATH) -> nn.Module:
    """One loss from `{type: Name, **kwargs}`; a MixedLoss builds its nested `losses:` specs."""
    return LOSSES.build(spec, path)


class ConfiguredLoss(nn.Module):
    """A config's `loss:` section: forward returns (total, {term name: detached value})."""

    def __init__(self, mix: MixedLoss) -> None:
        """Wraps the top-level mix of the config's `types` and `coef`."""
        super().__init__()
        self.mix = mix

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total for backward, and each loss's unweighted value for logging."""
        return self.mix.forward_terms(logits, labels)


def build_loss_from_config(loss_cfg: Any, path: KeyPath = LOSS_PATH) -> ConfiguredLoss:
    """From `{types: [spec, ...], coef: [number, ...]}` (PaddleSeg form); terms share the logits.
    Bad keys or values raise SpecError at their key path (`loss.types[1].type`)."""
    if not isinstance(loss_cfg, Mapping):
        raise SpecError(path, f"must be a mapping with `types` and `coef`, got {loss_cfg!r}")
    check_keys(loss_cfg, ("types", "coef"), path)
    for key in ("types", "coef"):
        if key not in loss_cfg:
            raise SpecError((*path, key), "missing")
    types = loss_cfg["types"]
    if not isinstance(types, list | tuple) or not types:
        raise SpecError((*path, "types"), f"must be a non-empty list of loss specs, got {types!r}")
    losses = [build_loss(spec, (*path, "types", index)) for index, spec in enumerate(types)]
    try:
        return ConfiguredLoss(MixedLoss(losses, loss_cfg["coef"]))
    except HumanSegError as error:
        raise SpecError((*path, "coef"), str(error)) from None


__all__ = [
    "LOSSES",
    "LOSS_PATH",
    "ConfiguredLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "MixedLoss",
    "SemanticConnectivityLoss",
    "build_loss",
    "build_loss_from_config",
]
