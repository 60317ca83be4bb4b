"""A command that starts fast: what each inference path imports, the ONNX cache, unchanged masks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanseg.weights import DEFAULT_CONFIG, DEFAULT_MODEL, DEFAULT_ONNX

HEAVY = ("torch", "albumentations", "numba")
# Runs the CLI in a fresh interpreter, then reports its exit code and which heavy modules loaded.
PROBE = """\
import json, sys
from humanseg.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps([code, sorted(m for m in {heavy!r} if m in sys.modules)]))
"""


def probe(argv: list[str], cache: Path) -> tuple[int, list[str]]:
    """Run `humanseg ARGV` cold with XDG_CACHE_HOME=cache; (exit code, heavy modules loaded)."""
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], env=env,
                            capture_output=True, text=True, check=False)
    code, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    return code, loaded


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory, blob_sample) -> Path:
    """One photo of a blob person."""
    image, _ = blob_sample(np.random.default_rng(7), 120, 90)
    path = tmp_path_factory.mktemp("photo") / "one.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def read_output(folder: Path, kind: str) -> np.ndarray:
    """One output image of a predict run on `one.png`, as stored."""
    return cv2.imread(str(folder / kind / "one.png"), cv2.IMREAD_UNCHANGED)


@pytest.mark.skipif(not DEFAULT_ONNX.is_file(), reason="packaged ONNX model absent")
def test_help_and_each_backend_import_only_what_they_use(photo: Path, tmp_path: Path) -> None:
    assert probe(["--help"], tmp_path) == (0, [])
    # the default (auto) runs the packaged model's shipped ONNX file: no torch, nothing cached
    default = probe(["predict", str(photo), "--save_dir", str(tmp_path / "auto")], tmp_path)
    assert default == (0, []) and not (tmp_path / "humanseg").exists()
    shipped = probe(["predict", str(photo), "--backend", "onnxruntime",
                     "--save_dir", str(tmp_path / "onnxruntime")], tmp_path)
    assert shipped == (0, []) and not (tmp_path / "humanseg").exists()
    on_torch = probe(["predict", str(photo), "--backend", "torch",
                      "--save_dir", str(tmp_path / "torch")], tmp_path)
    assert on_torch == (0, ["torch"])  # no albumentations
    assert np.array_equal(read_output(tmp_path / "auto", "label"),
                          read_output(tmp_path / "onnxruntime", "label"))
    from_torch = read_output(tmp_path / "torch", "cutout").astype(int)
    assert np.abs(from_torch - read_output(tmp_path / "auto", "cutout")).max() <= 1


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")
def test_onnxruntime_predict_exports_a_pt_model_once_then_never_imports_torch(
    photo: Path, tmp_path: Path
) -> None:
    # the packaged files copied elsewhere: a user's own .pt model, which has no shipped ONNX
    config, model = tmp_path / "mine.yml", tmp_path / "mine.pt"
    shutil.copyfile(DEFAULT_CONFIG, config)
    shutil.copyfile(DEFAULT_MODEL, model)
    cache = tmp_path / "cache"
    argv = ["predict", str(photo), "--backend", "onnxruntime", "--config", str(config)]
    first = probe([*argv, "--model_path", str(model), "--save_dir", str(tmp_path / "first")],
                  cache)
    assert first == (0, ["torch"])  # the .pt is exported into the cache
    cached = list((cache / "humanseg" / "onnx").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".onnx"
    second = probe([*argv, "--model_path", str(model), "--save_dir", str(tmp_path / "second")],
                   cache)
    assert second == (0, [])
    assert list((cache / "humanseg" / "onnx").iterdir()) == cached
    # auto runs a given .onnx file on onnxruntime
    given = probe(["predict", str(photo), "--config", str(config), "--model_path",
                   str(cached[0]), "--save_dir", str(tmp_path / "given")], cache)
    assert given == (0, [])
    labels = [read_output(tmp_path / run, "label") for run in ("first", "second", "given")]
    assert np.array_equal(labels[0], labels[1]) and np.array_equal(labels[0], labels[2])
    # auto runs another .pt model on torch
    on_torch = probe(["predict", str(photo), "--config", str(config), "--model_path", str(model),
                      "--save_dir", str(tmp_path / "torch")], cache)
    assert on_torch == (0, ["torch"])
    from_torch = read_output(tmp_path / "torch", "cutout").astype(int)
    assert np.abs(from_torch - read_output(tmp_path / "first", "cutout")).max() <= 1


def test_auto_picks_onnxruntime_only_where_it_runs_the_model_as_asked() -> None:
    from humanseg.deploy.api import resolve_backend

    other_model = Path("elsewhere") / "model.pt"
    assert resolve_backend("auto", DEFAULT_CONFIG, other_model) == "torch"
    assert resolve_backend("auto", DEFAULT_CONFIG, Path("exported.ONNX")) == "onnxruntime"
    assert resolve_backend("torch", DEFAULT_CONFIG, Path("exported.onnx")) == "torch"
    assert resolve_backend("onnxruntime", DEFAULT_CONFIG, other_model) == "onnxruntime"
    if DEFAULT_ONNX.is_file():
        assert resolve_backend("auto", DEFAULT_CONFIG, DEFAULT_MODEL) == "onnxruntime"
        # CUDA and autocast precisions are the torch backend's
        assert resolve_backend("auto", DEFAULT_CONFIG, DEFAULT_MODEL, device="cuda") == "torch"
        assert resolve_backend("auto", DEFAULT_CONFIG, DEFAULT_MODEL, precision="bf16") == "torch"
        assert resolve_backend("auto", DEFAULT_CONFIG, DEFAULT_MODEL, compile=True) == "torch"


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")
def test_masks_match_the_previous_resize_the_probabilities_path(blob_sample) -> None:
    # Before this change the Predictor resized the softmax of a non-padding pipeline's output
    # to the photo with cv2.resize; the new one samples the same bilinear map with cv2.warpAffine
    # (fractional positions in 1/32 steps), so masks may differ only where P is within ~1% of 0.5.
    from humanseg.deploy.api import load_predictor
    from humanseg.engine.runtime import softmax

    predictor = load_predictor(refine_edges=False).predictor  # the resampling alone
    rng = np.random.default_rng(11)
    changed = total = 0
    for height, width in ((480, 640), (301, 207), (1000, 750)):
        image, _ = blob_sample(rng, height, width)
        logits = predictor.forward(predictor.transforms.preprocess(image)[None])[0]
        old = cv2.resize(softmax(logits, axis=0).transpose(1, 2, 0), (width, height),
                         interpolation=cv2.INTER_LINEAR).argmax(axis=2)
        new = predictor.infer(image).label()
        changed += int((old != new).sum())
        total += old.size
    assert changed <= total * 1e-3, changed


@pytest.mark.skipif(not DEFAULT_ONNX.is_file(), reason="packaged ONNX model absent")
def test_the_shipped_onnx_file_is_the_packaged_model() -> None:
    # `tools/train_default.sh ship` exports it; a new default.pt without a new export fails here
    import onnxruntime as ort
    import torch

    from humanseg.engine.runtime import load_inference_model, softmax

    session = ort.InferenceSession(str(DEFAULT_ONNX), providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(3).uniform(-1, 1, (1, 3, 192, 192)).astype(np.float32)
    logits = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    _, model = load_inference_model(DEFAULT_CONFIG, DEFAULT_MODEL, torch.device("cpu"))
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(softmax(logits, axis=1), softmax(expected, axis=1), atol=1e-4)
    # and it is the export form (`export_form`): the decoder joins 32 + 64 channels, not 18 + 64
    import onnx

    widths = {tuple(weight.dims[:2]) for weight in onnx.load(str(DEFAULT_ONNX)).graph.initializer
              if len(weight.dims) == 4}
    assert (96, 1) in widths and (64, 96) in widths and (82, 1) not in widths
