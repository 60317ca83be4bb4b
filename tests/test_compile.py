"""`--compile` (torch.compile of the predictor's BN-folded model): the same probabilities as the
eager model, and the eager model with one warning line where compiling fails."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch._inductor.config
from torch._dynamo.utils import counters

from humanseg.cli import main
from humanseg.deploy.api import load_predictor
from humanseg.deploy.serve import ServeSettings, load_model
from humanseg.engine.predict import TorchForward
from humanseg.engine.runtime import CompiledModel
from humanseg.models import build_model

LITE = {"type": "PPHumanSegLite", "num_classes": 2}
FAILED = "torch.compile failed, running eager instead"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch and leaves no compiled graphs behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compile_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of the fallback warnings among `caught`."""
    return [str(w.message) for w in caught if str(w.message).startswith(FAILED)]


def test_compiled_predictor_gives_the_eager_probabilities(tmp_path: Path, write_model) -> None:
    config, model_path = write_model(tmp_path, LITE, input_size=(64, 96))
    eager = load_predictor(model_path, config)
    compiled = load_predictor(model_path, config, compile=True)
    assert isinstance(compiled.predictor.forward.model, CompiledModel)
    rng = np.random.default_rng(0)
    for height, width in ((120, 90), (50, 200)):  # both resized to the 64x96 network input
        photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            actual = compiled.predictor.infer(photo).probabilities
        expected = eager.predictor.infer(photo).probabilities
        assert compile_warnings(caught) == []
        assert compiled.predictor.forward.model.compiled is not None  # it ran compiled
        assert expected.std() > 0.05  # probabilities that vary, so agreement means something
        np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_a_failing_compiler_backend_falls_back_to_eager_with_one_warning(randomise) -> None:
    def refusing_backend(graph: torch.fx.GraphModule, example_inputs: list) -> None:
        raise RuntimeError("no compiler here")

    model = randomise(build_model(LITE))
    compiled = CompiledModel(model, backend=refusing_backend)
    images = torch.randn(2, 2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        outputs = [compiled(image) for image in images]
        expected = [model(image) for image in images]
    assert len(compile_warnings(caught)) == 1  # once, not on every call
    assert "no compiler here" in compile_warnings(caught)[0]
    assert "\n" not in compile_warnings(caught)[0]
    assert compiled.compiled is None
    for actual, wanted in zip(outputs, expected, strict=True):
        assert torch.equal(actual, wanted)


def test_no_cxx_compiler_falls_back_to_eager(tmp_path: Path, monkeypatch, randomise) -> None:
    # A fresh cache, so that inductor has to build its kernels instead of loading cached ones.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = randomise(build_model(LITE))
    forward = TorchForward(model, torch.device("cpu"), compile=True)
    batch = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
    # inductor's own patch: monkeypatch.setattr would delete the setting on undo
    with torch._inductor.config.patch({"cpp.cxx": (str(tmp_path / "no-such-g++"),)}), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        actual = forward(batch)
    [message] = compile_warnings(caught)
    assert "C++ compiler" in message
    np.testing.assert_array_equal(actual, TorchForward(model, torch.device("cpu"))(batch))


def test_compile_with_the_onnxruntime_backend_is_one_error_line(tmp_path: Path, write_model,
                                                                capsys) -> None:
    config, model_path = write_model(tmp_path)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((40, 30, 3), 128, np.uint8))
    status = main(["predict", str(photo), "--config", str(config), "--model_path",
                   str(model_path), "--backend", "onnxruntime", "--compile",
                   "--save_dir", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error.startswith("humanseg predict: error: compile: only the torch backend")
    assert "\n" not in error
    assert not (tmp_path / "out" / "label").exists()


def test_serve_compiles_before_the_first_request(tmp_path: Path, write_model) -> None:
    config, model_path = write_model(tmp_path, LITE, input_size=(64, 96))
    counters.clear()
    served = load_model(ServeSettings(config=str(config), model_path=str(model_path),
                                      compile=True))
    assert isinstance(served.predictor.forward.model, CompiledModel)
    assert served.predictor.forward.model.compiled is not None
    assert counters["stats"]["unique_graphs"] == 1  # compiled at start-up, once
