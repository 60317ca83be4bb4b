"""Background composition: values worked out by hand on tiny images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from humanseg.deploy.compose import (
    Background,
    alpha_blend,
    blur_image,
    compose,
    fit_background,
    overlay,
    parse_background,
    parse_colour,
    rgba_cutout,
)
from humanseg.errors import HumanSegError
from humanseg.io import write_image


def test_parse_colour_reads_hex_pairs() -> None:
    assert parse_colour("#FF8000") == (255, 128, 0)
    assert parse_colour("#0a0B0c") == (10, 11, 12)


@pytest.mark.parametrize("bad", ["#12345", "#GG0000", "red", "#1234567"])
def test_parse_colour_rejects_malformed(bad: str) -> None:
    with pytest.raises(HumanSegError, match="#RRGGBB"):
        parse_colour(bad)


def test_parse_background_kinds(tmp_path) -> None:
    assert parse_background("blur").blur
    assert parse_background("#00ff00").colour == (0, 255, 0)
    picture = np.zeros((4, 6, 3), np.uint8)
    picture[..., 2] = 200
    write_image(tmp_path / "bg.png", picture)
    loaded = parse_background(str(tmp_path / "bg.png")).image
    assert loaded is not None and np.array_equal(loaded, picture)
    with pytest.raises(HumanSegError, match="missing.png"):
        parse_background(str(tmp_path / "missing.png"))


def test_alpha_blend_mixes_per_pixel() -> None:
    foreground = np.full((1, 3, 3), 200, np.uint8)
    background = np.full((1, 3, 3), 100, np.uint8)
    alpha = np.array([[0.0, 0.25, 1.0]])
    blended = alpha_blend(foreground, background, alpha)
    # 0.25 * 200 + 0.75 * 100 = 125
    assert blended[0, :, 0].tolist() == [100, 125, 200]


def test_compose_with_colour_keeps_person_and_paints_background() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    image[:] = (10, 20, 30)
    alpha = np.array([[1.0, 0.0], [0.5, 0.0]])
    out = compose(image, alpha, Background(colour=(0, 255, 0)))
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [0, 255, 0]
    # half-way: (10 + 0) / 2 = 5, (20 + 255) / 2 = 137.5 -> 138 (round half to even), 15
    assert out[1, 0].tolist() == [5, 138, 15]


def test_compose_blur_keeps_person_sharp_and_smooths_background() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    alpha = np.zeros((80, 80))
    alpha[:, :40] = 1.0
    out = compose(image, alpha, Background(blur=True))
    assert np.array_equal(out[:, :40], image[:, :40])
    # Blurred noise has a much smaller spread than the noise itself.
    assert out[:, 60:].std() < image[:, 60:].std() / 4


def test_fit_background_covers_and_centre_crops() -> None:
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, 15:25] = 255  # a bright central band
    fitted = fit_background(wide, 20, 20)
    # Scale 2 makes it 20 x 80; the centre crop keeps columns 30..50, the band's 30..50.
    assert fitted.shape == (20, 20, 3)
    assert fitted[:, 2:18].min() == 255


def test_rgba_cutout_alpha_channel() -> None:
    image = np.full((1, 3, 3), 7, np.uint8)
    cutout = rgba_cutout(image, np.array([[0.0, 0.5, 1.0]]))
    assert cutout.shape == (1, 3, 4)
    assert cutout[0, :, 3].tolist() == [0, 128, 255]
    assert cutout[0, :, :3].tolist() == [[7, 7, 7]] * 3


def test_overlay_tints_only_masked_pixels() -> None:
    image = np.zeros((1, 2, 3), np.uint8)
    out = overlay(image, np.array([[1, 0]], np.uint8), colour=(200, 100, 0), opacity=0.5)
    assert out[0, 0].tolist() == [100, 50, 0]
    assert out[0, 1].tolist() == [0, 0, 0]


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(HumanSegError, match="does not match"):
        rgba_cutout(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5)))


def test_compose_on_a_real_photo_keeps_the_masked_region() -> None:
    photo = data.astronaut()
    alpha = np.zeros(photo.shape[:2])
    alpha[100:400, 150:350] = 1.0
    out = compose(photo, alpha, Background(image=data.coffee()))
    assert np.array_equal(out[100:400, 150:350], photo[100:400, 150:350])
    assert not np.array_equal(out[:100], photo[:100])


def test_fast_blur_matches_a_full_resolution_gaussian() -> None:
    """The shrink-blur-enlarge shortcut looks like the plain Gaussian of the same sigma."""
    photo = data.astronaut()
    sigma = max(photo.shape[:2]) / 40
    reference = cv2.GaussianBlur(photo, (0, 0), sigmaX=sigma, sigmaY=sigma).astype(np.float32)
    difference = np.abs(blur_image(photo).astype(np.float32) - reference)
    assert difference.mean() < 1.5  # grey levels, vs ~19 between the photo and its blur
    assert np.abs(photo.astype(np.float32) - reference).mean() > 10


def test_a_background_photo_with_exif_orientation_is_used_upright(tmp_path) -> None:
    from PIL import Image

    upright = data.astronaut()[:200, :300]  # wider than tall
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers turn the stored pixels 90 degrees clockwise
    Image.fromarray(np.rot90(upright)).save(tmp_path / "phone.png", exif=exif)
    assert np.array_equal(parse_background(str(tmp_path / "phone.png")).image, upright)
