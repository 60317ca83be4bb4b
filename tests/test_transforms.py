"""Tests of the PaddleSeg-named transforms: sizes, padding values, label safety, defaults, seeds."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanseg.data.transforms import build_transforms
from humanseg.errors import SpecError


def grid_image(height: int, width: int) -> np.ndarray:
    """An RGB image whose red channel encodes the column and green the row (to track pixels)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.arange(width, dtype=np.uint8)[None, :]
    image[..., 1] = np.arange(height, dtype=np.uint8)[:, None]
    return image


def run(specs: list[dict], image: np.ndarray, label: np.ndarray | None = None, seed: int = 0):
    """Build and apply a pipeline with Python's RNG seeded."""
    random.seed(seed)
    return build_transforms(specs)(image, label)


def test_normalize_defaults_map_0_255_to_minus_one_one() -> None:
    image = np.array([[[0, 51, 255]]], np.uint8)
    out, _ = run([{"type": "Normalize"}], image)
    # (v / 255 - 0.5) / 0.5: 0 -> -1, 51 -> -0.6, 255 -> 1
    np.testing.assert_allclose(out[:, 0, 0], [-1.0, -0.6, 1.0], atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (3, 1, 1)


def test_normalize_custom_mean_std() -> None:
    image = np.full((1, 1, 3), 255, np.uint8)
    out, _ = run([{"type": "Normalize", "mean": [0.5, 0.0, 1.0], "std": [0.25, 1.0, 0.5]}], image)
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 1.0, 0.0], atol=1e-6)


def test_resize_target_size_is_width_height_and_label_stays_nearest() -> None:
    label = np.zeros((20, 10), np.uint8)
    label[:, 5:] = 1
    label[0, 0] = 255
    out, out_label = run([{"type": "Resize", "target_size": [30, 40]}], grid_image(20, 10), label)
    assert out.shape == (3, 40, 30) and out_label.shape == (40, 30)
    assert set(np.unique(out_label)) <= {0, 1, 255}
    assert out_label.dtype == np.int64
    assert (out_label[:, :14] != 1).all() and (out_label[:, 16:] == 1).all()


def test_resize_by_long_and_short_keep_aspect() -> None:
    image = grid_image(40, 20)
    assert run([{"type": "ResizeByLong", "long_size": 20}], image)[0].shape == (3, 20, 10)
    assert run([{"type": "ResizeByShort", "short_size": 40}], image)[0].shape == (3, 80, 40)
    assert run([{"type": "LimitLong", "max_long": 30}], image)[0].shape == (3, 30, 15)
    assert run([{"type": "LimitLong", "max_long": 50}], image)[0].shape == (3, 40, 20)


def test_resize_step_scaling_draws_from_the_grid() -> None:
    image, label = grid_image(40, 40), np.zeros((40, 40), np.uint8)
    specs = [{"type": "ResizeStepScaling"}]  # defaults 0.75..1.25 in steps of 0.25
    sides = {run(specs, image, label, seed)[0].shape[1] for seed in range(40)}
    assert sides == {30, 40, 50}
    fixed = [{"type": "ResizeStepScaling", "min_scale_factor": 0.5, "max_scale_factor": 0.5}]
    assert run(fixed, image, label)[1].shape == (20, 20)


def test_random_padding_crop_pads_bottom_right_with_ignore_and_grey() -> None:
    image, label = grid_image(4, 6), np.ones((4, 6), np.uint8)
    out, out_label = run([{"type": "RandomPaddingCrop", "crop_size": [8, 6]}], image, label)
    assert out.shape == (3, 6, 8)
    assert (out_label[:4, :6] == 1).all()
    assert (out_label[4:, :] == 255).all() and (out_label[:, 6:] == 255).all()
    np.testing.assert_array_equal(out[:2, :4, :6], image.transpose(2, 0, 1)[:2])
    assert (out[:, 4:, :] == 128).all()  # 127.5 on a uint8 image


