"""`humanseg export`: write a trained model as ONNX (fixed or dynamic input size) and verify it.

The exported graph maps a normalised float32 image batch `image` [N, 3, H, W] to `logits`
[N, C, H, W], exactly like the PyTorch model. Before the file is moved into place its softmax
probabilities are compared with PyTorch's on a random input (at the export size, and for a
dynamic export at a second size and batch 2), so a broken export never reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.engine.runtime import load_inference_model, softmax
from humanseg.errors import HumanSegError
from humanseg.io import atomic_path
from humanseg.models import fuse
from humanseg.models.info import config_input_size
from humanseg.weights import resolve_paths

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 18
PROBABILITY_TOLERANCE = 1e-4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg export`."""
    parser.add_argument("--config", help="model config YAML (default: the packaged model's)")
    parser.add_argument("--model_path", help="model.pt state_dict (default: the packaged model)")
    parser.add_argument("--output", required=True, help="ONNX file to write, e.g. model.onnx")
    parser.add_argument(
        "--input_size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: the config's Resize target_size)",
    )
    parser.add_argument(
        "--dynamic", action="store_true", help="accept any batch size, height and width"
    )


def check_input_size(model: torch.nn.Module, height: int, width: int) -> None:
    """Raise unless both sides are positive multiples of the model's `size_divisor`."""
    divisor = int(getattr(model, "size_divisor", 1))
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise HumanSegError(
            f"input size {height}x{width} (HxW): both sides must be positive multiples of "
            f"{divisor}, the model's stride; choose another --input_size"
        )


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (missing-torchvision notices, deprecation warnings)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def probability_difference(model: torch.nn.Module, onnx_path: Path, batch: np.ndarray) -> float:
    """Largest absolute difference of softmax probabilities between PyTorch and onnxruntime."""
    with torch.inference_mode():
        expected = softmax(model(torch.from_numpy(batch)).numpy(), axis=1)
    actual = softmax(OnnxRuntimeForward(onnx_path)(batch), axis=1)
    return float(np.abs(expected - actual).max())


def export_onnx(
    model: torch.nn.Module,
    output: str | os.PathLike,
    input_size: tuple[int, int],
    dynamic: bool = False,
) -> float:
    """Export `model` to `output` (atomically), verify it, and return the probability difference."""
    height, width = input_size
    check_input_size(model, height, width)
    model = model.eval()
    fused = fuse(model)  # BN folded: a smaller graph; verified below against the unfused model
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, height, width, generator=generator)
    dynamic_shapes = None
    if dynamic:
        any_size = torch.export.Dim.AUTO
        dynamic_shapes = ({0: any_size, 2: any_size, 3: any_size},)
    checks = [example.numpy()]
    if dynamic:
        divisor = int(getattr(model, "size_divisor", 1))
        other = (2, 3, height + divisor, width + 2 * divisor)
        checks.append(torch.randn(*other, generator=generator).numpy())
    output = Path(output)
    with atomic_path(output) as tmp:
        try:
            with quiet_exporter():
                torch.onnx.export(
                    fused,
                    (example,),
                    str(tmp),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    opset_version=OPSET,
                    dynamo=True,
                    dynamic_shapes=dynamic_shapes,
                    external_data=False,
                    verbose=False,
                )
        except HumanSegError:
            raise
        except Exception as error:
            raise HumanSegError(
                f"{output}: ONNX export failed: {type(error).__name__}: {error}"
            ) from error
        difference = max(probability_difference(model, tmp, batch) for batch in checks)
        if difference > PROBABILITY_TOLERANCE:
            raise HumanSegError(
                f"{output}: exported model disagrees with PyTorch (max probability difference "
                f"{difference:.2e} > {PROBABILITY_TOLERANCE:g}); nothing written"
            )
    return difference


def run(args: argparse.Namespace) -> int:
    """Load the model, pick the input size, export and verify; print what was written."""
    config_path, model_path = resolve_paths(args.config, args.model_path)
    config, model = load_inference_model(config_path, model_path, torch.device("cpu"))
    input_size = tuple(args.input_size) if args.input_size else config_input_size(config)
    if input_size is None:
        raise HumanSegError(
            "--input_size: the config has no Resize target_size; give --input_size H W"
        )
    difference = export_onnx(model, args.output, input_size, dynamic=args.dynamic)
    shape = "dynamic N, H, W" if args.dynamic else f"1x3x{input_size[0]}x{input_size[1]}"
    print(
        f"wrote {args.output} (input {shape}; max probability difference vs PyTorch "
        f"{difference:.1e})"
    )
    return 0
