"""`humanseg convert-paddle`: PaddleSeg weights (`.pdparams`, or a model exported to `.onnx`) as
a PyTorch state_dict for the config's model."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import torch

from humanseg.errors import HumanSegError
from humanseg.io import atomic_path
from humanseg.models.paddle_import import convert_pdparams, read_pdparams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--src model.pdparams|model.onnx --config X.yml --dst model.pt`."""
    parser.add_argument("--src", required=True, type=Path,
                        help="PaddleSeg weights: a .pdparams file, or a model exported to .onnx "
                             "(paddle2onnx; batch norm separate or folded)")
    parser.add_argument("--config", required=True, type=Path, help="config naming the model")
    parser.add_argument("--dst", required=True, type=Path, help="output PyTorch state_dict (.pt)")


def run(args: argparse.Namespace) -> int:
    """Build the config's model, map the Paddle weights onto it, save its state_dict."""
    from humanseg.builder import load_config
    from humanseg.models import build_model, without_pretrained
    from humanseg.models.onnx_import import convert_onnx

    config = load_config(args.config)
    if not isinstance(config.get("model"), Mapping):
        raise HumanSegError(f"{args.config}: no `model` section")
    model = build_model(without_pretrained(config["model"]))
    if args.src.suffix.lower() == ".onnx":
        state = convert_onnx(model, args.src)
    else:
        state = convert_pdparams(model, read_pdparams(args.src), str(args.src))
    with atomic_path(args.dst) as tmp:
        torch.save(state, tmp)
    print(f"wrote {args.dst} ({len(state)} tensors) from {args.src}")
    return 0
