"""Person edges that follow the photo's: the guided filter and its place in the prediction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import humanseg
from humanseg.cli import main
from humanseg.engine.predict import Predictor
from humanseg.errors import HumanSegError
from humanseg.io import read_mask
from humanseg.ops.edges import EdgeRefiner, box_mean, unsupported_regions
from humanseg.weights import DEFAULT_MODEL

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits" / "images"


def test_box_mean_is_the_window_average() -> None:
    values = np.arange(25, dtype=np.float32).reshape(5, 5)
    # centre pixel, radius 1: the mean of rows 1-3, columns 1-3 = the centre value (linear ramp)
    assert box_mean(values, 1)[2, 2] == pytest.approx(12.0)
    # corner, mirrored edges (BORDER_REFLECT: ... 1 0 | 0 1 2 ...): rows/cols {0, 0, 1}
    expected = np.mean([values[r, c] for r in (0, 0, 1) for c in (0, 0, 1)])
    assert box_mean(values, 1)[0, 0] == pytest.approx(expected)


def test_a_probability_linear_in_the_grey_level_is_fitted_exactly() -> None:
    # alpha = 0.3 grey + 0.2 everywhere: each window's fit is (0.3, 0.2) up to the eps shrink
    grey = np.random.default_rng(0).random((40, 50), dtype=np.float32)
    slope, intercept = EdgeRefiner(radius=3, eps=1e-6).coefficients(grey, 0.3 * grey + 0.2)
    np.testing.assert_allclose(slope, 0.3, atol=1e-3)
    np.testing.assert_allclose(intercept, 0.2, atol=1e-3)


@pytest.mark.parametrize("ramp_start", [13.5, 14.5, 16.5, 18.5])
def test_a_misplaced_blurred_mask_edge_snaps_to_the_photo_edge(ramp_start: float) -> None:
    # The photo: dark left, bright from column 20 on. The network's person probability: a ramp
    # over 6-8 columns whose 0.5 crossing misses that edge by 1.5 to 2.5 columns (the coarse
    # map's localisation error), so the plain mask starts at column 18, 21 or 22.
    width = 40
    grey = np.zeros((30, width), np.float32)
    grey[:, 20:] = 1.0
    ramp = 8 if ramp_start in (13.5, 16.5) else 6
    alpha = np.clip((np.arange(width, dtype=np.float32) - ramp_start) / ramp, 0, 1)
    alpha = alpha[None].repeat(30, 0)
    slope, intercept = EdgeRefiner(radius=4, eps=1e-4).coefficients(grey, alpha)
    refined = slope * grey + intercept
    assert (np.argmax(alpha > 0.5, axis=1) != 20).all()
    assert (np.argmax(refined > 0.5, axis=1) == 20).all()  # every row: the photo's edge
    # far from the edge (beyond the two box passes' reach) the probability is unchanged
    np.testing.assert_allclose(refined[:, :4], alpha[:, :4], atol=1e-5)
    np.testing.assert_allclose(refined[:, -4:], alpha[:, -4:], atol=1e-5)


def test_grid_never_exceeds_the_photo_and_bad_settings_are_one_line_errors() -> None:
    refiner = EdgeRefiner(long_side=384)
    assert refiner.grid((3000, 4000)) == (288, 384)
    assert refiner.grid((100, 50)) == (100, 50)
    with pytest.raises(HumanSegError, match="eps > 0"):
        EdgeRefiner(eps=0)


def test_refined_regions_the_network_does_not_support_are_found() -> None:
    person = np.zeros((12, 20), bool)
    person[1:9, 1:9] = True  # 64 pixels, overlaps the plain mask
    person[2:4, 12:14] = True  # 4 pixels, overlaps it too: 6% of the largest
    person[10, 18] = True  # a speck far from the plain mask
    person[6, 12] = True  # 1 pixel overlapping the plain mask: 1.6% of the largest
    plain = np.zeros_like(person)
    plain[3:7, 3:7] = True
    plain[3, 13] = plain[6, 12] = True
    expected = np.zeros_like(person)
    expected[10, 18] = expected[6, 12] = True
    np.testing.assert_array_equal(unsupported_regions(person, plain, 0.02), expected)
    # fraction 0 keeps every supported region, small ones too; the speck still goes
    expected[6, 12] = False
    np.testing.assert_array_equal(unsupported_regions(person, plain, 0.0), expected)
    np.testing.assert_array_equal(unsupported_regions(person, np.zeros_like(plain)), person)


def person_model(batch: np.ndarray) -> np.ndarray:
    """A stand-in network at 1/4 of its input's resolution: person where the input's first
    channel is bright, as logits."""
    bright = batch[:, :1, ::4, ::4] > 0.5
    return np.concatenate([np.zeros(bright.shape), np.where(bright, 4.0, -4.0)], axis=1)


def test_refined_prediction_maps_agree_with_each_other() -> None:
    rng = np.random.default_rng(1)
    photo = np.zeros((120, 90, 3), np.uint8)
    photo[30:100, 20:70] = 230
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    to_input = lambda image: np.asarray(image[:96, :88].transpose(2, 0, 1), np.float32) / 255  # noqa: E731
    plain = Predictor(person_model, to_input, 2).infer(photo)
    refined = Predictor(person_model, to_input, 2, edges=EdgeRefiner(radius=2)).infer(photo)
    alpha = refined.alpha()
    assert alpha.shape == photo.shape[:2] and alpha.min() >= 0 and alpha.max() <= 1
    np.testing.assert_array_equal(refined.label(), (alpha > 0.5).astype(np.uint8))
    full = refined.probabilities_full()
    np.testing.assert_allclose(full.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(full[1], alpha)
    # the photo's own rectangle is matched at least as well as by the resampled coarse map
    truth = np.zeros(photo.shape[:2], np.uint8)
    truth[30:100, 20:70] = 1
    assert (refined.label() != truth).sum() <= (plain.label() != truth).sum()
    # every person region and every background region of the refined mask overlaps the same
    # class in the network's own mask: no new specks, no new holes
    for klass in (0, 1):
        count, regions = cv2.connectedComponents((refined.label() == klass).view(np.uint8))
        own = plain.label() == klass
        assert all(own[regions == region].any() for region in range(1, count))
    with pytest.raises(HumanSegError, match="two-class"):
        Predictor(person_model, to_input, 3, edges=EdgeRefiner())


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="packaged model absent")
@pytest.mark.skipif(not PORTRAITS.is_dir(), reason="../shared/data/portraits absent")
def test_predict_refines_by_default_and_no_edge_refine_keeps_the_plain_edges(
    tmp_path: Path
) -> None:
    photo = PORTRAITS / "vs_1.jpg"
    assert main(["predict", str(photo), "--save_dir", str(tmp_path / "plain"),
                 "--no_edge_refine"]) == 0
    plain = humanseg.segment(photo, refine_edges=False)
    refined = humanseg.segment(photo)
    np.testing.assert_array_equal(read_mask(tmp_path / "plain" / "label" / "vs_1.png"),
                                  plain.mask)
    changed = (plain.mask != refined.mask).mean()
    assert 0 < changed < 0.05  # the edges moved, the person did not
