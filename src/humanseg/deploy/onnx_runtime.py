"""The onnxruntime backend: an exported ONNX model as the `forward` the engine's Predictor calls.

`humanseg predict --backend onnxruntime --model_path model.onnx` and `humanseg video --backend
onnxruntime` build an `OnnxRuntimeForward` and hand it to `Predictor(forward, transforms,
num_classes)`; it maps a normalised float32 batch [N, 3, h, w] to logits [N, C, h, w]. A model
that outputs softmax probabilities (as PaddleSeg's exports often do) gives their logarithms, so
the Predictor's softmax returns the model's own probabilities.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from humanseg.errors import HumanSegError

DEFAULT_THREADS = 2
# float32 softmax sums stray from 1 by a few ulps per class; logits miss 1 by far more.
PROBABILITY_SUM_TOLERANCE = 1e-4


def _dimension(value: object) -> int | None:
    """A fixed ONNX dimension as an int, or None for a named (dynamic) one."""
    return value if isinstance(value, int) and value > 0 else None


def _first_line(error: Exception) -> str:
    """The first line of an onnxruntime error (its messages run on with C++ details)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class OnnxRuntimeForward:
    """Callable wrapper around an onnxruntime CPU session for one exported segmentation model."""

    def __init__(
        self, model_path: str | os.PathLike, num_threads: int = DEFAULT_THREADS, spin: bool = False
    ) -> None:
        """Load `model_path` with `num_threads` intra-op threads (2: a real-time laptop budget).

        `spin=False` lets idle worker threads sleep instead of busy-waiting: on a CPU shared with
        other work (a video call, a browser) spinning threads fight for the cores and latency
        multiplies; on an idle machine spinning saves little on a model this small.
        """
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise HumanSegError(f"{self.model_path}: ONNX model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises bare pybind classes (InvalidProtobuf, ...)
            raise HumanSegError(
                f"{self.model_path}: not a loadable ONNX model ({_first_line(error)}); "
                "export one with `humanseg export`"
            ) from error
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) < 1:
            raise HumanSegError(
                f"{self.model_path}: expected one image input [N, 3, H, W] and a logits output, "
                f"found inputs {[(i.name, i.shape) for i in inputs]}"
            )
        self.input_name = inputs[0].name
        batch_size, channels, height, width = (_dimension(d) for d in inputs[0].shape)
        self.batch_size = batch_size
        if channels not in (None, 3):
            raise HumanSegError(f"{self.model_path}: input has {channels} channels, expected 3")
        self.input_size: tuple[int, int] | None = (
            (height, width) if height is not None and width is not None else None
        )
        output_shape = outputs[0].shape
        self.num_classes = _dimension(output_shape[1]) if len(output_shape) == 4 else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits float32 [N, C, h, w] for a normalised float32 batch [N, 3, h, w]."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise HumanSegError(f"{self.model_path}: batch must be [N, 3, H, W], got {batch.shape}")
        if self.input_size is not None and tuple(batch.shape[2:]) != self.input_size:
            height, width = self.input_size
            raise HumanSegError(
                f"{self.model_path}: exported for input {height}x{width} (HxW), got "
                f"{batch.shape[2]}x{batch.shape[3]}; resize to that size in the config's val "
                "transforms or re-export with --dynamic"
            )
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        # A model exported with a fixed batch size takes the batch in chunks of that size.
        step = self.batch_size or len(batch)
        try:
            chunks = [
                self.session.run(None, {self.input_name: batch[start : start + step]})[0]
                for start in range(0, len(batch), step)
            ]
        except Exception as error:  # shape errors inside the graph (e.g. a side not divisible)
            raise HumanSegError(
                f"{self.model_path}: inference failed for input {tuple(batch.shape)}: "
                f"{_first_line(error)}"
            ) from error
        output = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return _probabilities_as_logits(output) if _is_softmax_output(output) else output


def _is_softmax_output(output: np.ndarray) -> bool:
    """Whether a model's output [N, C, h, w] is already softmax probabilities (PaddleSeg exports
    often end in Softmax): every value in [0, 1] and each pixel's classes summing to 1. Logits
    practically never do both at every pixel."""
    if output.ndim != 4 or output.shape[1] < 2 or output.size == 0:
        return False
    in_range = output.min() >= 0.0 and output.max() <= 1.0
    return bool(in_range and np.abs(output.sum(axis=1) - 1.0).max() <= PROBABILITY_SUM_TOLERANCE)


def _probabilities_as_logits(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits whose softmax gives the probabilities back (a zero becomes the
    log of the smallest positive float32, whose softmax share is 0 to float32 precision)."""
    tiny = np.finfo(np.float32).tiny
    return np.log(np.maximum(probabilities, tiny)).astype(np.float32)
