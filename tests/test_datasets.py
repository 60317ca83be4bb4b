"""Tests of the list-file and folder datasets: samples, bad pairs, skip_bad, the registry."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humanseg.data import DATASETS, build_dataset
from humanseg.errors import HumanSegError, HumanSegWarning, SpecError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_pair(
    root: Path, stem: str, label: np.ndarray, size: tuple[int, int] | None = None
) -> None:
    """images/<stem>.jpg (grey 100, `size` = (h, w) or the label's) and masks/<stem>.png."""
    height, width = size or label.shape
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{stem}.jpg"), np.full((height, width, 3), 100, np.uint8))
    cv2.imwrite(str(root / "masks" / f"{stem}.png"), label)


def half_label(value: int = 1) -> np.ndarray:
    """A 6x8 label: left half 0, right half `value`."""
    label = np.zeros((6, 8), np.uint8)
    label[:, 4:] = value
    return label


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Three good pairs a, b, c (c with ignore pixels)."""
    root = tmp_path / "data"
    write_pair(root, "a", half_label())
    write_pair(root, "b", half_label())
    with_ignore = half_label()
    with_ignore[0, 0] = 255
    write_pair(root, "c", with_ignore)
    return root


def list_spec(root: Path, lines: list[str], **extra: object) -> dict:
    """A PaddleSeg Dataset spec over a list file holding `lines`."""
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return {"type": "Dataset", "dataset_root": str(root), "train_path": str(root / "train.txt"),
            "num_classes": 2, "mode": "train", **extra}


def test_list_dataset_sample_types_and_values(root: Path) -> None:
    lines = ["images/a.jpg masks/a.png", "", "images/c.jpg masks/c.png"]
    dataset = build_dataset(list_spec(root, lines))
    assert len(dataset) == 2
    image, label = dataset[1]
    assert image.dtype == torch.float32 and image.shape == (3, 6, 8)
    assert label.dtype == torch.int64 and label.shape == (6, 8)
    assert label[0, 0] == 255 and label[0, 1] == 0 and (label[:, 4:] == 1).all()
    assert torch.all(image == 100)  # no transforms: raw pixel values


def test_list_dataset_with_transforms_and_separator(root: Path) -> None:
    spec = list_spec(root, ["images/a.jpg|masks/a.png"], separator="|",
                     transforms=[{"type": "Resize", "target_size": [16, 12]},
                                 {"type": "Normalize"}])
    image, label = build_dataset(spec)[0]
    assert image.shape == (3, 12, 16) and label.shape == (12, 16)
    np.testing.assert_allclose(image.numpy(), 100 / 255 * 2 - 1, atol=1e-6)
    assert (label[:, :7] == 0).all() and (label[:, 9:] == 1).all()


def test_list_path_may_be_relative_to_dataset_root(root: Path) -> None:
    spec = list_spec(root, ["images/a.jpg masks/a.png"])
    spec["train_path"] = "train.txt"
    assert len(build_dataset(spec)) == 1


def test_mode_needs_its_list_path(root: Path) -> None:
    spec = list_spec(root, ["images/a.jpg masks/a.png"], mode="val")
    with pytest.raises(HumanSegError, match="val_path: needed"):
        build_dataset(spec)


def test_missing_list_file_and_bad_line_are_named(root: Path) -> None:
    spec = list_spec(root, ["images/a.jpg masks/a.png"])
    spec["train_path"] = "nowhere.txt"
    with pytest.raises(HumanSegError, match="nowhere.txt: list file not found"):
        build_dataset(spec)
    with pytest.raises(HumanSegError, match=r"train\.txt:2: expected 'image_path label_path'"):
        build_dataset(list_spec(root, ["images/a.jpg masks/a.png", "images/b.jpg"]))


def test_missing_file_fails_at_start_or_is_skipped(root: Path) -> None:
    lines = ["images/a.jpg masks/a.png", "images/x.jpg masks/x.png"]
    with pytest.raises(HumanSegError, match=r"x\.jpg: file not found"):
        build_dataset(list_spec(root, lines))
    with pytest.warns(UserWarning, match=r"x\.jpg: file not found"):
        dataset = build_dataset(list_spec(root, lines, skip_bad=True))
    assert len(dataset) == 1


def test_size_mismatch_and_bad_values_are_named_at_load(root: Path) -> None:
    write_pair(root, "small", half_label(), size=(5, 8))
    write_pair(root, "three", half_label(value=3))
    dataset = build_dataset(list_spec(root, ["images/small.jpg masks/small.png",
                                             "images/three.jpg masks/three.png",
                                             "images/a.jpg masks/a.png"]))
    with pytest.raises(HumanSegError, match=r"small\.png: label is 8x6 .* is 8x5"):
        dataset[0]
    with pytest.raises(HumanSegError, match=r"three\.png: label values \[3\] outside 0\.\.1"):
        dataset[1]


def test_skip_bad_substitutes_the_next_good_pair(root: Path) -> None:
    write_pair(root, "three", half_label(value=3))
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(root / "masks" / "broken.png"), half_label())
    dataset = build_dataset(list_spec(root, ["images/three.jpg masks/three.png",
                                             "images/broken.jpg masks/broken.png",
                                             "images/b.jpg masks/b.png"], skip_bad=True))
    with pytest.warns(UserWarning) as caught:
        _, label = dataset[0]
    assert (label[:, 4:] == 1).all()  # b, the first good pair after index 0
    messages = " ".join(str(w.message) for w in caught)
    assert "three.png: label values [3]" in messages and "broken.jpg: not a readable" in messages
    assert dataset.bad == {0, 1}


def test_folder_dataset_all_stems_and_a_subset(root: Path, tmp_path: Path) -> None:
    spec = {"type": "FolderDataset", "dataset_root": str(root), "num_classes": 2}
    assert len(build_dataset(spec)) == 3
    assert len(build_dataset({**spec, "stems": ["c", "a"]})) == 2
    stems_file = tmp_path / "val_stems.txt"
    stems_file.write_text("b\n\n")
    subset = build_dataset({**spec, "stems_file": str(stems_file)})
    assert len(subset) == 1 and subset.pairs[0][0].name == "b.jpg"
    with pytest.raises(HumanSegError, match=r"images/zz\.jpg: file not found"):
        build_dataset({**spec, "stems": ["zz"]})


def test_folder_dataset_missing_mask_is_named(root: Path) -> None:
    (root / "masks" / "b.png").unlink()
    with pytest.raises(HumanSegError, match=r"b\.png: file not found"):
        build_dataset({"type": "FolderDataset", "dataset_root": str(root), "num_classes": 2})


def test_spec_errors_name_the_key(root: Path) -> None:
    with pytest.raises(SpecError, match="imgs_dir: unknown key"):
        build_dataset({"type": "FolderDataset", "dataset_root": str(root), "num_classes": 2,
                       "imgs_dir": "x"})
    with pytest.raises(SpecError, match="type: unknown dataset type 'Coco'"):
        build_dataset({"type": "Coco"})
    assert {"Dataset", "FolderDataset"} <= set(DATASETS)


@pytest.mark.skipif(not (DATA / "portraits").is_dir(), reason="../shared/data/portraits absent")
def test_real_portraits_folder() -> None:
    dataset = build_dataset({
        "type": "FolderDataset", "dataset_root": str(DATA / "portraits"), "num_classes": 2,
        "stems": ["vs_1"],
        "transforms": [{"type": "Resize", "target_size": [192, 192]}, {"type": "Normalize"}],
    })
    image, label = dataset[0]
    assert image.shape == (3, 192, 192) and set(label.unique().tolist()) <= {0, 1}
    assert 0.05 < (label == 1).float().mean() < 0.95


def test_palette_label_png_gives_class_indices(root: Path) -> None:
    """PaddleSeg's pseudo-colour labels are palette PNGs: the indices, not the colours, count."""
    from PIL import Image

    indices = half_label()
    indices[5, 0] = 255
    palette = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192]
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    image.save(root / "masks" / "a.png")
    dataset = build_dataset({"type": "FolderDataset", "dataset_root": str(root),
                             "num_classes": 2, "stems": ["a"]})
    np.testing.assert_array_equal(dataset[0][1].numpy(), indices)


