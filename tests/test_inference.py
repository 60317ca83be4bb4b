"""Inference transforms (OpenCV / NumPy): the training pipeline's arrays, placements, resampling."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from humanseg.data.inference import (
    STRIP_BYTES,
    Placement,
    build_inference_transforms,
    photo_label,
    photo_map,
)
from humanseg.data.transforms import build_transforms
from humanseg.errors import SpecError

# Every val / export transform PaddleSeg configs use, in the parameter forms they take.
VAL_PIPELINES = {
    "resize": [{"type": "Resize", "target_size": [398, 224]}],
    "resize_square_nearest": [{"type": "Resize", "target_size": 192, "interp": "NEAREST"}],
    "resize_cubic": [{"type": "Resize", "target_size": [97, 61], "interp": "CUBIC"}],
    "resize_area_divisor": [{"type": "Resize", "target_size": [100, 50], "size_divisor": 32,
                             "interp": "AREA"}],
    "resize_keep_ratio": [{"type": "Resize", "target_size": [512, 288], "keep_ratio": True,
                           "size_divisor": 32}],
    "resize_by_long": [{"type": "ResizeByLong", "long_size": 257}],
    "resize_by_short": [{"type": "ResizeByShort", "short_size": 150, "max_size": 260}],
    "limit_long": [{"type": "LimitLong", "max_long": 200, "min_long": 120}],
    "padding": [{"type": "Padding", "target_size": [320, 300]}],
    "padding_fill": [{"type": "Padding", "target_size": 330, "im_padding_value": [0, 10, 250],
                      "label_padding_value": 7}],
    "aspect_16_9": [{"type": "PaddingByAspectRatio", "aspect_ratio": 1.77777778},
                    {"type": "Resize", "target_size": [398, 224]}],
    "aspect_portrait": [{"type": "PaddingByAspectRatio", "aspect_ratio": 0.75}],
    "normalize": [{"type": "Normalize"}],
    "normalize_imagenet": [{"type": "Normalize", "mean": [0.485, 0.456, 0.406],
                            "std": [0.229, 0.224, 0.225]}],
    # geometry after Normalize works on its float output, kept CHW in memory (Normalize again
    # at the end, as the test appends one to every pipeline)
    "normalize_then_resize_and_pad": [{"type": "Normalize"},
                                      {"type": "Resize", "target_size": [150, 120]},
                                      {"type": "Padding", "target_size": [160, 130]}],
}
PHOTO_SHAPES = [(240, 180), (97, 301), (320, 300), (33, 33)]


@pytest.mark.parametrize("name", sorted(VAL_PIPELINES))
def test_numpy_transforms_give_the_albumentations_pipelines_arrays(name: str) -> None:
    specs = VAL_PIPELINES[name]
    if specs[-1]["type"] != "Normalize":
        specs = [*specs, {"type": "Normalize"}]
    training, inference = build_transforms(specs), build_inference_transforms(specs)
    rng = np.random.default_rng(len(name))
    for height, width in PHOTO_SHAPES:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = rng.integers(0, 2, (height, width), dtype=np.uint8)
        expected_image, expected_label = training(image, label)
        actual_image, actual_label = inference(image, label)
        assert actual_image.dtype == np.float32 and actual_label.dtype == np.int64
        assert actual_image.shape == expected_image.shape, (height, width)
        np.testing.assert_allclose(actual_image, expected_image, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(actual_label, expected_label)
        np.testing.assert_array_equal(inference.preprocess(image), actual_image)


def test_training_only_transforms_are_refused_for_inference() -> None:
    with pytest.raises(SpecError, match=r"val_dataset\.transforms\[1\]\.type: unknown inference "
                                        r"transform 'RandomHorizontalFlip'"):
        build_inference_transforms([{"type": "Resize"}, {"type": "RandomHorizontalFlip"}])
    with pytest.raises(SpecError, match=r"\[0\]: bad Resize parameters: interp must be"):
        build_inference_transforms([{"type": "Resize", "interp": "RANDOM"}])


def test_placement_of_padding_then_resize_by_hand() -> None:
    # A 300 x 60 (H x W) photo padded to 16:9 becomes 300 x 533, then 224 x 398.
    pipeline = build_inference_transforms(VAL_PIPELINES["aspect_16_9"])
    inputs, placement = pipeline.prepare(np.zeros((300, 60, 3), np.uint8))
    assert inputs.shape == (3, 224, 398)
    scale_y, scale_x = 224 / 300, 398 / 533
    assert placement.scale == pytest.approx((scale_y, scale_x))
    assert placement.offset == pytest.approx((0.5 * scale_y - 0.5, 0.5 * scale_x - 0.5))
    # The photo's right edge (x = 59.5) lands at 60 * 398 / 533 - 0.5 = 44.3 in the input.
    assert 59.5 * placement.scale[1] + placement.offset[1] == pytest.approx(60 * scale_x - 0.5)


def test_photo_map_samples_bilinearly_and_ignores_what_lies_outside_the_photo() -> None:
    # The photo covers columns 0..1 of a 1 x 4 map (scale 1/2: photo 1 x 4 -> 1 x 2, padded).
    scores = np.array([[[0.0, 1.0, 9.0, 9.0]]], np.float32)
    placement = Placement.resize((1, 4), (1, 2))
    mapped = photo_map(scores, placement, (1, 4))
    # Photo column x samples (x + 0.5) / 2 - 0.5: -0.25, 0.25, 0.75, 1.25 -> clamped to [0, 1].
    np.testing.assert_allclose(mapped, [[[0.0, 0.25, 0.75, 1.0]]], atol=1e-6)


def exact_bilinear(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float64 bilinear resize of [C, h, w] to `size` (pixel centres, edges repeated): an
    oracle independent of OpenCV."""
    def axis(length: int, photo_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = (np.arange(photo_length) + 0.5) * length / photo_length - 0.5
        source = np.clip(source, 0, length - 1)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, length - 1), source - low

    (top, bottom, wy), (left, right, wx) = (axis(scores.shape[1], size[0]),
                                            axis(scores.shape[2], size[1]))
    rows = (scores[:, top] * (1 - wy)[:, None] + scores[:, bottom] * wy[:, None]).astype(float)
    return rows[:, :, left] * (1 - wx) + rows[:, :, right] * wx


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(480, 640), (100, 90), (96, 96)])  # up, down, down by 2
def test_photo_map_of_a_stretched_photo_is_exact_bilinear(channels: int, size: tuple) -> None:
    """A photo only stretched to the network's input (a camera frame) is sampled with exact
    weights (warpAffine's 1/32 steps err by up to 1e-5 here)."""
    scores = np.random.default_rng(channels).random((channels, 192, 192), dtype=np.float32)
    placement = Placement.resize(size, (192, 192))
    mapped = photo_map(scores, placement, size)
    expected = exact_bilinear(scores.astype(np.float64), size)
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=1e-6)
    single = photo_map(scores[0], placement, size)
    np.testing.assert_allclose(single, expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("classes", [2, 3])
def test_photo_label_matches_argmax_of_the_full_map_in_strips(monkeypatch, classes: int) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((classes, 20, 30), dtype=np.float32)
    scores[:, :4] = 0.5  # exact ties go to the lower class, as with argmax
    placement = Placement.resize((55, 70), (20, 30))
    monkeypatch.setattr("humanseg.data.inference.STRIP_BYTES", classes * 4 * 70 * 4)  # 4 rows
    label = photo_label(scores, placement, (55, 70))
    exact = exact_bilinear(scores.astype(np.float64), (55, 70))
    expected = exact.argmax(axis=0)
    assert label.dtype == np.uint8 and (expected[:8] == 0).all() and expected.max() > 0
    assert (label[:8] == 0).all()  # the ties
    # Away from near-ties (OpenCV samples several channels with 1/32-step weights), every pixel
    # takes the exact argmax; two classes sample their difference with exact weights.
    ordered = np.sort(exact, axis=0)
    margin = ordered[-1] - ordered[-2]
    clear = margin > (1e-5 if classes == 2 else 0.05)
    np.testing.assert_array_equal(label[clear], expected[clear])
    assert clear.mean() > (0.75 if classes == 2 else 0.5)  # the rest: the tied rows, near-ties


def test_photo_label_memory_does_not_grow_with_classes_times_pixels() -> None:
    # 3000 x 4000 photo, 8 classes: full-size probabilities would be 8 * 4 * 12e6 = 384 MB.
    height, width, classes = 3000, 4000, 8
    scores = np.random.default_rng(1).random((classes, 96, 128), dtype=np.float32)
    placement = Placement.resize((height, width), (96, 128))
    tracemalloc.start()
    label = photo_label(scores, placement, (height, width))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The label itself (1 byte a pixel), plus a strip of samples, its cv2 copy and the argmax.
    bound = height * width + 3 * STRIP_BYTES
    assert label.shape == (height, width) and peak < bound, peak / 2**20
    assert peak < classes * 4 * height * width / 4


def test_inference_modules_import_neither_torch_nor_albumentations() -> None:
    code = ("import sys, humanseg.engine.predict, humanseg.data.inference, humanseg.config, "
            "humanseg.deploy.video, humanseg.deploy.demo, humanseg.deploy.cache, humanseg.data, "
            "humanseg.deploy.api, humanseg.deploy.outputs, humanseg.cli.predict, "
            "humanseg.cli.video, humanseg.cli.demo, humanseg.cli.serve; "
            "print(sorted(m for m in ('torch', 'albumentations') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
