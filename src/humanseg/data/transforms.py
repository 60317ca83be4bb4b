"""PaddleSeg-named transforms, with PaddleSeg's parameter names and defaults, on albumentations.

A config lists transforms as `{type: Name, **params}`; `build_transforms(specs)` turns the list into
a `SegTransforms` pipeline. Each name is a factory registered in `TRANSFORMS` (its `Args:` are the
config keys); the val / export pipeline registers the deterministic ones again in
`humanseg.data.inference`, with the same keys.

Images stay RGB uint8 through the geometric and colour ops; `Normalize` (PaddleSeg default
mean = std = 0.5 on [0, 1] pixels) makes them float32. Sizes follow PaddleSeg: `target_size` /
`crop_size` are `[width, height]` (or one int for a square). Padding fills the image with 127.5
(128 on uint8 pixels) and the label with 255 (the ignore index), at the bottom and right.

Randomness: albumentations keeps its own generators, so on every call the pipeline hands all its
ops one stream seeded from Python's `random`; seeding `random` (as the trainer and each DataLoader
worker do) makes augmentation reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from humanseg.data import inference
from humanseg.data.inference import (
    IM_PAD,
    INTERPOLATIONS,
    LABEL_PAD,
    Size,
    ceil_to,
    fill3,
    width_height,
)
from humanseg.errors import KeyPath, SpecError
from humanseg.registry import Registry

TRANSFORMS = Registry("transform")


class Rescale(A.DualTransform):
    """Resize image and label to a size chosen per call (PaddleSeg rounding: round(side * s))."""

    def __init__(self, interpolation: int = cv2.INTER_LINEAR) -> None:
        """Image interpolation (the label always uses nearest)."""
        super().__init__(p=1.0)
        self.interpolation = interpolation

    def scale_for(self, height: int, width: int) -> float:
        """The factor for an image of this size (subclasses decide)."""
        raise NotImplementedError

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """Output (width, height): both sides times `scale_for`, rounded."""
        return inference.scaled_size(height, width, self.scale_for(height, width))

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        """Choose the output size from the input size."""
        height, width = params["shape"][:2]
        return {"size": self.size_for(height, width)}

    def apply(self, img: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize the image."""
        if size == (img.shape[1], img.shape[0]):
            return img
        return cv2.resize(img, size, interpolation=self.interpolation)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize the label without mixing class values."""
        if size == (mask.shape[1], mask.shape[0]):
            return mask
        return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


class StepScale(Rescale):
    """PaddleSeg ResizeStepScaling: a factor from a stepped grid, or uniform when step is 0."""

    def __init__(self, low: float, high: float, step: float) -> None:
        """Scale range [low, high] in steps of `step`."""
        super().__init__()
        if low > high:
            raise ValueError(f"min_scale_factor {low} must not exceed max_scale_factor {high}")
        self.low, self.high, self.step = low, high, step

    def scale_for(self, height: int, width: int) -> float:
        """One factor from the grid (or the range)."""
        if self.low == self.high:
            return self.low
        if self.step == 0:
            return self.py_random.uniform(self.low, self.high)
        steps = int((self.high - self.low) / self.step + 1)
        return float(self.py_random.choice(np.linspace(self.low, self.high, steps).tolist()))


class LongSideRange(Rescale):
    """PaddleSeg ResizeRangeScaling: long side to a uniform random length in [low, high]."""

    def __init__(self, low: int, high: int) -> None:
        """Range of the long side after resizing."""
        super().__init__()
        if low > high:
            raise ValueError(f"min_value {low} must not exceed max_value {high}")
        self.low, self.high = low, high

    def scale_for(self, height: int, width: int) -> float:
        """Factor that brings the long side to the drawn length."""
        target = self.high
        if self.low != self.high:
            target = int(self.py_random.uniform(self.low, self.high) + 0.5)
        return target / max(height, width)


class RuleResize(Rescale):
    """A deterministic resize whose output size an inference op's rule picks (ResizeByLong,
    ResizeByShort, LimitLong, Resize with keep_ratio): one size logic for training and inference."""

    def __init__(self, op: inference.Resize) -> None:
        """Take the rule and interpolation of an inference `Resize`."""
        super().__init__(op.interpolation)
        self.rule = op.size_for

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """The rule's (width, height) for this input."""
        return self.rule(height, width)


