"""Mask cleaning at inference (humanseg.ops.regions): hand-built alpha maps, Predictor wiring."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from humanseg.engine.predict import Predictor
from humanseg.errors import HumanSegError
from humanseg.ops import RegionFilter, kept_regions


def three_regions() -> np.ndarray:
    """A 40 x 40 alpha map: a 10 x 10 person (alpha 0.9, a soft ring at 0.3), a 4 x 4 region
    (0.8) and a 2 x 2 speck (0.7, its own soft ring at 0.3), plus a faint haze (0.2)."""
    alpha = np.zeros((40, 40), np.float32)
    alpha[4:16, 4:16] = 0.3
    alpha[5:15, 5:15] = 0.9  # 100 px
    alpha[25:29, 25:29] = 0.8  # 16 px
    alpha[4:8, 29:33] = 0.3
    alpha[5:7, 30:32] = 0.7  # 4 px
    alpha[35:, :5] = 0.2
    return alpha


def test_small_regions_are_dropped_and_soft_edges_of_kept_ones_stay() -> None:
    alpha = three_regions()
    # 0.1 of the largest (100 px) = 10 px: the 16 px region stays, the 4 px speck goes
    regions = kept_regions(alpha, min_region_frac=0.1)
    expected_subject = np.zeros_like(alpha, dtype=bool)
    expected_subject[5:15, 5:15] = expected_subject[25:29, 25:29] = True
    np.testing.assert_array_equal(regions.subject, expected_subject)
    cleaned = alpha * regions.allowed
    # the edge band is 1 px here (1% of 40, at least 1): the person's soft ring stays as it was
    np.testing.assert_array_equal(cleaned[4:16, 4:16], alpha[4:16, 4:16])
    np.testing.assert_array_equal(cleaned[25:29, 25:29], alpha[25:29, 25:29])
    assert not cleaned[4:8, 29:33].any()  # the speck and its own soft ring are gone
    assert not cleaned[35:, :5].any()  # so is the haze away from any kept region
    np.testing.assert_allclose(np.unique(cleaned), [0.0, 0.3, 0.8, 0.9])  # not binarised
    # 0.2 of 100 = 20 px: the 16 px region goes too; 0 keeps every region
    assert kept_regions(alpha, min_region_frac=0.2).subject.sum() == 100
    assert kept_regions(alpha, min_region_frac=0.0).subject.sum() == 120


def test_min_region_area_is_relative_to_the_map_not_to_the_largest_region() -> None:
    alpha = three_regions()  # 1600 px: 0.01 of the map = 16 px, 0.011 = 17.6 px
    assert kept_regions(alpha, min_region_area=0.01).subject.sum() == 116  # only the 4 px speck
    assert kept_regions(alpha, min_region_area=0.011).subject.sum() == 100
    crowd = np.zeros((40, 40), np.float32)
    crowd[2:6, 2:6] = crowd[2:6, 20:24] = crowd[30:34, 10:14] = 0.9  # three 16 px people
    crowd[20:21, 30:31] = 0.6  # a 1 px speck
    # relative to the largest (16 px) the speck is 1/16; relative to the map 1/1600
    assert kept_regions(crowd, min_region_area=0.005).subject.sum() == 48  # 8 px: speck only
    assert kept_regions(crowd, min_region_frac=0.1).subject.sum() == 48
    # the two criteria add up: either one makes a region small
    assert kept_regions(alpha, min_region_frac=0.2, min_region_area=0.001).subject.sum() == 100


def test_confident_small_regions_stay_and_unsure_ones_go_with_their_soft_edges() -> None:
    alpha = three_regions()  # small under 0.01 of the map (16 px): the 4 px speck only
    alpha[25:29, 25:29] = 0.8
    alpha[26, 26] = 0.95  # the 16 px region peaks at 0.95
    # with min_region_area 0.011 (17.6 px) both the 16 px region (peak 0.95) and the 4 px speck
    # (peak 0.7) are small; a peak above 0.9 is confident, so only the speck is dropped
    regions = kept_regions(alpha, min_region_area=0.011, confident_peak=0.9)
    assert regions.subject.sum() == 116 and regions.subject[25:29, 25:29].all()
    cleaned = alpha * regions.allowed
    np.testing.assert_array_equal(cleaned[4:16, 4:16], alpha[4:16, 4:16])  # soft ring: 0.3 stays
    assert not cleaned[4:8, 29:33].any()  # the unsure speck and its soft ring are gone
    np.testing.assert_allclose(np.unique(cleaned), [0.0, 0.3, 0.8, 0.9, 0.95])  # not binarised
    # a peak equal to the threshold is not above it: dropped; 1 drops every small region
    assert kept_regions(alpha, min_region_area=0.011, confident_peak=0.95).subject.sum() == 100
    assert kept_regions(alpha, min_region_area=0.011, confident_peak=1.0).subject.sum() == 100
    # 0.6 is below the speck's peak (0.7): both small regions count as confident
    assert kept_regions(alpha, min_region_area=0.011, confident_peak=0.6).subject.sum() == 120
    person = RegionFilter(min_region_area=0.011, confident_peak=0.9)(as_probabilities(alpha))[1]
    np.testing.assert_allclose(person, cleaned, atol=1e-7)


def test_band_never_revives_a_dropped_region_next_to_a_kept_one() -> None:
    alpha = np.zeros((100, 100), np.float32)
    alpha[10:60, 10:60] = 0.9
    alpha[10:12, 61:63] = 0.9  # a 4 px speck 1 px right of the person, inside its 1 px band
    regions = kept_regions(alpha, min_region_frac=0.1)
    assert regions.allowed[10:60, 60].all()  # the band next to the person
    assert not regions.allowed[10:12, 61:63].any()


def test_main_subject_keeps_the_largest_or_the_one_followed() -> None:
    alpha = three_regions()
    largest = kept_regions(alpha, main_subject=True)
    assert largest.subject.sum() == 100 and largest.subject[5:15, 5:15].all()
    previous = np.zeros_like(alpha, dtype=bool)
    previous[27:31, 27:31] = True  # last frame's subject overlaps the 16 px region
    followed = kept_regions(alpha, main_subject=True, previous_subject=previous)
    assert followed.subject.sum() == 16 and followed.subject[25:29, 25:29].all()
    gone = np.zeros_like(previous)
    gone[35:, 35:] = True  # no overlap: back to the largest
    assert kept_regions(alpha, main_subject=True, previous_subject=gone).subject.sum() == 100


def test_no_person_and_bad_options() -> None:
    regions = kept_regions(np.full((5, 5), 0.4, np.float32), min_region_frac=0.5)
    assert not regions.allowed.any() and not regions.subject.any()
    with pytest.raises(HumanSegError, match="min_region_frac must lie in"):
        RegionFilter(1.5)
    with pytest.raises(HumanSegError, match="min_region_area must lie in"):
        RegionFilter(min_region_area=-0.1)
    with pytest.raises(HumanSegError, match="confident_peak must lie in"):
        kept_regions(three_regions(), confident_peak=2.0)
    with pytest.raises(HumanSegError, match=r"must have shape \[H, W\]"):
        kept_regions(np.zeros((2, 5, 5)), 0.1)


def as_probabilities(alpha: np.ndarray) -> np.ndarray:
    """Two-class probabilities [2, H, W] with person probability `alpha`."""
    return np.stack([1 - alpha, alpha]).astype(np.float32)


def test_filter_moves_dropped_person_probability_to_the_background() -> None:
    alpha = three_regions()
    three = np.stack([1 - alpha, 0.75 * alpha, 0.25 * alpha])  # two person classes
    for probabilities in (as_probabilities(alpha), three):
        cleaned = RegionFilter(0.1)(probabilities)
        allowed = kept_regions(alpha, 0.1).allowed
        np.testing.assert_allclose(cleaned[1:], probabilities[1:] * allowed)
        np.testing.assert_allclose(cleaned.sum(0), 1.0, atol=1e-6)
        assert np.all(cleaned[0] >= probabilities[0] - 1e-7)
    untouched = as_probabilities(alpha)
    assert RegionFilter(0.0)(untouched) is untouched  # nothing to do, nothing copied


def test_video_filter_follows_its_subject_instead_of_a_larger_newcomer() -> None:
    frame = np.zeros((30, 60), np.float32)
    frame[5:15, 5:15] = 0.9  # the subject, 100 px
    tracker, stateless = RegionFilter(main_subject=True, track_subject=True), RegionFilter(
        main_subject=True)
    tracker(as_probabilities(frame))
    frame[2:28, 35:58] = 0.9  # a larger passer-by enters
    frame[5:15, 5:15] = 0.0
    frame[6:16, 6:16] = 0.9  # the subject moved by one pixel
    person = tracker(as_probabilities(frame))[1]
    assert person[6:16, 6:16].min() == pytest.approx(0.9) and not person[:, 30:].any()
    assert stateless(as_probabilities(frame))[1][:, 30:].any()  # photos: the largest wins


def test_predictor_applies_the_filter_before_mapping_to_the_photo() -> None:
    logits = np.full((1, 2, 24, 24), 0.0, np.float32)
    logits[0, 1] = -6.0
    logits[0, 1, 2:14, 2:14] = 6.0  # a person
    logits[0, 1, 19:21, 19:21] = 6.0  # a speck

    def transforms(image: np.ndarray) -> np.ndarray:
        return np.zeros((3, 24, 24), np.float32)

    image = np.zeros((48, 48, 3), np.uint8)
    plain = Predictor(lambda batch: logits, transforms, 2)(image)
    cleaned = Predictor(lambda batch: logits, transforms, 2, RegionFilter(0.1))(image)
    _, plain_count = ndimage.label(plain.argmax(0), np.ones((3, 3)))
    _, cleaned_count = ndimage.label(cleaned.argmax(0), np.ones((3, 3)))
    assert (plain_count, cleaned_count) == (2, 1)
    # The filter cleans the network-resolution probabilities: the same photo-size output as a
    # model whose probabilities were cleaned by hand before the predictor maps them back.
    exp = np.exp(logits[0] - logits[0].max(axis=0))
    probabilities = exp / exp.sum(axis=0)
    by_hand = RegionFilter(0.1)(probabilities)
    allowed = kept_regions(probabilities[1], 0.1).allowed
    assert allowed[2:14, 2:14].all() and not allowed[19:21, 19:21].any()  # person, not speck
    np.testing.assert_array_equal(by_hand[1], probabilities[1] * allowed)
    as_logits = np.log(np.clip(by_hand, 1e-30, None))[None]
    expected = Predictor(lambda batch: as_logits, transforms, 2)(image)
    np.testing.assert_allclose(cleaned, expected, atol=1e-5)
    edge = cleaned[1][(cleaned[1] > 0.05) & (cleaned[1] < 0.95)]
    assert edge.size > 0  # the kept person's edge stays soft