def test_random_padding_crop_takes_a_window_of_a_larger_image() -> None:
    image = grid_image(30, 40)
    for seed in range(5):
        out, _ = run([{"type": "RandomPaddingCrop", "crop_size": [16, 8]}], image, seed=seed)
        assert out.shape == (3, 8, 16)
        columns, rows = out[0, 0, :], out[1, :, 0]
        np.testing.assert_array_equal(np.diff(columns), 1)
        np.testing.assert_array_equal(np.diff(rows), 1)


def test_padding_and_padding_by_aspect_ratio() -> None:
    image, label = grid_image(10, 10), np.zeros((10, 10), np.uint8)
    _, padded = run([{"type": "Padding", "target_size": [12, 14]}], image, label)
    assert padded.shape == (14, 12) and (padded[10:, :] == 255).all()
    out, ratio_label = run([{"type": "PaddingByAspectRatio", "aspect_ratio": 2.0}], image, label)
    assert out.shape == (3, 10, 20)
    assert (ratio_label[:, 10:] == 255).all() and (ratio_label[:, :10] == 0).all()
    _, tall = run([{"type": "PaddingByAspectRatio", "aspect_ratio": 0.5}], image, label)
    assert tall.shape == (20, 10) and (tall[10:, :] == 255).all()


def test_flips_follow_their_probability() -> None:
    image = grid_image(3, 5)
    label = np.arange(15, dtype=np.uint8).reshape(3, 5) % 2
    out, flipped = run([{"type": "RandomHorizontalFlip", "prob": 1.0}], image, label)
    np.testing.assert_array_equal(out, image[:, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(flipped, label[:, ::-1])
    out, kept = run([{"type": "RandomHorizontalFlip", "prob": 0.0}], image, label)
    np.testing.assert_array_equal(kept, label)
    _, vertical = run([{"type": "RandomVerticalFlip", "prob": 1.0}], image, label)
    np.testing.assert_array_equal(vertical, label[::-1])


def test_rotation_grows_canvas_and_fills_label_with_ignore() -> None:
    image, label = grid_image(40, 40), np.ones((40, 40), np.uint8)
    out, rotated = run([{"type": "RandomRotation", "max_rotation": 30}], image, label, seed=3)
    assert set(np.unique(rotated)) <= {1, 255}
    if out.shape[1:] != (40, 40):
        assert rotated[0, 0] == 255 and rotated[rotated.shape[0] // 2, rotated.shape[1] // 2] == 1
    still, same = run([{"type": "RandomRotation", "max_rotation": 0}], image, label)
    np.testing.assert_array_equal(same, label)


def test_colour_ops_leave_the_label_alone() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (16, 16), dtype=np.uint8)
    specs = [{"type": "RandomDistort", "brightness_prob": 1, "contrast_prob": 1,
              "saturation_prob": 1, "hue_prob": 1, "sharpness_prob": 1},
             {"type": "RandomBlur", "prob": 1.0}]
    out, out_label = run(specs, image, label)
    np.testing.assert_array_equal(out_label, label)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out, image.transpose(2, 0, 1).astype(np.float32))
    off = [{"type": "RandomDistort", "brightness_prob": 0, "contrast_prob": 0,
            "saturation_prob": 0, "hue_prob": 0}, {"type": "RandomBlur", "prob": 0}]
    np.testing.assert_array_equal(run(off, image, label)[0], image.transpose(2, 0, 1))


def test_blur_matches_opencv_gaussian_of_one_of_the_kernels() -> None:
    image = np.zeros((21, 21, 3), np.uint8)
    image[10, 10] = 255
    out, _ = run([{"type": "RandomBlur", "prob": 1.0}], image)
    candidates = [cv2.GaussianBlur(image, (k, k), 0).transpose(2, 0, 1) for k in (3, 5, 7, 9)]
    assert min(np.abs(out - c.astype(np.float32)).max() for c in candidates) <= 1


def test_same_python_seed_same_augmentation() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (50, 60), dtype=np.uint8)
    specs = [{"type": "ResizeStepScaling", "scale_step_size": 0}, {"type": "RandomRotation"},
             {"type": "RandomPaddingCrop", "crop_size": [32, 32]},
             {"type": "RandomHorizontalFlip"}, {"type": "RandomDistort"}, {"type": "Normalize"}]
    first, second = run(specs, image, label, 7), run(specs, image, label, 7)
    other = run(specs, image, label, 8)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_preprocess_gives_normalised_chw_for_inference() -> None:
    specs = [{"type": "Resize", "target_size": [8, 4]}, {"type": "Normalize"}]
    transforms = build_transforms(specs)
    out = transforms.preprocess(np.full((10, 20, 3), 255, np.uint8))
    assert out.shape == (3, 4, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0)


