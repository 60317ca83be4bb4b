"""`humanseg export`: write a trained model as ONNX (fp32, or int8 calibrated on photos) and
verify it against PyTorch (`humanseg.deploy.export`)."""

from __future__ import annotations

import argparse

import torch

from humanseg.cli.options import add_input_size, add_model
from humanseg.data.inference import build_inference_transforms, config_input_size
from humanseg.deploy.export import CALIBRATION_COUNT, calibration_batches, export_int8, export_onnx
from humanseg.engine.runtime import load_inference_model
from humanseg.errors import HumanSegError
from humanseg.io import check_output_path, list_images
from humanseg.weights import resolve_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg export`."""
    add_model(parser, model_help="model.pt state_dict (default: the packaged model)")
    parser.add_argument("--output", required=True, help="ONNX file to write, e.g. model.onnx")
    add_input_size(parser, "the config's Resize target_size")
    parser.add_argument(
        "--dynamic", action="store_true", help="accept any batch size, height and width"
    )
    parser.add_argument(
        "--quantize", choices=["int8"],
        help="int8 static quantisation (needs --calibration); default: fp32",
    )
    parser.add_argument(
        "--int8", dest="quantize", action="store_const", const="int8",
        help="same as --quantize int8",
    )
    parser.add_argument(
        "--calibration",
        help="photos for the int8 activation ranges: a folder of images (or one image)",
    )
    parser.add_argument(
        "--calibration_count", type=int, default=CALIBRATION_COUNT,
        help=f"use at most this many calibration photos, spread over the list "
        f"(default {CALIBRATION_COUNT})",
    )


def run(args: argparse.Namespace) -> int:
    """Load the model, pick the input size, export and verify; print what was written."""
    check_output_path(args.output)  # before the model loads: a bad --output fails at once
    config_path, model_path = resolve_paths(args.config, args.model_path)
    config, model = load_inference_model(config_path, model_path, torch.device("cpu"))
    input_size = tuple(args.input_size) if args.input_size else config_input_size(config)
    if input_size is None:
        raise HumanSegError(
            "--input_size: the config has no Resize target_size; give --input_size H W"
        )
    shape = "dynamic N, H, W" if args.dynamic else f"1x3x{input_size[0]}x{input_size[1]}"
    if args.quantize is None:
        difference = export_onnx(model, args.output, input_size, dynamic=args.dynamic)
        print(
            f"wrote {args.output} (input {shape}; max probability difference vs PyTorch "
            f"{difference:.1e})"
        )
        return 0
    if not args.calibration:
        raise HumanSegError(
            "--quantize int8 needs --calibration PHOTOS (a folder of photos like the ones the "
            "model will see; 50-100 are enough)"
        )
    if "val_dataset" not in config or "transforms" not in config["val_dataset"]:
        raise HumanSegError(f"{config_path}: val_dataset.transforms is needed for calibration")
    preprocess = build_inference_transforms(config["val_dataset"]["transforms"]).preprocess
    batches = calibration_batches(
        list_images(args.calibration), preprocess, input_size, args.calibration_count
    )
    difference, agreement = export_int8(
        model, args.output, input_size, batches, dynamic=args.dynamic
    )
    print(
        f"wrote {args.output} (int8, input {shape}; fp32 export vs PyTorch max probability "
        f"difference {difference:.1e}; int8 keeps the fp32 class of {agreement:.2%} of the "
        f"pixels of {len(batches)} calibration photos)"
    )
    return 0
