"""Tests of the compositing portrait dataset on small hand-made photos and on the real data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humanseg.data import build_dataset
from humanseg.data.composite import PortraitComposite, coco_person_free_images
from humanseg.data.split import is_validation
from humanseg.errors import HumanSegError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
HEIGHT, WIDTH = 80, 60
# The person: a green rectangle, rows 10..69, columns 20..39, on a red photo background.
PERSON_ROWS, PERSON_COLS = slice(10, 70), slice(20, 40)


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write an RGB array losslessly (PNG) so expected pixel values survive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1])


def make_photos(root: Path, count: int = 40) -> dict:
    """`count` photos of a green person on red with 0/1 masks; returns the source spec."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = RED
    image[PERSON_ROWS, PERSON_COLS] = GREEN
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[PERSON_ROWS, PERSON_COLS] = 1
    (root / "masks").mkdir(parents=True)
    for i in range(count):
        write_rgb(root / "images" / f"p{i:03d}.png", image)
        cv2.imwrite(str(root / "masks" / f"p{i:03d}.png"), mask)
    return {"images": str(root / "images"), "masks": str(root / "masks")}


def make_coco(root: Path) -> Path:
    """A COCO folder with a blue person-free image and a white image holding a person."""
    write_rgb(root / "train2017" / "free.png", np.full((100, 100, 3), BLUE, np.uint8))
    write_rgb(root / "train2017" / "crowd.png", np.full((100, 100, 3), WHITE, np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "free.png"}, {"id": 2, "file_name": "crowd.png"}],
        "annotations": [{"id": 7, "image_id": 2, "category_id": 1}],
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(coco))
    return root


@pytest.fixture()
def source(tmp_path: Path) -> dict:
    return make_photos(tmp_path / "photos")


@pytest.fixture()
def coco(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "coco")


def no_variation(**overrides: float) -> dict:
    """Keyword arguments that switch every random variation off except those overridden."""
    options = {
        "composite_prob": 0.0,
        "second_person_prob": 0.0,
        "background_blur_prob": 0.0,
        "loose_crop_prob": 0.0,
        "colour_shift": 0.0,
    }
    options.update(overrides)
    return options


def test_backgrounds_are_only_the_person_free_coco_images(coco: Path) -> None:
    assert coco_person_free_images(coco) == [coco / "train2017" / "free.png"]


def test_train_and_val_follow_the_stem_hash_split(source: dict) -> None:
    train = PortraitComposite([source], mode="train", **no_variation())
    val = PortraitComposite([source], mode="val")
    val_stems = {s.image.stem for s in val.samples}
    train_stems = {s.image.stem for s in train.samples}
    assert val_stems == {f"p{i:03d}" for i in range(40) if is_validation(f"p{i:03d}")}
    assert train_stems.isdisjoint(val_stems) and len(train_stems | val_stems) == 40


def test_repeat_multiplies_training_but_not_validation(source: dict) -> None:
    once = PortraitComposite([source], **no_variation())
    twice = PortraitComposite([{**source, "repeat": 2}], **no_variation())
    assert len(twice) == 2 * len(once)
    assert len(PortraitComposite([{**source, "repeat": 2}], mode="val")) == len(
        PortraitComposite([source], mode="val")
    )


def test_without_variation_the_photo_comes_back_unchanged(source: dict) -> None:
    image, label = PortraitComposite([source], **no_variation()).raw(0)
    assert image.shape == (HEIGHT, WIDTH, 3) and label.shape == (HEIGHT, WIDTH)
    assert (image[PERSON_ROWS, PERSON_COLS] == GREEN).all()
    assert (image[:5] == RED).all()
    assert label.sum() == 60 * 20


def test_compositing_replaces_the_photo_background_and_keeps_the_person(
    source: dict, coco: Path
) -> None:
    random.seed(0)
    dataset = PortraitComposite([source], backgrounds=str(coco), **no_variation(composite_prob=1))
    image, label = dataset.raw(0)
    expected_label = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected_label[PERSON_ROWS, PERSON_COLS] = 1
    np.testing.assert_array_equal(label, expected_label)
    # Away from the 1-pixel feathered edge: person green, everything else the blue background.
    assert (image[12:68, 22:38] == GREEN).all()
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[7:73, 17:43] = False
    assert (image[outside] == BLUE).all()