class CategoryCappedCrop(A.DualTransform):
    """PaddleSeg RandomPaddingCrop's crop with `category_max_ratio` < 1: up to `loop_times`
    windows are drawn until no class fills more than that share of the labelled pixels (the
    last one drawn is kept otherwise). Unlike PaddleSeg 2.8, the image is cropped, not replaced
    by the label crop."""

    def __init__(self, width: int, height: int, max_ratio: float, ignore: int, tries: int):
        """Window size and the balance rule."""
        super().__init__(p=1.0)
        self.width, self.height = width, height
        self.max_ratio, self.ignore, self.tries = max_ratio, ignore, tries

    def _window(self, height: int, width: int) -> tuple[int, int]:
        """A random top-left corner."""
        top = self.py_random.randint(0, max(height - self.height, 0))
        return top, self.py_random.randint(0, max(width - self.width, 0))

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        """Draw windows until one is balanced enough (or the tries run out)."""
        height, width = params["shape"][:2]
        mask = data.get("mask")
        corner = self._window(height, width)
        for _ in range(self.tries if mask is not None else 0):
            top, left = corner
            window = mask[top : top + self.height, left : left + self.width]
            values, counts = np.unique(window, return_counts=True)
            counts = counts[values != self.ignore]
            if len(counts) > 1 and counts.max() / counts.sum() < self.max_ratio:
                break
            corner = self._window(height, width)
        return {"corner": corner}

    def apply(self, img: np.ndarray, corner: tuple[int, int], **params: Any) -> np.ndarray:
        """Crop the image."""
        return img[corner[0] : corner[0] + self.height, corner[1] : corner[1] + self.width]

    def apply_to_mask(self, mask: np.ndarray, corner: tuple[int, int], **params: Any) -> np.ndarray:
        """Crop the label."""
        return self.apply(mask, corner)


class PadToAspect(A.DualTransform):
    """PaddleSeg PaddingByAspectRatio: pad bottom or right until width / height = aspect_ratio."""

    def __init__(self, op: inference.PadBottomRight) -> None:
        """The inference op that decides the padding and pads."""
        super().__init__(p=1.0)
        self.op = op

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        """Pad the image with the image fill."""
        return self.op.image(img)[0]

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        """Pad the label with the ignore value."""
        return self.op.label(mask)


def _pad_bottom_right(
    width: int, height: int, fill: tuple[float, float, float], fill_mask: int
) -> A.PadIfNeeded:
    """Pad to at least width x height at the bottom and right (PaddleSeg's padding side)."""
    return A.PadIfNeeded(
        min_height=height, min_width=width, position="top_left",
        border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=fill_mask,
    )


# Builders: one per PaddleSeg transform name, with PaddleSeg's parameter names and defaults.


@TRANSFORMS.register(name="Resize")
def resize(
    target_size: Size = (512, 512),
    keep_ratio: bool = False,
    size_divisor: int | None = None,
    interp: str = "LINEAR",
) -> list[A.BasicTransform]:
    """Resize to `target_size`, or by one factor with `keep_ratio`.

    Args:
        target_size: [width, height], or one int for a square.
        keep_ratio: one factor fitting the long side to the target's long side and short to
            short, instead of stretching.
        size_divisor: round both output sides up to a multiple of it.
        interp: NEAREST, LINEAR, CUBIC, AREA, LANCZOS4, or RANDOM (one of them per call).
    """
    names = list(INTERPOLATIONS) if interp == "RANDOM" else [interp]
    sized = [inference.resize(target_size, keep_ratio, size_divisor, name) for name in names]
    if keep_ratio:
        ops: list[A.BasicTransform] = [RuleResize(op) for op in sized]
    else:
        width, height = width_height(target_size, "target_size")
        if size_divisor:
            width, height = ceil_to((width, height), size_divisor)
        ops = [A.Resize(height=height, width=width, interpolation=op.interpolation)
               for op in sized]
    return ops if len(ops) == 1 else [A.OneOf(ops, p=1.0)]


