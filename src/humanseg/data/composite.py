"""Portrait training set that varies the narrow real photos: person-aware crops and compositing.

The real data is small and narrow (one standing person per street photo, or one web portrait), so
each training sample is built from a real photo and its mask by, at random:

1. a person-aware crop: a head-to-waist window of the labelled person (half-body, like a selfie or
   a video call) at a random aspect ratio, or a loose crop around the whole person;
2. compositing: the person is cut out along the mask (soft 1-pixel edge) and pasted onto a
   person-free background (the COCO images without a person annotation), optionally blurred like a
   shallow depth of field, with the person's colour shifted apart from the background's so that
   the model cannot learn the photo's colour cast; sometimes a second person is pasted behind;
3. the config's transforms (flip, scale, crop, colour, normalise) on the result.

Validation mode returns the held-out real photos, transformed with their labels like every
dataset's samples; evaluation reads them untransformed through `raw(index)` and scores the
prediction mapped back onto the photo (as PaddleSeg and `humanseg predict` do). The split is the
fixed file-stem hash of `humanseg.data.split`; validation photos never reach training. Randomness
uses Python's `random`, which the trainer seeds per sample.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from humanseg.data.datasets import DATASETS, as_sample, load_pair
from humanseg.data.split import DEFAULT_VAL_FRACTION, is_validation
from humanseg.errors import HumanSegError, KeyPath, SpecError
from humanseg.io import IMAGE_SUFFIXES, read_image
from humanseg.registry import check_keys

PERSON = 1
PERSON_ID = 1  # COCO category id of 'person'
MASK_SUFFIX = ".png"

Transform = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class Source:
    """One folder pair of photos and same-stem label PNGs, and how it is sampled in training."""

    images: Path
    masks: Path
    repeat: int = 1
    half_body_prob: float = 0.0


@dataclass(frozen=True)
class Sample:
    """One photo, its label and the source it came from."""

    image: Path
    mask: Path
    source: Source


def parse_source(spec: dict[str, Any], path: KeyPath) -> Source:
    """Build a Source from a config entry `{images, masks, repeat?, half_body_prob?}`; a bad
    entry raises SpecError at `path` (`sources[i]`, relative to the dataset's spec)."""
    if not isinstance(spec, dict):
        raise SpecError(path, f"must be a mapping with `images` and `masks`, got {spec!r}")
    check_keys(spec, {"images", "masks", "repeat", "half_body_prob"}, path)
    for key in ("images", "masks"):
        if key not in spec:
            raise SpecError((*path, key), f"missing in {spec}")
        if not Path(spec[key]).is_dir():
            raise SpecError((*path, key), f"{spec[key]} is not a folder")
    repeat = int(spec.get("repeat", 1))
    half_body_prob = float(spec.get("half_body_prob", 0.0))
    if repeat < 1:
        raise SpecError((*path, "repeat"), f"must be >= 1, got {repeat}")
    if not 0.0 <= half_body_prob <= 1.0:
        raise SpecError((*path, "half_body_prob"), f"must be in [0, 1], got {half_body_prob}")
    return Source(Path(spec["images"]), Path(spec["masks"]), repeat, half_body_prob)


def list_samples(source: Source, validation: bool, val_fraction: float) -> list[Sample]:
    """The source's photos that have a label, on one side of the stem-hash split, sorted."""
    masks = {p.stem: p for p in source.masks.iterdir() if p.suffix.lower() == MASK_SUFFIX}
    samples = [
        Sample(path, masks[path.stem], source)
        for path in sorted(source.images.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.stem in masks
        and is_validation(path.stem, val_fraction) == validation
    ]
    if not samples:
        side = "validation" if validation else "training"
        raise HumanSegError(f"{source.images}: no {side} photos with a label in {source.masks}")
    return samples


def coco_person_free_images(coco_root: Path) -> list[Path]:
    """The images of a COCO-layout folder that carry no person annotation (usable backgrounds)."""
    annotation_files = sorted((coco_root / "annotations").glob("instances_*.json"))
    if not annotation_files:
        raise HumanSegError(f"{coco_root}: no annotations/instances_*.json (not a COCO folder)")
    backgrounds: list[Path] = []
    for annotation_file in annotation_files:
        split_name = annotation_file.stem.removeprefix("instances_")
        try:
            coco = json.loads(annotation_file.read_text())
            annotations = coco["annotations"]
            with_person = {a["image_id"] for a in annotations if a["category_id"] == PERSON_ID}
            files = [im["file_name"] for im in coco["images"] if im["id"] not in with_person]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            message = f"{annotation_file}: not a COCO instances file ({error})"
            raise HumanSegError(message) from error
        backgrounds += [
            coco_root / split_name / name
            for name in files
            if (coco_root / split_name / name).is_file()
        ]
    if not backgrounds:
        raise HumanSegError(f"{coco_root}: no person-free images found for backgrounds")
    return sorted(backgrounds)


def shrink(image: np.ndarray, max_side: int, interpolation: int) -> np.ndarray:
    """Downscale so that the longer side is at most `max_side` (training never needs more)."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=interpolation)


def person_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right; end-exclusive) of the person pixels, or None."""
    rows = np.flatnonzero((mask == PERSON).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask == PERSON).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def clip_window(
    top: float, left: float, height: float, width: float, shape: Sequence[int]
) -> tuple[int, int, int, int]:
    """A window (top, bottom, left, right) of about the given size, moved and cut to fit `shape`."""
    height = min(max(1.0, height), shape[0])
    width = min(max(1.0, width), shape[1])
    top = min(max(0.0, top), shape[0] - height)
    left = min(max(0.0, left), shape[1] - width)
    return round(top), round(top + height), round(left), round(left + width)


def half_body_window(
    box: tuple[int, int, int, int], shape: Sequence[int]
) -> tuple[int, int, int, int]:
    """Head-to-waist window of the person in `box`, at a random aspect ratio (portrait to 16:9)."""
    top, bottom, left, right = box
    person_height = bottom - top
    window_height = person_height * random.uniform(0.35, 0.65)
    window_top = top - person_height * random.uniform(0.02, 0.12)
    window_height += top - window_top
    window_width = window_height * random.uniform(0.75, 1.8)
    centre = (left + right) / 2 + (right - left) * random.uniform(-0.25, 0.25)
    return clip_window(window_top, centre - window_width / 2, window_height, window_width, shape)


def loose_window(box: tuple[int, int, int, int], shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Window around the whole person with a random margin, so people appear at varied scales."""
    top, bottom, left, right = box
    margin = random.uniform(0.05, 0.6)
    height = (bottom - top) * (1 + 2 * margin)
    width = max(right - left, height * random.uniform(0.5, 1.2))
    centre_y = (top + bottom) / 2 + (bottom - top) * random.uniform(-0.2, 0.2)
    centre_x = (left + right) / 2 + (right - left) * random.uniform(-0.4, 0.4)
    return clip_window(centre_y - height / 2, centre_x - width / 2, height, width, shape)


def soft_alpha(mask: np.ndarray) -> np.ndarray:
    """Person mask as float alpha [H, W, 1] with a feathered ~1-pixel edge (no cut-out halo)."""
    alpha = (mask == PERSON).astype(np.float32)
    return cv2.GaussianBlur(alpha, (0, 0), sigmaX=0.8)[..., None]


def shift_colour(image: np.ndarray, strength: float) -> np.ndarray:
    """Random per-channel gain and offset (up to `strength`), so layers differ in colour cast."""
    gain = 1.0 + np.array([random.uniform(-strength, strength) for _ in range(3)], np.float32)
    offset = np.float32(random.uniform(-strength, strength) * 255)
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255)


def random_crop_resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A random crop of `image` with the aspect of (height, width) covering 50-100%, resized."""
    aspect = width / height
    full_height = min(image.shape[0], image.shape[1] / aspect)
    crop_height = full_height * random.uniform(0.5, 1.0)
    crop_width = crop_height * aspect
    top = random.uniform(0, image.shape[0] - crop_height)
    left = random.uniform(0, image.shape[1] - crop_width)
    crop = image[round(top) : round(top + crop_height), round(left) : round(left + crop_width)]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


@DATASETS.register
class PortraitComposite:
    """Real portrait photos, varied by person-aware crops and compositing (see module docstring).

    Args:
        sources: folder pairs `{images, masks, repeat: 1, half_body_prob: 0.0}`; `repeat`
            lists a source's training photos that many times, `half_body_prob` is the chance
            of a head-to-waist crop of its photos.
        transforms: the PaddleSeg transforms list (built before the class sees it).
        mode: `train` (varied samples) or `val` (the held-out photos as stored).
        num_classes: only 2 (person / background).
        ignore_index: label value left out of losses and metrics.
        backgrounds: a COCO folder whose person-free images are the backgrounds (needed when
            composite_prob > 0).
        val_fraction: share of stems held out by the stem-hash split.
        composite_prob: chance a training sample is pasted onto a background.
        second_person_prob: chance a composite gets a second person behind.
        background_blur_prob: chance the background is blurred (shallow depth of field).
        loose_crop_prob: chance of a loose crop around the person when no half-body crop is made.
        colour_shift: strength of the random colour shift of the pasted person.
        max_side: training photos are shrunk to this long side (and cached) first.
    """

    def __init__(
        self,
        sources: Sequence[dict[str, Any]],
        transforms: Transform | None = None,
        mode: str = "train",
        num_classes: int = 2,
        ignore_index: int = 255,
        backgrounds: str | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        composite_prob: float = 0.5,
        second_person_prob: float = 0.2,
        background_blur_prob: float = 0.3,
        loose_crop_prob: float = 0.3,
        colour_shift: float = 0.1,
        max_side: int = 512,
    ) -> None:
        """Index the photos of `sources` on the `mode` side of the split and the backgrounds."""
        if mode not in ("train", "val"):
            raise HumanSegError(f"mode: must be 'train' or 'val', got {mode!r}")
        if num_classes != 2:
            raise HumanSegError(f"num_classes: person/background data has 2, got {num_classes}")
        if not sources:
            raise HumanSegError("sources: at least one {images, masks} folder pair is needed")
        for name, value in (
            ("composite_prob", composite_prob),
            ("second_person_prob", second_person_prob),
            ("background_blur_prob", background_blur_prob),
            ("loose_crop_prob", loose_crop_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise HumanSegError(f"{name}: must be in [0, 1], got {value}")
        self.mode = mode
        self.transforms = transforms
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.composite_prob = composite_prob
        self.second_person_prob = second_person_prob
        self.background_blur_prob = background_blur_prob
        self.loose_crop_prob = loose_crop_prob
        self.colour_shift = colour_shift
        self.max_side = max_side
        validation = mode == "val"
        self.samples: list[Sample] = []
        for index, spec in enumerate(sources):
            source = parse_source(spec, ("sources", index))
            repeat = 1 if validation else source.repeat
            self.samples += list_samples(source, validation, val_fraction) * repeat
        self.backgrounds: list[Path] = []
        if not validation and composite_prob > 0:
            if backgrounds is None:
                raise HumanSegError("backgrounds: a COCO folder is needed when composite_prob > 0")
            self.backgrounds = coco_person_free_images(Path(backgrounds))
        self._photo_cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        self._background_cache: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        """Number of samples per epoch (training repeats sources by their `repeat`)."""
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(image float32 [3, H, W], label int64 [H, W])` after the config's transforms, made
        as every dataset makes its samples (`datasets.as_sample`)."""
        return as_sample(*self.raw(index), self.transforms)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample before transforms: RGB uint8 [H, W, 3] and label uint8 [H, W]. In
        validation mode that is the stored pair at its own resolution, checked, as every
        dataset's `raw` (evaluation scores against it); only training photos are shrunk to
        `max_side` (and cached) before cropping and compositing."""
        if self.mode == "val":
            return self.load(index)
        return self.training_photo(index)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample's photo and label as stored, checked (same size, values 0, 1, ignore)."""
        sample = self.samples[index]
        return load_pair(sample.image, sample.mask, self.num_classes, self.ignore_index)

    def photo(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample's photo and label, shrunk to `max_side` and cached in memory."""
        sample = self.samples[index]
        if sample.image not in self._photo_cache:
            image, mask = self.load(index)
            self._photo_cache[sample.image] = (
                shrink(image, self.max_side, cv2.INTER_AREA),
                shrink(mask, self.max_side, cv2.INTER_NEAREST),
            )
        return self._photo_cache[sample.image]

    def background(self) -> np.ndarray:
        """A random person-free background photo, shrunk and cached."""
        path = random.choice(self.backgrounds)
        if path not in self._background_cache:
            self._background_cache[path] = shrink(read_image(path), self.max_side, cv2.INTER_AREA)
        return self._background_cache[path]

    def training_photo(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Person-aware crop, then (at random) compositing onto a background."""
        image, mask = self.photo(index)
        box = person_box(mask)
        if box is not None:
            window = None
            if random.random() < self.samples[index].source.half_body_prob:
                window = half_body_window(box, mask.shape)
            elif random.random() < self.loose_crop_prob:
                window = loose_window(box, mask.shape)
            if window is not None:
                top, bottom, left, right = window
                image, mask = image[top:bottom, left:right], mask[top:bottom, left:right]
        if box is None or random.random() >= self.composite_prob:
            return image, mask
        return self.composite(image, mask)

    def composite(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paste the person onto a background, maybe with a second person behind."""
        height, width = mask.shape
        canvas = random_crop_resized(self.background(), height, width).astype(np.float32)
        if random.random() < self.background_blur_prob:
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=random.uniform(1.0, 4.0))
        label = np.zeros_like(mask)
        if random.random() < self.second_person_prob:
            canvas, label = self.paste_second_person(canvas, label)
        alpha = soft_alpha(mask)
        person = shift_colour(image, self.colour_shift)
        canvas = alpha * person + (1.0 - alpha) * canvas
        label[mask == PERSON] = PERSON
        return np.round(canvas).astype(np.uint8), label

    def paste_second_person(
        self, canvas: np.ndarray, label: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Paste another training person, scaled to 50-100% of the canvas height, at random x."""
        image, mask = self.photo(random.randrange(len(self.samples)))
        box = person_box(mask)
        if box is None:
            return canvas, label
        top, bottom, left, right = box
        person, person_mask = image[top:bottom, left:right], mask[top:bottom, left:right]
        canvas_height, canvas_width = label.shape
        scale = canvas_height * random.uniform(0.5, 1.0) / person_mask.shape[0]
        new_width = max(1, min(canvas_width, round(person_mask.shape[1] * scale)))
        new_height = max(1, min(canvas_height, round(person_mask.shape[0] * scale)))
        person = cv2.resize(person, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
        person_mask = cv2.resize(
            person_mask, (new_width, new_height), interpolation=cv2.INTER_NEAREST
        )
        y = canvas_height - new_height  # standing on the bottom edge, like the main person
        x = random.randint(0, canvas_width - new_width)
        region = (slice(y, y + new_height), slice(x, x + new_width))
        alpha = soft_alpha(person_mask)
        person = shift_colour(person, self.colour_shift)
        canvas[region] = alpha * person + (1.0 - alpha) * canvas[region]
        label[region][person_mask == PERSON] = PERSON
        return canvas, label
