"""A model's size and cost: parameter count and FLOPs (`humanseg info`, benchmarks, docs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on a 1x3xHxW input (2 per multiply-add; convs and matmuls)."""
    in_channels = int(getattr(model, "in_channels", 3))
    if hasattr(model, "backbone"):
        in_channels = int(getattr(model.backbone, "in_channels", in_channels))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, in_channels, height, width))
    return int(counter.get_total_flops())


def describe(spec: Mapping[str, Any]) -> str:
    """`FCN (HRNet_W18)` or `PPHumanSegLite`."""
    backbone = spec.get("backbone")
    suffix = f" ({backbone['type']})" if isinstance(backbone, Mapping) else ""
    return f"{spec.get('type')}{suffix}"
