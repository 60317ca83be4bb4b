"""Clean person masks at inference: drop small or secondary person regions, keep soft edges.

Regions are the 8-connected components of the thresholded person alpha. A region is small when
its area is below `min_region_frac` of the largest region's or below `min_region_area` of the map's
(the network's output map in `Predictor`); a small region is dropped unless its peak person
probability exceeds `confident_peak` (1: every small region is dropped). The alpha is not
binarised: outside the kept regions it is zeroed, except for a thin band around them (a small
dilation of the kept set) where the soft edge values of the kept person stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humanseg.errors import HumanSegError

EDGE_FRACTION = 0.01  # soft band kept around a kept region, as a fraction of the longer side
# predict / video defaults, measured in docs/results.md (with the rules chosen on training photos)
DEFAULT_MIN_REGION_FRAC = 0.02
DEFAULT_MIN_REGION_AREA = 0.0
DEFAULT_CONFIDENT_PEAK = 1.0


@dataclass(frozen=True)
class KeptRegions:
    """Where a person alpha may stay non-zero, and the kept thresholded regions themselves."""

    allowed: np.ndarray
    """[H, W] bool: the kept regions, dilated by the edge band, minus every dropped region."""
    subject: np.ndarray
    """[H, W] bool: the kept regions (thresholded); the next frame's `previous_subject`."""


def check_region_options(min_region_frac: float, min_region_area: float = 0.0,
                         confident_peak: float = 1.0) -> None:
    """Refuse an option outside [0, 1] with a one-line error naming it."""
    for name, value in (("min_region_frac", min_region_frac),
                        ("min_region_area", min_region_area), ("confident_peak", confident_peak)):
        if not 0.0 <= value <= 1.0:
            raise HumanSegError(f"{name} must lie in [0, 1], got {value}")


def kept_regions(
    alpha: np.ndarray,
    min_region_frac: float = 0.0,
    main_subject: bool = False,
    previous_subject: np.ndarray | None = None,
    threshold: float = 0.5,
    min_region_area: float = 0.0,
    confident_peak: float = 1.0,
) -> KeptRegions:
    """Choose the person regions of `alpha` [H, W] (person probability) to keep.

    Small regions (under `min_region_frac` of the largest or `min_region_area` of the map) are
    dropped unless their peak probability exceeds `confident_peak`. With `main_subject`
    only one region stays: the one overlapping `previous_subject` most (a video's previous
    frame, so the subject does not swap to a larger passer-by), else the largest.
    """
    check_region_options(min_region_frac, min_region_area, confident_peak)
    if alpha.ndim != 2:
        raise HumanSegError(f"person alpha must have shape [H, W], got {tuple(alpha.shape)}")
    person = (alpha > threshold).astype(np.uint8)
    count, ids, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1:
        empty = np.zeros(alpha.shape, dtype=bool)
        return KeptRegions(allowed=empty, subject=empty)
    small = (areas < min_region_frac * areas.max()) | (areas < min_region_area * alpha.size)
    if confident_peak < 1.0 and small.any():
        peaks = np.zeros(count, alpha.dtype)
        np.maximum.at(peaks, ids.ravel(), alpha.ravel())
        small &= peaks[1:] <= confident_peak
    keep = ~small
    if main_subject:
        choice = int(np.argmax(areas))
        if previous_subject is not None and previous_subject.shape == alpha.shape:
            overlap = np.bincount(ids[previous_subject], minlength=count)[1:]
            if overlap.max() > 0:
                choice = int(np.argmax(overlap))
        keep = np.arange(count - 1) == choice
    radius = max(1, round(EDGE_FRACTION * max(alpha.shape)))
    band = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)  # chessboard distance
    if keep.all():  # the usual case: nothing dropped, no lookups through the region ids
        return KeptRegions(allowed=cv2.dilate(person, band).view(bool), subject=person.view(bool))
    subject = np.concatenate(([False], keep))[ids]
    dropped = np.concatenate(([False], ~keep))[ids]
    allowed = cv2.dilate(subject.view(np.uint8), band).view(bool) & ~dropped
    return KeptRegions(allowed=allowed, subject=subject)


class RegionFilter:
    """Post-processing of class probabilities [C, H, W] (class 0 = background): the person
    classes are zeroed outside the kept person regions and the background takes their share.

    With `track_subject` (video) the main subject of one call is remembered for the next.

    Args:
        min_region_frac: person regions smaller than this fraction of the largest are small.
        main_subject: keep only the main person region.
        track_subject: follow the main subject from call to call (frames of one video).
        min_region_area: person regions smaller than this fraction of the map are small.
        confident_peak: a small region whose peak person probability exceeds this is kept;
            the other small regions are dropped (1: all of them).
    """

    def __init__(
        self, min_region_frac: float = 0.0, main_subject: bool = False, track_subject: bool = False,
        min_region_area: float = 0.0, confident_peak: float = 1.0,
    ) -> None:
        """Check and keep the options; no subject seen yet."""
        check_region_options(min_region_frac, min_region_area, confident_peak)
        self.min_region_frac = float(min_region_frac)
        self.min_region_area = float(min_region_area)
        self.confident_peak = float(confident_peak)
        self.main_subject = bool(main_subject)
        self.track_subject = bool(track_subject)
        self.previous_subject: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """Whether the filter changes anything at all."""
        return self.main_subject or self.min_region_frac > 0 or self.min_region_area > 0

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        """The probabilities with dropped person regions moved to the background."""
        if not self.active:
            return probabilities
        regions = kept_regions(
            1.0 - probabilities[0], self.min_region_frac, self.main_subject,
            self.previous_subject if self.track_subject else None,
            min_region_area=self.min_region_area, confident_peak=self.confident_peak,
        )
        if self.track_subject:
            self.previous_subject = regions.subject
        cleaned = probabilities.copy()
        cleaned[1:] *= regions.allowed
        cleaned[0] = 1.0 - cleaned[1:].sum(axis=0)
        return cleaned