def test_second_person_adds_a_labelled_person_standing_on_the_bottom(
    source: dict, coco: Path
) -> None:
    random.seed(3)
    dataset = PortraitComposite(
        [source], backgrounds=str(coco), **no_variation(composite_prob=1, second_person_prob=1)
    )
    image, label = dataset.raw(0)
    extra = (label == 1) & ~np.pad(np.ones((60, 20), bool), ((10, 10), (20, 20)))
    assert extra.any(), "a second person must be labelled outside the first"
    # The second person is pasted whole: green but for the main person's feathered edge (sigma
    # 0.8 px: under 5% of its red photo background 2 px away), and it reaches the bottom row.
    core = cv2.erode(extra.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(image[core].astype(int) - GREEN).max() <= 0.05 * 255
    assert label[-1].any()
    assert set(np.unique(label)) == {0, 1}


def test_half_body_crop_keeps_the_head_and_cuts_at_the_waist(source: dict) -> None:
    dataset = PortraitComposite([{**source, "half_body_prob": 1.0}], **no_variation())
    for seed in range(20):
        random.seed(seed)
        image, label = dataset.raw(0)
        rows = np.flatnonzero(label.any(axis=1))
        # Window: 2-12% of the 60-row person above the head, then 35-65% of it below the head.
        assert 1 <= rows[0] <= 8, seed
        assert rows[-1] == label.shape[0] - 1, "the person continues below the crop"
        assert 0.35 * 60 - 1 <= rows.size <= 0.65 * 60 + 1, seed
        assert image.shape[:2] == label.shape


def test_label_of_another_size_is_named(tmp_path: Path) -> None:
    spec = make_photos(tmp_path / "photos", count=3)
    for path in Path(spec["masks"]).iterdir():
        cv2.imwrite(str(path), np.zeros((10, 10), np.uint8))
    dataset = PortraitComposite([spec], **no_variation())
    with pytest.raises(HumanSegError, match=r"p\d+\.png: label is 10x10 .* is 60x80"):
        dataset.raw(0)


def test_label_values_outside_the_classes_are_named(tmp_path: Path) -> None:
    spec = make_photos(tmp_path / "photos", count=3)
    for path in Path(spec["masks"]).iterdir():
        cv2.imwrite(str(path), np.full((HEIGHT, WIDTH), 7, np.uint8))
    with pytest.raises(HumanSegError, match=r"p\d+\.png: label values \[7\]"):
        PortraitComposite([spec], **no_variation()).raw(0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda spec: {"mode": "test"}, "mode"),
        (lambda spec: {"composite_prob": 1.5}, "composite_prob"),
        (lambda spec: {"composite_prob": 0.5}, "backgrounds"),
        (lambda spec: {"sources": []}, "sources"),
        (lambda spec: {"sources": [{"images": "/no/dir", "masks": "/no/dir"}]}, "/no/dir"),
        (lambda spec: {"sources": [{**spec, "weight": 2}]}, r"sources\[0\]\.weight: unknown key"),
        (lambda spec: {"sources": [{**spec, "repeat": 0}]}, "repeat"),
        (lambda spec: {"sources": [{"images": spec["images"]}]}, r"sources\[0\]\.masks: missing"),
    ],
)
def test_bad_settings_are_clear_errors(source: dict, change, message: str) -> None:
    options = {"sources": [source], **no_variation(), **change(source)}
    with pytest.raises(HumanSegError, match=message):
        PortraitComposite(**options)


def test_folder_that_is_not_coco_is_named(source: dict, tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match="not a COCO folder"):
        PortraitComposite([source], backgrounds=str(tmp_path), composite_prob=0.5)


@pytest.mark.skipif(not (DATA / "portraits").is_dir(), reason="../shared/data not present")
def test_real_portraits_composite_onto_coco_backgrounds() -> None:
    spec = {"images": str(DATA / "portraits/images"), "masks": str(DATA / "portraits/masks")}
    val = PortraitComposite([spec], mode="val")
    assert all(is_validation(s.image.stem) for s in val.samples)
    assert 0.10 < len(val) / 237 < 0.20
    train = PortraitComposite(
        [{**spec, "half_body_prob": 0.5}],
        backgrounds=str(DATA / "coco_mini"),
        composite_prob=1.0,
        second_person_prob=0.5,
        max_side=256,
    )
    assert len(train) + len(val) == 237
    random.seed(0)
    for index in range(0, len(train), 40):
        image, label = train.raw(index)
        assert image.dtype == np.uint8 and image.shape[:2] == label.shape
        assert max(label.shape) <= 256
        assert set(np.unique(label)) <= {0, 1} and label.any()


def test_config_spec_builds_it_and_val_raw_labels_keep_full_resolution(
    source: dict, coco: Path
) -> None:
    transforms = [{"type": "Resize", "target_size": [32, 48]}, {"type": "Normalize"}]
    spec = {"type": "PortraitComposite", "sources": [source], "num_classes": 2,
            "backgrounds": str(coco), "transforms": transforms, **no_variation()}
    image, label = build_dataset(spec)[0]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 32)
    assert label.dtype == torch.int64 and tuple(label.shape) == (48, 32)
    # Normalize maps pixel p to p / 127.5 - 1: the green person's centre is (-1, 1, -1).
    np.testing.assert_allclose(image[:, 24, 16].numpy(), [-1.0, 1.0, -1.0], atol=1e-6)
    val = build_dataset({**spec, "mode": "val"})
    image, label = val[0]  # samples: the label transformed with the photo, as every dataset
    assert tuple(image.shape) == (3, 48, 32) and tuple(label.shape) == (48, 32)
    photo, label = val.raw(0)  # what evaluation scores against: the photo's own label
    assert photo.shape == (HEIGHT, WIDTH, 3) and label.shape == (HEIGHT, WIDTH)
    assert int(label.sum()) == 60 * 20


def test_unknown_config_key_is_named(source: dict) -> None:
    with pytest.raises(HumanSegError, match="colour_shfit"):
        build_dataset({"type": "PortraitComposite", "sources": [source], "colour_shfit": 0.1})