@pytest.mark.parametrize("kind", ["Dataset", "FolderDataset"])
def test_masks_of_only_0_and_255_warn_once_per_dataset(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "binary"
    for index in range(40):  # masks saved as 0/255: a person that is all "ignore"
        write_pair(root, f"p{index:02d}", half_label(value=255))
    lines = [f"images/p{index:02d}.jpg masks/p{index:02d}.png" for index in range(40)]
    spec = (list_spec(root, lines) if kind == "Dataset" else
            {"type": "FolderDataset", "dataset_root": str(root), "num_classes": 2})
    with pytest.warns(HumanSegWarning) as caught:
        dataset = build_dataset(spec)
        for index in range(len(dataset)):
            dataset[index]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "the 16 labels checked hold only 0 (background) and 255 (ignore_index)" in messages[0]
    assert "mask // 255" in messages[0]


def test_labels_with_a_person_or_a_few_empty_ones_do_not_warn(root: Path) -> None:
    for index in range(5):
        write_pair(root, f"empty{index}", np.zeros((6, 8), np.uint8))  # photos without people
    lines = [f"images/{stem}.jpg masks/{stem}.png"
             for stem in ("a", "b", "c", *(f"empty{index}" for index in range(5)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset(list_spec(root, lines))
    with pytest.warns(HumanSegWarning, match=r"hold only 0 \(background\), no class 1\.\.1"):
        build_dataset(list_spec(root, lines[3:]))  # only the empty ones


@pytest.mark.skipif(not (DATA / "portraits").is_dir(), reason="../shared/data/portraits absent")
def test_a_phone_photo_with_exif_orientation_pairs_with_its_upright_mask(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "phone"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    with Image.open(DATA / "portraits" / "images" / "vs_1.jpg") as photo:
        exif = photo.getexif()
        exif[0x0112] = 8  # viewers turn the stored pixels 90 degrees counter-clockwise
        photo.transpose(Image.Transpose.ROTATE_270).save(root / "images" / "vs_1.jpg",
                                                          quality=95, exif=exif)
    mask = cv2.imread(str(DATA / "portraits" / "masks" / "vs_1.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / "masks" / "vs_1.png"), mask)  # drawn on the upright photo
    image, label = build_dataset({"type": "FolderDataset", "dataset_root": str(root),
                                  "num_classes": 2})[0]
    assert tuple(image.shape) == (3, *mask.shape) and torch.equal(label, torch.from_numpy(
        mask.astype(np.int64)))


def test_errors_building_a_config_section_name_the_section(tmp_path: Path) -> None:
    spec = {"type": "Dataset", "dataset_root": str(tmp_path), "num_classes": 2,
            "train_path": "nowhere.txt"}
    with pytest.raises(SpecError, match=r"^train_dataset: nowhere\.txt: list file not found"
                       ) as caught:
        build_dataset(spec, ("train_dataset",))
    assert caught.value.path == ("train_dataset",)
    with pytest.raises(SpecError, match=r"^val_dataset\.transforms\[0\]\.type: unknown inference"):
        build_dataset({**spec, "mode": "val", "transforms": [{"type": "RandomNoise"}]},
                      ("val_dataset",))