@pytest.mark.parametrize(
    ("specs", "pattern"),
    [
        ([{"type": "Flip"}], r"transforms\[0\]\.type: unknown transform 'Flip'"),
        ([{"type": "Resize", "size": 3}], r"transforms\[0\]\.size: unknown key"),
        ([{"type": "Normalize"}, {"type": "Resize", "target_size": [0, 3]}],
         r"transforms\[1\]: bad Resize parameters: target_size"),
        ([{"type": "Resize", "interp": "FAST"}], r"transforms\[0\]: bad Resize parameters"),
        ([{"type": "Normalize", "std": [1, 0, 1]}], r"transforms\[0\]: bad Normalize"),
        ({"type": "Normalize"}, r"transforms: must be a list"),
        (["Normalize"], r"transforms\[0\]: must be a mapping with a `type`"),
    ],
)
def test_bad_specs_raise_spec_errors(specs: object, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        build_transforms(specs)


ROOT = Path(__file__).resolve().parents[1]
PADDLE_PYTHON = ROOT / ".venv-paddle" / "bin" / "python"

# Deterministic PaddleSeg pipelines (no random draw), compared with PaddleSeg 2.8 itself.
PARITY_PIPELINES = [
    [{"type": "Resize", "target_size": [30, 20]}, {"type": "Normalize"}],
    [{"type": "Resize", "target_size": [64, 32], "keep_ratio": True, "size_divisor": 8}],
    [{"type": "Resize", "target_size": [25, 40], "interp": "NEAREST"}],
    [{"type": "ResizeByLong", "long_size": 50}],
    [{"type": "ResizeByShort", "short_size": 30, "max_size": 50}],
    [{"type": "LimitLong", "max_long": 40}],
    [{"type": "LimitLong", "min_long": 100}],
    [{"type": "ResizeStepScaling", "min_scale_factor": 0.75, "max_scale_factor": 0.75}],
    [{"type": "Padding", "target_size": [70, 60]}],
    [{"type": "PaddingByAspectRatio", "aspect_ratio": 0.5, "im_padding_value": 0}],
    [{"type": "RandomPaddingCrop", "crop_size": [70, 60]}],
    [{"type": "RandomHorizontalFlip", "prob": 1.0}],
    [{"type": "Normalize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}],
    [{"type": "PaddingByAspectRatio", "aspect_ratio": 1.77777778},
     {"type": "Resize", "target_size": [398, 224]}, {"type": "Normalize"}],
]


@pytest.mark.skipif(
    not PADDLE_PYTHON.exists(), reason=".venv-paddle absent: `make paddle-venv` builds PaddleSeg"
)
def test_deterministic_transforms_match_paddleseg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (47, 53, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (47, 53), dtype=np.uint8)
    label[:3] = 255
    np.savez(tmp_path / "in.npz", image=image, label=label)
    (tmp_path / "pipelines.json").write_text(json.dumps(PARITY_PIPELINES))
    subprocess.run(
        [str(PADDLE_PYTHON), str(ROOT / "tools" / "paddleseg_transforms.py"), "apply",
         str(tmp_path / "in.npz"), str(tmp_path / "pipelines.json"), str(tmp_path / "out.npz")],
        check=True, capture_output=True, timeout=300,
    )
    reference = np.load(tmp_path / "out.npz")
    for index, specs in enumerate(PARITY_PIPELINES):
        ours, our_label = run(specs, image, label)
        theirs = reference[f"image_{index}"]
        assert ours.shape == theirs.shape, specs
        np.testing.assert_array_equal(our_label, reference[f"label_{index}"], err_msg=str(specs))
        # PaddleSeg resizes float32 pixels, we resize uint8 ones: at most one grey level apart.
        scale = 1.0 if specs[-1]["type"] != "Normalize" else 2.0 / 255 / 0.2 * 0.5
        np.testing.assert_allclose(ours, theirs, atol=1.01 * scale, err_msg=str(specs))


def test_resize_by_short_caps_the_long_side_per_image() -> None:
    transforms = build_transforms([{"type": "ResizeByShort", "short_size": 40, "max_size": 40}])
    # 47x53: 40 / 47 * 53 = 45.1 > 40, so short = int(40 / 53 * 47) = 35 and long = 39.47 -> 39.
    assert transforms(grid_image(47, 53))[0].shape == (3, 35, 39)
    # A square image is not capped, whatever came before (PaddleSeg 2.8 would keep 35).
    assert transforms(grid_image(20, 20))[0].shape == (3, 40, 40)


def test_category_max_ratio_crop_prefers_mixed_windows_and_crops_the_image() -> None:
    image = grid_image(40, 40)
    label = (np.arange(40)[None, :] < 20).repeat(40, axis=0).astype(np.uint8)
    specs = [{"type": "RandomPaddingCrop", "crop_size": [10, 10], "category_max_ratio": 0.9,
              "loop_times": 30}]
    for seed in range(5):
        out, out_label = run(specs, image, label, seed)
        assert set(np.unique(out_label)) == {0, 1}
        np.testing.assert_array_equal(out_label == 1, out[0] < 20)  # image and label aligned


def test_noise_and_other_blurs_keep_labels_and_range() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (20, 20), dtype=np.uint8)
    specs = [{"type": "RandomNoise", "prob": 1.0},
             {"type": "RandomBlur", "prob": 1.0, "blur_type": "median"},
             {"type": "RandomBlur", "prob": 1.0, "blur_type": "random"}]
    for spec in specs:
        out, out_label = run([spec], image, label)
        np.testing.assert_array_equal(out_label, label)
        assert out.min() >= 0 and out.max() <= 255
        assert not np.array_equal(out, image.transpose(2, 0, 1))


def test_normalize_accepts_one_value_for_all_channels() -> None:
    image = np.full((1, 1, 3), 51, np.uint8)
    out, _ = run([{"type": "Normalize", "mean": [0.0], "std": [0.5]}], image)
    np.testing.assert_allclose(out[:, 0, 0], [0.4, 0.4, 0.4], atol=1e-6)


def test_random_grayscale_gives_the_luma_of_the_photo_with_its_probability() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    label = rng.integers(0, 2, (8, 10), dtype=np.uint8)
    # by hand: ITU-R BT.601 luma, rounded, in every channel
    luma = np.rint(image.astype(np.float64) @ [0.299, 0.587, 0.114])
    grey, grey_label = run([{"type": "RandomGrayscale", "prob": 1.0}], image, label)
    for channel in grey:
        assert np.abs(channel - luma).max() <= 1
    np.testing.assert_array_equal(grey_label, label)
    colour, _ = run([{"type": "RandomGrayscale", "prob": 0.0}], image, label)
    np.testing.assert_array_equal(colour, image.transpose(2, 0, 1))
    pipeline = build_transforms([{"type": "RandomGrayscale", "prob": 0.25}])
    random.seed(1)
    outputs = [pipeline(image)[0] for _ in range(400)]
    greyed = sum(bool(np.all(out == out[0])) for out in outputs)  # three equal channels
    assert 70 <= greyed <= 130  # 100 expected; binomial sd 8.7
    with pytest.raises(SpecError, match=r"prob must be in \[0, 1\]"):
        build_transforms([{"type": "RandomGrayscale", "prob": 1.5}])
