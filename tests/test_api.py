"""The Python API: `humanseg.segment`, `humanseg.load_predictor` and their result object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import humanseg
from humanseg.cli import main
from humanseg.deploy.api import Segmenter
from humanseg.deploy.compose import blur_image
from humanseg.engine.predict import Predictor
from humanseg.io import write_image
from humanseg.weights import DEFAULT_CONFIG, DEFAULT_MODEL

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits" / "images"
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")

# A 2x3 photo and the person probability a stub model gives each pixel.
PHOTO = np.array([[[200, 100, 40]] * 3, [[10, 20, 30]] * 3], np.uint8)
PERSON = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.25]], np.float32)


def stub_segmenter() -> Segmenter:
    """A Segmenter whose model answers PERSON at the photo's own resolution (the transform
    keeps the pixel grid, so no resampling comes between the logits and the maps)."""
    def forward(batch: np.ndarray) -> np.ndarray:
        tiny = 1e-30  # 0 and 1 as logits of +-69: exactly 0 and 1 in float32
        person = np.log(np.maximum(PERSON, tiny)) - np.log(np.maximum(1 - PERSON, tiny))
        return np.stack([np.zeros_like(PERSON), person])[None]

    return Segmenter(Predictor(forward, lambda image: image.transpose(2, 0, 1) / 255.0, 2))


def test_result_maps_and_compositions_worked_out_by_hand() -> None:
    result = stub_segmenter()(PHOTO)
    np.testing.assert_allclose(result.alpha, PERSON, atol=1e-6)
    # 0.5 is a tie: argmax keeps the background, as `humanseg predict`'s label does.
    np.testing.assert_array_equal(result.mask, [[0, 0, 0], [1, 1, 0]])
    cutout = result.cutout()
    np.testing.assert_array_equal(cutout[..., :3], PHOTO)
    np.testing.assert_array_equal(cutout[..., 3], [[0, 64, 128], [191, 255, 64]])
    # round(p * photo + (1 - p) * (0, 0, 255)), e.g. p = 0.25 over (200, 100, 40): (50, 25,
    # 10 + 191.25); halves round to even (147.5 -> 148, 7.5 -> 8, 2.5 -> 2).
    expected = [[[0, 0, 255], [50, 25, 201], [100, 50, 148]],
                [[8, 15, 86], [10, 20, 30], [2, 5, 199]]]
    np.testing.assert_array_equal(result.replace_background((0, 0, 255)), expected)
    np.testing.assert_array_equal(result.replace_background("#0000ff"), expected)
    blurred = result.blur_background()
    np.testing.assert_array_equal(blurred[1, 1], PHOTO[1, 1])  # all person: the photo
    np.testing.assert_array_equal(blurred[0, 0], blur_image(PHOTO)[0, 0])  # none: the blur


def test_background_picture_covers_the_photo() -> None:
    picture = np.zeros((4, 6, 3), np.uint8)  # scaled to cover 2x3 exactly: every pixel stays
    picture[:] = (9, 8, 7)
    composed = stub_segmenter()(PHOTO).replace_background(picture)
    np.testing.assert_array_equal(composed[0, 0], (9, 8, 7))
    np.testing.assert_array_equal(composed[1, 1], PHOTO[1, 1])


@needs_model
@pytest.mark.skipif(not PORTRAITS.is_dir(), reason="../shared/data/portraits absent")
def test_segment_gives_the_label_humanseg_predict_writes(tmp_path: Path) -> None:
    photo = PORTRAITS / "vs_1.jpg"
    assert main(["predict", str(photo), "--save_dir", str(tmp_path / "cli")]) == 0
    written = tmp_path / "cli" / "label" / "vs_1.png"
    result = humanseg.segment(photo)
    write_image(tmp_path / "api.png", result.mask)
    assert (tmp_path / "api.png").read_bytes() == written.read_bytes()
    assert 0.05 < (result.mask == 1).mean() < 0.95  # a person was found, not an empty mask
    cutout = cv2.imread(str(tmp_path / "cli" / "cutout" / "vs_1.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(result.cutout(), cv2.cvtColor(cutout, cv2.COLOR_BGRA2RGBA))
    np.testing.assert_array_equal(result.cutout()[..., 3], np.rint(result.alpha * 255))
    from_array = humanseg.load_predictor()(result.image)
    np.testing.assert_array_equal(from_array.mask, result.mask)


def one_line_error(call, *args, **options) -> str:
    """The message of the HumanSegError `call` raises, checked to be one line."""
    with pytest.raises(humanseg.HumanSegError) as error:
        call(*args, **options)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_inputs_and_options_are_one_line_errors_naming_them(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jpg"
    assert one_line_error(humanseg.segment, missing) == f"{missing}: image file not found"
    assert "unknown option 'colour'" in one_line_error(humanseg.segment, PHOTO, colour="red")
    assert one_line_error(humanseg.segment, PHOTO, backend="tensorrt") == (
        "backend='tensorrt': expected one of auto, torch, onnxruntime")
    assert "device='gpu'" in one_line_error(humanseg.load_predictor, device="gpu")
    assert "precision='fp8'" in one_line_error(humanseg.load_predictor, precision="fp8")
    assert "min_region_frac must lie in [0, 1]" in one_line_error(
        humanseg.load_predictor, min_region_frac=2.0)
    assert "model='m.pt': give config=" in one_line_error(humanseg.load_predictor, model="m.pt")
    assert "config='c.yml'" in one_line_error(humanseg.load_predictor, config="c.yml")
    segmenter = stub_segmenter()
    assert "image: expected an RGB uint8 [H, W, 3] array" in one_line_error(
        segmenter, PHOTO.astype(np.float32))
    result = segmenter(PHOTO)
    assert "background 'sky'" in one_line_error(result.replace_background, "sky")
    assert "background (0, 0, 256)" in one_line_error(result.replace_background, (0, 0, 256))


@needs_model
def test_the_api_with_onnxruntime_never_imports_torch(tmp_path: Path) -> None:
    onnx = tmp_path / "default.onnx"
    assert main(["export", "--output", str(onnx)]) == 0
    photo = tmp_path / "photo.png"
    write_image(photo, np.full((60, 40, 3), 128, np.uint8))
    code = (
        "import sys, humanseg\n"
        "heavy = lambda: sorted(m for m in ('torch', 'albumentations') if m in sys.modules)\n"
        "assert heavy() == [], heavy()\n"
        f"segmenter = humanseg.load_predictor({str(onnx)!r}, {str(DEFAULT_CONFIG)!r}, "
        "backend='onnxruntime')\n"
        f"result = segmenter({str(photo)!r})\n"
        "print(result.mask.shape, result.cutout().shape, heavy())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(60, 40) (60, 40, 4) []"
