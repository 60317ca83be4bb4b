"""Clean person masks at inference: drop small or secondary person regions, keep soft edges.

Regions are the 8-connected components of the thresholded person alpha. The alpha is not
binarised: outside the kept regions it is zeroed, except for a thin band around them (a small
dilation of the kept set) where the soft edge values of the kept person stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humanseg.errors import HumanSegError

EDGE_FRACTION = 0.01  # soft band kept around a kept region, as a fraction of the longer side
DEFAULT_MIN_REGION_FRAC = 0.02  # predict / video default, measured in docs/results.md


@dataclass(frozen=True)
class KeptRegions:
    """Where a person alpha may stay non-zero, and the kept thresholded regions themselves."""

    allowed: np.ndarray
    """[H, W] bool: the kept regions, dilated by the edge band, minus every dropped region."""
    subject: np.ndarray
    """[H, W] bool: the kept regions (thresholded); the next frame's `previous_subject`."""


def check_region_options(min_region_frac: float) -> None:
    """Refuse a `min_region_frac` outside [0, 1] with a one-line error."""
    if not 0.0 <= min_region_frac <= 1.0:
        raise HumanSegError(f"min_region_frac must lie in [0, 1], got {min_region_frac}")


def kept_regions(
    alpha: np.ndarray,
    min_region_frac: float = 0.0,
    main_subject: bool = False,
    previous_subject: np.ndarray | None = None,
    threshold: float = 0.5,
) -> KeptRegions:
    """Choose the person regions of `alpha` [H, W] (person probability) to keep.

    Regions smaller than `min_region_frac` of the largest are dropped. With `main_subject`
    only one region stays: the one overlapping `previous_subject` most (a video's previous
    frame, so the subject does not swap to a larger passer-by), else the largest.
    """
    check_region_options(min_region_frac)
    if alpha.ndim != 2:
        raise HumanSegError(f"person alpha must have shape [H, W], got {tuple(alpha.shape)}")
    person = (alpha > threshold).astype(np.uint8)
    count, ids, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1:
        empty = np.zeros(alpha.shape, dtype=bool)
        return KeptRegions(allowed=empty, subject=empty)
    keep = areas >= min_region_frac * areas.max()
    if main_subject:
        choice = int(np.argmax(areas))
        if previous_subject is not None and previous_subject.shape == alpha.shape:
            overlap = np.bincount(ids[previous_subject], minlength=count)[1:]
            if overlap.max() > 0:
                choice = int(np.argmax(overlap))
        keep = np.arange(count - 1) == choice
    kept_lookup = np.concatenate(([False], keep))
    subject = kept_lookup[ids]
    dropped = np.concatenate(([False], ~keep))[ids]
    radius = max(1, round(EDGE_FRACTION * max(alpha.shape)))
    band = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)  # chessboard distance
    allowed = cv2.dilate(subject.astype(np.uint8), band).astype(bool) & ~dropped
    return KeptRegions(allowed=allowed, subject=subject)


class RegionFilter:
    """Post-processing of class probabilities [C, H, W] (class 0 = background): the person
    classes are zeroed outside the kept person regions and the background takes their share.

    With `track_subject` (video) the main subject of one call is remembered for the next.

    Args:
        min_region_frac: drop person regions smaller than this fraction of the largest.
        main_subject: keep only the main person region.
        track_subject: follow the main subject from call to call (frames of one video).
    """

    def __init__(
        self, min_region_frac: float = 0.0, main_subject: bool = False, track_subject: bool = False
    ) -> None:
        """Check and keep the options; no subject seen yet."""
        check_region_options(min_region_frac)
        self.min_region_frac = float(min_region_frac)
        self.main_subject = bool(main_subject)
        self.track_subject = bool(track_subject)
        self.previous_subject: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """Whether the filter changes anything at all."""
        return self.main_subject or self.min_region_frac > 0

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        """The probabilities with dropped person regions moved to the background."""
        if not self.active:
            return probabilities
        regions = kept_regions(
            1.0 - probabilities[0], self.min_region_frac, self.main_subject,
            self.previous_subject if self.track_subject else None,
        )
        if self.track_subject:
            self.previous_subject = regions.subject
        cleaned = probabilities.copy()
        cleaned[1:] *= regions.allowed
        cleaned[0] = 1.0 - cleaned[1:].sum(axis=0)
        return cleaned
