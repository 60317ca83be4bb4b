"""Mask edges that follow the photo's: a fast guided filter (He, Sun and Tang, *Guided Image
Filtering*, 2013; He and Sun, *Fast Guided Filter*, 2015) applied to the person probability.

The network sees the photo at 192x192, so its probabilities, resampled to the photo, blur every
edge over several photo pixels. The guided filter fits, in each small window, the probability as
a linear function of the photo's grey level (`alpha ~ a * grey + b`), so where the window holds an
edge of the photo the mask takes that edge's shape and elsewhere it stays as it was. The fit runs
on a grid of at most `long_side` pixels (the fast variant), and the smoothed coefficients are
resampled to the photo, where `a * grey + b` costs two multiply-adds a pixel.

Following the photo's texture (hair, patterned clothes) the refined mask also grows specks,
splits thin limbs and opens pinholes. `unsupported_regions` finds what to undo: refined person
regions that overlap nothing of the mask the network gave (already cleaned) or cover less than
`min_region_frac` of the largest, and background regions that overlap none of the network's
background. So the refinement moves edges but adds neither stray regions nor holes
(docs/results.md, edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humanseg.errors import HumanSegError
from humanseg.ops.regions import DEFAULT_MIN_REGION_FRAC, check_region_options

# Chosen on the training split of every source in ../shared/data (docs/results.md, edges).
DEFAULT_EDGE_SIDE = 384
DEFAULT_EDGE_RADIUS = 4
DEFAULT_EDGE_EPS = 1e-4


def box_mean(array: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2 radius + 1)^2 window around each pixel (edges mirrored)."""
    side = 2 * radius + 1
    return cv2.boxFilter(array, -1, (side, side), borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class EdgeRefiner:
    """Guided-filter settings: the fitting grid's longer side, the window radius on that grid
    and the regulariser (larger `eps`: flatter fits, edges followed less).

    Args:
        long_side: the photo is shrunk so that its longer side is at most this for the fit.
        radius: window radius, in pixels of that grid.
        eps: added to the grey level's variance in each window (grey in [0, 1]).
        min_region_frac: refined person regions smaller than this fraction of the largest are
            dropped (`unsupported_regions`; the region cleaning's own fraction).
    """

    long_side: int = DEFAULT_EDGE_SIDE
    radius: int = DEFAULT_EDGE_RADIUS
    eps: float = DEFAULT_EDGE_EPS
    min_region_frac: float = DEFAULT_MIN_REGION_FRAC

    def __post_init__(self) -> None:
        """One-line errors for settings that cannot work."""
        if self.long_side < 1 or self.radius < 1 or not self.eps > 0:
            raise HumanSegError(f"edge refinement: long_side and radius must be >= 1 and eps > 0,"
                                f" got {self.long_side}, {self.radius}, {self.eps}")
        check_region_options(self.min_region_frac)

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """The fitting grid (h, w) for a photo of size (H, W): never larger than the photo."""
        height, width = size
        scale = min(1.0, self.long_side / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def coefficients(self, grey: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The window-averaged linear fit (a, b), each float32 [h, w], of `alpha` against
        `grey` (both float32 [h, w] on the fitting grid, grey in [0, 1])."""
        mean_grey, mean_alpha = box_mean(grey, self.radius), box_mean(alpha, self.radius)
        variance = box_mean(grey * grey, self.radius) - mean_grey * mean_grey
        covariance = box_mean(grey * alpha, self.radius) - mean_grey * mean_alpha
        slope = covariance / (variance + np.float32(self.eps))
        intercept = mean_alpha - slope * mean_grey
        return box_mean(slope, self.radius), box_mean(intercept, self.radius)


def grey_level(image: np.ndarray) -> np.ndarray:
    """BT.601 grey uint8 [H, W] of an RGB uint8 photo [H, W, 3]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def unsupported_regions(mask: np.ndarray, support: np.ndarray,
                        min_region_frac: float = 0.0) -> np.ndarray:
    """The pixels (bool [H, W]) of the 8-connected regions of `mask` (bool [H, W]) that overlap
    no pixel of `support`, or that cover less than `min_region_frac` of the largest region that
    does. Made region by region within each one's bounding box: they are few and small."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8),
                                                               connectivity=8)
    supported = np.zeros(count, bool)
    supported[labels[mask & support]] = True  # label 0 (outside `mask`) never gets here
    area = np.where(supported, stats[:, cv2.CC_STAT_AREA], 0)
    drop = ~supported | (area < min_region_frac * area.max())
    drop[0] = False
    dropped = np.zeros(mask.shape, bool)
    for region in np.flatnonzero(drop):
        left, top, width, height = stats[region, :4]
        window = (slice(top, top + height), slice(left, left + width))
        dropped[window] |= labels[window] == region
    return dropped