@TRANSFORMS.register(name="ResizeByLong")
def resize_by_long(long_size: int) -> list[A.BasicTransform]:
    """Scale so that the long side is `long_size`.

    Args:
        long_size: the long side's length in pixels.
    """
    return [RuleResize(inference.resize_by_long(long_size))]


@TRANSFORMS.register(name="ResizeByShort")
def resize_by_short(short_size: int, max_size: float = 1e10) -> list[A.BasicTransform]:
    """Scale so that the short side is `short_size`, the long side at most `max_size`.

    Args:
        short_size: the short side's length in pixels.
        max_size: cap on the long side (then the long side is max_size), per image.
    """
    return [RuleResize(inference.resize_by_short(short_size, max_size))]


@TRANSFORMS.register(name="LimitLong")
def limit_long(max_long: int | None = None, min_long: int | None = None) -> list[A.BasicTransform]:
    """Keep the long side within [min_long, max_long] by scaling (unchanged inside).

    Args:
        max_long: longest allowed long side (None: no cap).
        min_long: shortest allowed long side (None: no floor).
    """
    return [RuleResize(inference.limit_long(max_long, min_long))]


@TRANSFORMS.register(name="ResizeRangeScaling")
def resize_range_scaling(min_value: int = 400, max_value: int = 600) -> list[A.BasicTransform]:
    """Long side to a random length in [min_value, max_value].

    Args:
        min_value, max_value: the range of the long side, in pixels.
    """
    return [LongSideRange(min_value, max_value)]


@TRANSFORMS.register(name="ResizeStepScaling")
def resize_step_scaling(
    min_scale_factor: float = 0.75, max_scale_factor: float = 1.25, scale_step_size: float = 0.25
) -> list[A.BasicTransform]:
    """Scale by a random factor.

    Args:
        min_scale_factor, max_scale_factor: the range of the factor.
        scale_step_size: the factor is drawn on this grid (0: uniformly).
    """
    return [StepScale(min_scale_factor, max_scale_factor, scale_step_size)]


@TRANSFORMS.register(name="RandomPaddingCrop")
def random_padding_crop(
    crop_size: Size = (512, 512),
    im_padding_value: float | Sequence[float] = IM_PAD,
    label_padding_value: int = LABEL_PAD,
    category_max_ratio: float = 1.0,
    ignore_index: int = LABEL_PAD,
    loop_times: int = 10,
) -> list[A.BasicTransform]:
    """Pad bottom/right up to `crop_size` if smaller, then crop a window of it at random.

    Args:
        crop_size: [width, height], or one int for a square.
        im_padding_value: image padding, one value or three (RGB).
        label_padding_value: label padding (the ignore index by default).
        category_max_ratio: below 1, retry windows (up to `loop_times`) until no class covers
            more than this share of the labelled pixels (see CategoryCappedCrop).
        ignore_index: label value not counted by category_max_ratio.
        loop_times: windows tried for category_max_ratio.
    """
    width, height = width_height(crop_size, "crop_size")
    if category_max_ratio <= 0 or loop_times < 1:
        raise ValueError("category_max_ratio must be > 0 and loop_times >= 1")
    fill = fill3(im_padding_value, "im_padding_value")
    crop: A.BasicTransform = A.RandomCrop(height=height, width=width)
    if category_max_ratio < 1.0:
        crop = CategoryCappedCrop(width, height, category_max_ratio, ignore_index, loop_times)
    return [_pad_bottom_right(width, height, fill, label_padding_value), crop]


@TRANSFORMS.register(name="Padding")
def padding(
    target_size: Size,
    im_padding_value: float | Sequence[float] = IM_PAD,
    label_padding_value: int = LABEL_PAD,
) -> list[A.BasicTransform]:
    """Pad bottom/right up to `target_size`.

    Args:
        target_size: [width, height], or one int for a square.
        im_padding_value: image padding, one value or three (RGB).
        label_padding_value: label padding (the ignore index by default).
    """
    op = inference.padding(target_size, im_padding_value, label_padding_value)
    width, height = width_height(target_size, "target_size")
    return [_pad_bottom_right(width, height, op.fill, op.fill_label)]


