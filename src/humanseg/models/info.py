"""`humanseg info --config X`: a model's parameter count and FLOPs at the config's input size."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from humanseg.errors import HumanSegError


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


def config_input_size(config: Mapping[str, Any]) -> tuple[int, int] | None:
    """(H, W) from the val (else train) transforms' first Resize; PaddleSeg writes [W, H]."""
    for section in ("val_dataset", "train_dataset"):
        transforms = (config.get(section) or {}).get("transforms") or []
        for transform in transforms:
            if isinstance(transform, Mapping) and transform.get("type") == "Resize":
                target = transform.get("target_size", (512, 512))  # PaddleSeg's default
                width, height = (target, target) if isinstance(target, int) else target
                return int(height), int(width)
    return None


def describe(spec: Mapping[str, Any]) -> str:
    """`FCN (HRNet_W18)` or `PPHumanSegLite`."""
    backbone = spec.get("backbone")
    suffix = f" ({backbone['type']})" if isinstance(backbone, Mapping) else ""
    return f"{spec.get('type')}{suffix}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config X.yml [--input_size H W]`."""
    parser.add_argument("--config", required=True, type=Path, help="config naming the model")
    parser.add_argument(
        "--input_size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: the val transforms' Resize target_size)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the model (no weights loaded) and print its size and cost."""
    from humanseg.builder import load_config
    from humanseg.models import build_model, without_pretrained

    config = load_config(args.config)
    if not isinstance(config.get("model"), Mapping):
        raise HumanSegError(f"{args.config}: no `model` section")
    size = tuple(args.input_size) if args.input_size else config_input_size(config)
    if size is None:
        raise HumanSegError(
            f"{args.config}: no Resize target_size in val_dataset/train_dataset transforms; "
            "give --input_size H W"
        )
    height, width = size
    if height < 1 or width < 1:
        raise HumanSegError(f"--input_size: sides must be positive, got {height}x{width}")
    spec = without_pretrained(config["model"])
    model = build_model(spec)
    flops = count_flops(model, height, width)
    params = count_parameters(model)
    print(f"model: {describe(spec)}, {model.num_classes} classes")
    print(f"parameters: {params:,} ({params / 1e6:.3f} M)")
    print(f"input: 1x3x{height}x{width} (NCHW)")
    print(f"FLOPs: {flops / 1e9:.3f} G (2 per multiply-add, convolutions and matrix products)")
    return 0
