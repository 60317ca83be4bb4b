"""`humanseg info --config X`: a model's parameter count and FLOPs at the config's input size."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from humanseg.cli.options import add_input_size
from humanseg.data.inference import config_input_size
from humanseg.errors import HumanSegError
from humanseg.models.info import count_flops, count_parameters, describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config X.yml [--input_size H W]`."""
    parser.add_argument("--config", required=True, type=Path, help="config naming the model")
    add_input_size(parser, "the val transforms' Resize target_size")


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