@TRANSFORMS.register(name="PaddingByAspectRatio")
def padding_by_aspect_ratio(
    aspect_ratio: float = 1.0,
    im_padding_value: float | Sequence[float] = IM_PAD,
    label_padding_value: int = LABEL_PAD,
) -> list[A.BasicTransform]:
    """Pad bottom or right to width / height = aspect_ratio.

    Args:
        aspect_ratio: the width / height wanted.
        im_padding_value, label_padding_value: as for Padding.
    """
    return [PadToAspect(inference.padding_by_aspect_ratio(
        aspect_ratio, im_padding_value, label_padding_value))]


@TRANSFORMS.register(name="RandomHorizontalFlip")
def random_horizontal_flip(prob: float = 0.5) -> list[A.BasicTransform]:
    """Mirror left-right at random.

    Args:
        prob: the chance of a mirror.
    """
    return [A.HorizontalFlip(p=prob)]


@TRANSFORMS.register(name="RandomVerticalFlip")
def random_vertical_flip(prob: float = 0.1) -> list[A.BasicTransform]:
    """Flip upside down at random.

    Args:
        prob: the chance of a flip.
    """
    return [A.VerticalFlip(p=prob)]


@TRANSFORMS.register(name="RandomRotation")
def random_rotation(
    max_rotation: float = 15,
    im_padding_value: float | Sequence[float] = IM_PAD,
    label_padding_value: int = LABEL_PAD,
) -> list[A.BasicTransform]:
    """Rotate by a uniform angle, growing the canvas to keep every pixel.

    Args:
        max_rotation: the angle is drawn from [-max_rotation, max_rotation] degrees.
        im_padding_value, label_padding_value: fill of the grown canvas, as for Padding.
    """
    return [
        A.Affine(
            rotate=(-max_rotation, max_rotation), fit_output=True, border_mode=cv2.BORDER_CONSTANT,
            fill=fill3(im_padding_value, "im_padding_value"), fill_mask=label_padding_value,
            p=1.0 if max_rotation > 0 else 0.0,
        )
    ]


def _blur(kind: str, size: int, weight: float) -> A.BasicTransform:
    """One blur of a fixed odd kernel size (`weight` is its share inside a OneOf)."""
    if kind == "gaussian":
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # what cv2.GaussianBlur uses for sigma 0
        return A.GaussianBlur(blur_limit=(size, size), sigma_limit=(sigma, sigma), p=weight)
    if kind == "median":
        return A.MedianBlur(blur_limit=(size, size), p=weight)
    if kind == "blur":
        return A.Blur(blur_limit=(size, size), p=weight)
    shares = {"gaussian": 0.3, "median": 0.3, "blur": 0.4}  # PaddleSeg's "random" blur
    return A.OneOf([_blur(name, size, share) for name, share in shares.items()], p=weight)


@TRANSFORMS.register(name="RandomBlur")
def random_blur(prob: float = 0.1, blur_type: str = "gaussian") -> list[A.BasicTransform]:
    """Blur at random, kernel 3/5/7/9 weighted 1:2:2:2 (PaddleSeg's odd-rounded draw from 3..9).

    Args:
        prob: the chance of a blur.
        blur_type: gaussian, median, blur (box) or random (one of them per call).
    """
    if blur_type not in ("gaussian", "median", "blur", "random"):
        raise ValueError(f"blur_type must be gaussian, median, blur or random, got {blur_type!r}")
    kernels = {3: 0.5, 5: 1.0, 7: 1.0, 9: 1.0}  # OneOf normalises these weights
    ops = [_blur(blur_type, size, weight) for size, weight in kernels.items()]
    return [A.OneOf(ops, p=min(max(prob, 0.0), 1.0))]


@TRANSFORMS.register(name="RandomNoise")
def random_noise(prob: float = 0.5, max_sigma: float = 10.0) -> list[A.BasicTransform]:
    """Add Gaussian noise at random.

    Args:
        prob: the chance of noise.
        max_sigma: its sigma is drawn from [0, max_sigma] (pixel units).
    """
    if max_sigma < 0:
        raise ValueError(f"max_sigma must be >= 0, got {max_sigma}")
    return [A.GaussNoise(std_range=(0.0, min(max_sigma / 255.0, 1.0)), p=prob)]


