"""`humanseg export`: write a trained model as ONNX (fixed or dynamic input size) and verify it.

The exported graph (batch norm folded into the convolutions) maps a normalised float32 image
batch `image` [N, 3, H, W] to `logits` [N, C, H, W], exactly like the PyTorch model. Before the
file is moved into place its softmax probabilities are compared with PyTorch's on a random input
(at the export size, and for a dynamic export at a second size and batch 2), so a broken export
never reaches the user.

`--quantize int8` adds onnxruntime's static quantisation (int8 weights per channel, uint8
activations whose ranges are calibrated on `--calibration` photos): the file is checked against
the fp32 export on those photos and refused if fewer than `INT8_MIN_AGREEMENT` of the pixels keep
their class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.engine.runtime import softmax
from humanseg.errors import HumanSegError
from humanseg.io import atomic_path, read_image
from humanseg.models import SegmentationModel, fuse

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 18
PROBABILITY_TOLERANCE = 1e-4
# An int8 model is a different model: it must keep the class of 98% of the pixels of the fp32
# export on the calibration photos (the packaged model keeps 99.5-99.9% on held-out photos).
INT8_MIN_AGREEMENT = 0.98
CALIBRATION_COUNT = 64


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
    # BN folded (and layers widened for onnxruntime's kernels): verified below against `model`
    fused = model.export_form() if isinstance(model, SegmentationModel) else fuse(model)
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


class _CalibrationReader:
    """onnxruntime's calibration data reader protocol over a list of input batches."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next `{input name: batch}`, or None when the batches are used up."""
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def calibration_batches(
    paths: Sequence[Path], preprocess: Callable[[np.ndarray], np.ndarray],
    input_size: tuple[int, int], count: int,
) -> list[np.ndarray]:
    """Up to `count` photos spread over `paths`, preprocessed as for inference, as [1, 3, H, W]
    batches at `input_size` (resized if the preprocessing gives another size)."""
    if count < 1:
        raise HumanSegError(f"--calibration_count must be >= 1, got {count}")
    if not paths:
        raise HumanSegError("--calibration: no images found")
    chosen_count = min(count, len(paths))
    chosen = [paths[round(i * len(paths) / chosen_count)] for i in range(chosen_count)]
    height, width = input_size
    batches = []
    for path in chosen:
        chw = np.asarray(preprocess(read_image(path)), dtype=np.float32)
        if chw.shape[1:] != (height, width):
            hwc = cv2.resize(
                chw.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR
            )
            chw = hwc.reshape(height, width, -1).transpose(2, 0, 1)
        batches.append(np.ascontiguousarray(chw[None]))
    return batches


def class_agreement(reference: Path, candidate: Path, batches: Sequence[np.ndarray]) -> float:
    """Share of pixels to which two ONNX models give the same class, over `batches`."""
    first, second = OnnxRuntimeForward(reference), OnnxRuntimeForward(candidate)
    same = [np.mean(first(b).argmax(axis=1) == second(b).argmax(axis=1)) for b in batches]
    return float(np.mean(same))


def quantize_int8(fp32_path: Path, output: Path, calibration: Sequence[np.ndarray]) -> None:
    """onnxruntime static quantisation of `fp32_path` to `output` (QDQ format, int8 weights per
    output channel, uint8 activations with min-max ranges observed on `calibration`)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"  # shapes inferred, graph optimised
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared), str(output), _CalibrationReader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )


def export_int8(
    model: torch.nn.Module,
    output: str | os.PathLike,
    input_size: tuple[int, int],
    calibration: Sequence[np.ndarray],
    dynamic: bool = False,
) -> tuple[float, float]:
    """Export `model` quantised to int8 (atomically); returns the fp32 export's probability
    difference vs PyTorch and the int8 model's pixel agreement with the fp32 export."""
    output = Path(output)
    with tempfile.TemporaryDirectory() as work, atomic_path(output) as tmp:
        fp32_path = Path(work) / "fp32.onnx"
        difference = export_onnx(model, fp32_path, input_size, dynamic=dynamic)
        with quiet_exporter():
            quantize_int8(fp32_path, tmp, calibration)
        agreement = class_agreement(fp32_path, tmp, calibration)
        if agreement < INT8_MIN_AGREEMENT:
            raise HumanSegError(
                f"{output}: the int8 model keeps the fp32 class of only {agreement:.1%} of the "
                f"calibration pixels (< {INT8_MIN_AGREEMENT:.0%}); nothing written (export fp32)"
            )
    return difference, agreement
