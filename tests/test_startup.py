"""A command that starts fast: what each inference path imports, the ONNX cache, unchanged masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanseg.weights import DEFAULT_CONFIG, DEFAULT_MODEL

HEAVY = ("torch", "albumentations")
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


def test_help_and_the_torch_backend_do_not_import_what_they_do_not_use(
    photo: Path, tmp_path: Path
) -> None:
    assert probe(["--help"], tmp_path) == (0, [])
    code, loaded = probe(["predict", str(photo), "--save_dir", str(tmp_path / "out")], tmp_path)
    assert code == 0 and loaded == ["torch"]  # the model runs on torch; no albumentations


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")
def test_onnxruntime_predict_exports_once_then_never_imports_torch(
    photo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    argv = ["predict", str(photo), "--backend", "onnxruntime"]
    first = probe([*argv, "--save_dir", str(tmp_path / "first")], cache)
    assert first == (0, ["torch"])  # the packaged .pt is exported into the cache
    cached = list((cache / "humanseg" / "onnx").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".onnx"
    second = probe([*argv, "--save_dir", str(tmp_path / "second")], cache)
    assert second == (0, [])
    assert list((cache / "humanseg" / "onnx").iterdir()) == cached
    given = probe([*argv, "--config", str(DEFAULT_CONFIG), "--model_path", str(cached[0]),
                   "--save_dir", str(tmp_path / "given")], cache)
    assert given == (0, [])
    labels = [cv2.imread(str(tmp_path / run / "label" / "one.png"), cv2.IMREAD_UNCHANGED)
              for run in ("first", "second", "given")]
    assert np.array_equal(labels[0], labels[1]) and np.array_equal(labels[0], labels[2])
    assert probe(["predict", str(photo), "--save_dir", str(tmp_path / "torch")], cache)[0] == 0
    from_torch = cv2.imread(str(tmp_path / "torch" / "cutout" / "one.png"), cv2.IMREAD_UNCHANGED)
    from_onnx = cv2.imread(str(tmp_path / "first" / "cutout" / "one.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(from_torch.astype(int) - from_onnx.astype(int)).max() <= 1


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")
def test_masks_match_the_previous_resize_the_probabilities_path(blob_sample) -> None:
    # Before this change the Predictor resized the softmax of a non-padding pipeline's output
    # to the photo with cv2.resize; the new one samples the same bilinear map with cv2.warpAffine
    # (fractional positions in 1/32 steps), so masks may differ only where P is within ~1% of 0.5.
    from humanseg.deploy.api import load_predictor
    from humanseg.engine.runtime import softmax

    predictor = load_predictor().predictor
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