@TRANSFORMS.register(name="RandomDistort")
def random_distort(
    brightness_range: float = 0.5,
    brightness_prob: float = 0.5,
    contrast_range: float = 0.5,
    contrast_prob: float = 0.5,
    saturation_range: float = 0.5,
    saturation_prob: float = 0.5,
    hue_range: float = 18,
    hue_prob: float = 0.5,
    sharpness_range: float = 0.5,
    sharpness_prob: float = 0.0,
) -> list[A.BasicTransform]:
    """Brightness, contrast, saturation, hue and sharpness, each at random, in random order.

    Args:
        brightness_range, contrast_range, saturation_range, sharpness_range: the property is
            multiplied by a factor in [1 - range, 1 + range] (PaddleSeg's).
        hue_range: hue shift of up to this many 1/256 turns.
        brightness_prob, contrast_prob, saturation_prob, hue_prob, sharpness_prob: the chance
            each property changes.
    """

    def jitter(**factor: float) -> dict[str, float]:
        """ColorJitter arguments that change only the named property."""
        neutral = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
        return neutral | factor

    ops: list[A.BasicTransform] = [
        A.ColorJitter(**jitter(brightness=brightness_range), p=brightness_prob),
        A.ColorJitter(**jitter(contrast=contrast_range), p=contrast_prob),
        A.ColorJitter(**jitter(saturation=saturation_range), p=saturation_prob),
        A.ColorJitter(**jitter(hue=hue_range / 256), p=hue_prob),
    ]
    if sharpness_prob > 0:
        ops.append(A.Sharpen(alpha=(0.0, min(sharpness_range, 1.0)), p=sharpness_prob))
    return [A.SomeOf(ops, n=len(ops), replace=False, p=1.0)]


@TRANSFORMS.register(name="RandomGrayscale")
def random_grayscale(prob: float = 0.1) -> list[A.BasicTransform]:
    """Replace the photo by its grey version at random (0.299 R + 0.587 G + 0.114 B in all three
    channels), so grey-scale photos are segmented as well as colour ones. Not a PaddleSeg
    transform (it has none); named after the Random* family and torchvision.

    Args:
        prob: the chance of grey, in [0, 1].
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    return [A.ToGray(num_output_channels=3, method="weighted_average", p=prob)]


@TRANSFORMS.register(name="Normalize")
def normalize(
    mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)
) -> list[A.BasicTransform]:
    """(pixel / 255 - mean) / std per channel, as float32.

    Args:
        mean, std: on [0, 1] pixels, one value or three (RGB); std non-zero.
    """
    inference.normalize(mean, std)  # checks the values
    return [A.Normalize(mean=fill3(mean, "mean"), std=fill3(std, "std"), max_pixel_value=255.0)]


class SegTransforms:
    """A built pipeline: `(image RGB uint8 HxWx3, label HxW | None) -> (CHW float32, HW int64)`."""

    def __init__(self, ops: list[A.BasicTransform]) -> None:
        """Compose the ops (already built from specs)."""
        self.pipeline = A.Compose(ops)

    def __call__(
        self, image: np.ndarray, label: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Transform an image and its label together; the label may be None (inference)."""
        seed = random.getrandbits(32)  # one shared stream per call: cheaper than set_random_seed
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        if label is None:
            out = self.pipeline(image=image)
        else:
            out = self.pipeline(image=image, mask=label)
        chw = np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32)
        return chw, None if label is None else out["mask"].astype(np.int64)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Inference preprocessing: RGB uint8 HxWx3 -> normalised CHW float32."""
        return self(image)[0]


def _build_ops(specs: Any, path: KeyPath) -> list[A.BasicTransform]:
    """Build every spec, turning a bad type, key or value into a SpecError at its key path."""
    if not isinstance(specs, list):
        raise SpecError(path, f"must be a list of {{type: Name, ...}} entries, got {specs!r}")
    return [op for index, spec in enumerate(specs)
            for op in TRANSFORMS.build(spec, (*path, index))]


def build_transforms(specs: Any, path: KeyPath = ("transforms",)) -> SegTransforms:
    """The pipeline for a config's transforms list; building it also validates it (cheaply)."""
    return SegTransforms(_build_ops(specs, path))
