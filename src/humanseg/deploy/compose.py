"""Background composition from a soft person mask: replace with an image or colour, blur, cut out.

Every function takes an RGB uint8 image [H, W, 3] and a person alpha (float in [0, 1], [H, W]),
usually the person-class probability, so edges stay soft instead of jagged. Shared by `predict`,
`demo` and `video`, so each output kind has exactly one implementation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from humanseg.errors import HumanSegError
from humanseg.io import read_image

_HEX_COLOUR = re.compile(r"#([0-9a-fA-F]{6})")
# The blur's Gaussian sigma is this fraction of the image's longer side: strong enough to hide
# the background at any resolution, while the person stays sharp (the alpha keeps them).
BLUR_SIGMA_FRACTION = 1 / 40
BLUR_DOWNSCALE = 4
OVERLAY_COLOUR = (255, 0, 128)


@dataclass(frozen=True)
class Background:
    """What replaces the background: an RGB image, a flat RGB colour, or a blur of the frame."""

    image: np.ndarray | None = None
    colour: tuple[int, int, int] | None = None
    blur: bool = False


def parse_colour(text: str) -> tuple[int, int, int]:
    """Parse `#RRGGBB` into an (R, G, B) tuple of ints."""
    match = _HEX_COLOUR.fullmatch(text.strip())
    if match is None:
        raise HumanSegError(f"background colour {text!r}: expected #RRGGBB, e.g. #00ff00")
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def parse_background(spec: str) -> Background:
    """`blur`, `#RRGGBB`, or the path of an image file (read now, so a bad path fails early)."""
    if spec == "blur":
        return Background(blur=True)
    if spec.startswith("#"):
        return Background(colour=parse_colour(spec))
    if not Path(spec).is_file():
        raise HumanSegError(f"background {spec!r}: not 'blur', a #RRGGBB colour or an image file")
    return Background(image=read_image(spec))


def check_alpha(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Validate shapes and return alpha as float32 in [0, 1], shaped [H, W, 1] for broadcasting."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise HumanSegError(f"image must be RGB uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if alpha.shape != image.shape[:2]:
        raise HumanSegError(f"mask shape {alpha.shape} does not match image {image.shape[:2]}")
    return np.clip(alpha.astype(np.float32), 0.0, 1.0)[..., None]


def alpha_blend(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`alpha * foreground + (1 - alpha) * background`, rounded to uint8."""
    weight = check_alpha(foreground, alpha)
    blended = weight * foreground.astype(np.float32) + (1.0 - weight) * background
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def fit_background(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale an image to cover (height, width) keeping its aspect ratio, then centre-crop it."""
    scale = max(height / background.shape[0], width / background.shape[1])
    new_h = max(height, round(background.shape[0] * scale))
    new_w = max(width, round(background.shape[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(background, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[top : top + height, left : left + width]


def blur_image(image: np.ndarray) -> np.ndarray:
    """A strong Gaussian blur scaled to the image size (the blurred-background look).

    A blur this wide removes all fine detail, so it is computed on a copy shrunk by
    `BLUR_DOWNSCALE` and scaled back: the same look at a small fraction of the cost (about 3 ms
    instead of 80 ms for a 640x480 frame), which matters for video.
    """
    height, width = image.shape[:2]
    sigma = max(height, width) * BLUR_SIGMA_FRACTION
    small_size = (max(1, width // BLUR_DOWNSCALE), max(1, height // BLUR_DOWNSCALE))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
    small_sigma = sigma * small_size[0] / width
    blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=small_sigma, sigmaY=small_sigma)
    return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


def compose(image: np.ndarray, alpha: np.ndarray, background: Background) -> np.ndarray:
    """Keep the person (alpha) from `image` and put `background` behind them."""
    height, width = image.shape[:2]
    if background.blur:
        behind = blur_image(image).astype(np.float32)
    elif background.colour is not None:
        behind = np.empty((height, width, 3), np.float32)
        behind[:] = background.colour
    elif background.image is not None:
        behind = fit_background(background.image, height, width).astype(np.float32)
    else:
        raise HumanSegError("background: give an image, a colour or blur")
    return alpha_blend(image, behind, alpha)


def fit_background_to(background: Background, height: int, width: int) -> Background:
    """Pre-scale an image background once for a fixed frame size (video), others pass through."""
    if background.image is None or background.image.shape[:2] == (height, width):
        return background
    return Background(image=fit_background(background.image, height, width))


def rgba_cutout(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person on a transparent background: RGBA uint8 with alpha = 255 * person alpha."""
    weight = check_alpha(image, alpha)[..., 0]
    alpha_channel = np.rint(weight * 255).astype(np.uint8)
    return np.dstack([image, alpha_channel])


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = OVERLAY_COLOUR,
    opacity: float = 0.5,
) -> np.ndarray:
    """Tint the pixels where `mask` is set with `colour` at `opacity` (a quick visual check)."""
    tint = np.empty_like(image)
    tint[:] = colour
    return alpha_blend(tint, image, (mask > 0).astype(np.float32) * opacity)
