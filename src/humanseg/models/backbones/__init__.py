"""Backbones: `BACKBONES` maps PaddleSeg's backbone names to constructors."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from humanseg.models.backbones.hrnet import HRNET_VARIANTS, HRNet

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    name: partial(HRNet, **variant) for name, variant in HRNET_VARIANTS.items()
}
