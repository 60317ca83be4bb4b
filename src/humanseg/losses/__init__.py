"""Losses by PaddleSeg name: registry, builders for one spec and for a config's `loss:` section."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.cross_entropy import CrossEntropyLoss
from humanseg.losses.dice import DiceLoss
from humanseg.losses.lovasz import LovaszSoftmaxLoss
from humanseg.losses.mixed import MixedLoss
from humanseg.losses.semantic_connectivity import SemanticConnectivityLoss

LOSSES: dict[str, type[nn.Module]] = {
    "CrossEntropyLoss": CrossEntropyLoss,
    "DiceLoss": DiceLoss,
    "LovaszSoftmaxLoss": LovaszSoftmaxLoss,
    "MixedLoss": MixedLoss,
    "SemanticConnectivityLoss": SemanticConnectivityLoss,
}


def build_loss(spec: Mapping) -> nn.Module:
    """One loss from `{type: Name, **kwargs}`; a MixedLoss builds its nested `losses:` specs."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise HumanSegError(f"loss: each loss must be a mapping with a 'type' key, got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("type")
    if name not in LOSSES:
        raise HumanSegError(f"loss: unknown type {name!r} (known: {', '.join(sorted(LOSSES))})")
    loss_class = LOSSES[name]
    accepted = set(inspect.signature(loss_class.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise HumanSegError(
            f"loss {name}: unknown argument(s) {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
    if loss_class is MixedLoss:
        for key in ("losses", "coef"):
            if key not in kwargs:
                raise HumanSegError(f"loss MixedLoss: missing '{key}'")
        if not isinstance(kwargs["losses"], list | tuple):
            raise HumanSegError("loss MixedLoss: 'losses' must be a list of loss specs")
        kwargs["losses"] = [build_loss(inner) for inner in kwargs["losses"]]
    try:
        return loss_class(**kwargs)
    except TypeError as error:
        raise HumanSegError(f"loss {name}: bad arguments: {error}") from error


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


def build_loss_from_config(loss_cfg: Mapping) -> ConfiguredLoss:
    """From `{types: [spec, ...], coef: [number, ...]}` (PaddleSeg form); terms share the logits."""
    if not isinstance(loss_cfg, Mapping):
        raise HumanSegError(f"loss: expected a mapping with 'types' and 'coef', got {loss_cfg!r}")
    unknown = sorted(set(loss_cfg) - {"types", "coef"})
    if unknown:
        names = ", ".join(map(str, unknown))
        raise HumanSegError(f"loss: unknown key(s) {names} (expected types and coef)")
    for key in ("types", "coef"):
        if key not in loss_cfg:
            raise HumanSegError(f"loss: missing '{key}'")
    types = loss_cfg["types"]
    if not isinstance(types, list | tuple) or not types:
        raise HumanSegError("loss: 'types' must be a non-empty list of loss specs")
    return ConfiguredLoss(MixedLoss([build_loss(spec) for spec in types], loss_cfg["coef"]))


__all__ = [
    "LOSSES",
    "ConfiguredLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "MixedLoss",
    "SemanticConnectivityLoss",
    "build_loss",
    "build_loss_from_config",
]
