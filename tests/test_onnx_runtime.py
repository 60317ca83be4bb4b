"""The onnxruntime backend on models that end in logits and on models that end in Softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.engine.runtime import softmax

# A 1x1 convolution from 3 channels to 2 classes: logits = WEIGHTS @ pixel + BIAS.
WEIGHTS = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=np.float32)
BIAS = np.array([0.25, -0.5], dtype=np.float32)


def write_model(path: Path, with_softmax: bool) -> Path:
    """A fixed-size [1, 3, 4, 6] -> [1, 2, 4, 6] model: the convolution, then Softmax or not."""
    conv = helper.make_node("Conv", ["x", "w", "b"], ["logits" if with_softmax else "y"])
    nodes = [conv] + ([helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
                      if with_softmax else [])
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 6])],
        [numpy_helper.from_array(WEIGHTS.reshape(2, 3, 1, 1), "w"),
         numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (1, 3, 4, 6)).astype(np.float32)


def expected_logits(batch: np.ndarray) -> np.ndarray:
    """The convolution worked out with NumPy: [1, 2, 4, 6]."""
    return np.einsum("kc,nchw->nkhw", WEIGHTS, batch) + BIAS[None, :, None, None]


def test_a_logits_model_passes_its_logits_through(tmp_path: Path, batch: np.ndarray) -> None:
    forward = OnnxRuntimeForward(write_model(tmp_path / "logits.onnx", with_softmax=False))
    np.testing.assert_allclose(forward(batch), expected_logits(batch), atol=1e-5)


def test_a_softmax_model_gives_logits_of_its_own_probabilities(tmp_path: Path,
                                                               batch: np.ndarray) -> None:
    """PaddleSeg's released exports end in Softmax: the Predictor's softmax of what the backend
    returns must be the model's probabilities, not a softmax of probabilities (which would pull
    every pixel towards 0.5)."""
    forward = OnnxRuntimeForward(write_model(tmp_path / "softmax.onnx", with_softmax=True))
    probabilities = softmax(forward(batch), axis=1)
    np.testing.assert_allclose(probabilities, softmax(expected_logits(batch), axis=1), atol=1e-5)
    # softmax applied twice would squeeze the probabilities into [0.27, 0.73]
    assert probabilities.max() > 0.9
