"""Tests of `humanseg prepare-coco` on a hand-made COCO fixture and on the real coco_mini subset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanseg.cli.prepare_coco import add_arguments, run
from humanseg.data import build_dataset
from humanseg.errors import HumanSegError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HEIGHT, WIDTH = 8, 10


def parse(*argv: str) -> argparse.Namespace:
    """The verb's own parser, as the CLI builds it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def rectangle(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """COCO polygon of the pixel block x0 <= x < x1, y0 <= y < y1 (corners on pixel edges)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    """A COCO folder with three 10x8 val images: persons + crowd, only a cat, one tiny person."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images = []
    for image_id, name in ((1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg")):
        cv2.imwrite(str(root / "val2017" / name), np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
        images.append({"id": image_id, "file_name": name, "height": HEIGHT, "width": WIDTH})
    # Crowd RLE (column-major): columns x = 5..7, rows y = 2..5 of an 8-row image:
    # 5*8+2 = 42 zeros, then (4 ones, 4 zeros) twice, 4 ones, and 80 - 62 = 18 zeros.
    crowd = {"counts": [42, 4, 4, 4, 4, 4, 18], "size": [HEIGHT, WIDTH]}
    annotations = [
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12.0,
         "segmentation": rectangle(2, 1, 6, 4), "bbox": [2, 1, 4, 3]},
        {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 12.0,
         "segmentation": crowd, "bbox": [5, 2, 3, 4]},
        {"id": 13, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 4.0,
         "segmentation": rectangle(0, 6, 2, 8), "bbox": [0, 6, 2, 2]},
        {"id": 21, "image_id": 2, "category_id": 17, "iscrowd": 0, "area": 4.0,
         "segmentation": rectangle(0, 0, 2, 2), "bbox": [0, 0, 2, 2]},
        {"id": 31, "image_id": 3, "category_id": 1, "iscrowd": 0, "area": 2.0,
         "segmentation": rectangle(8, 6, 10, 7), "bbox": [8, 6, 2, 1]},
    ]
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"},
                  {"id": 17, "name": "cat"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    return root


def expected_label_a() -> np.ndarray:
    """Image a by hand: person x 2..5, y 1..3 -> 1; crowd x 5..7, y 2..5 -> 255 where no person."""
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[2:6, 5:8] = 255
    label[1:4, 2:6] = 1
    return label


def read_label(out: Path, stem: str) -> np.ndarray:
    """A written label PNG as stored."""
    return cv2.imread(str(out / "annotations" / "val2017" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)


def test_labels_and_list_file_match_hand_worked_pixels(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "COCO_person"
    assert run(parse("--coco-root", str(coco_root), "--out", str(out), "--splits", "val2017")) == 0
    np.testing.assert_array_equal(read_label(out, "a"), expected_label_a())
    lines = (out / "val2017.txt").read_text().splitlines()
    # b has no person, c's only person is kept (min area 0): both persons' images listed.
    assert lines == [
        "images/val2017/a.jpg annotations/val2017/a.png",
        "images/val2017/c.jpg annotations/val2017/c.png",
    ]
    expected_c = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected_c[6, 8:10] = 1
    np.testing.assert_array_equal(read_label(out, "c"), expected_c)
    assert (out / "images" / "val2017" / "a.jpg").resolve() == (coco_root / "val2017" / "a.jpg")
    sample = build_dataset({"type": "Dataset", "dataset_root": str(out), "num_classes": 2,
                            "mode": "val", "val_path": str(out / "val2017.txt")})
    assert len(sample) == 2
    np.testing.assert_array_equal(sample[0][1].numpy(), expected_label_a())


def test_min_area_and_keep_empty(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "min_area"
    run(parse("--coco-root", str(coco_root), "--out", str(out), "--splits", "val2017",
              "--min-area", "5"))
    assert [line.split()[0] for line in (out / "val2017.txt").read_text().splitlines()] == [
        "images/val2017/a.jpg"
    ]
    out = tmp_path / "keep_empty"
    run(parse("--coco-root", str(coco_root), "--out", str(out), "--splits", "val2017",
              "--min-area", "5", "--keep-empty", "--copy-images"))
    assert len((out / "val2017.txt").read_text().splitlines()) == 3
    assert not read_label(out, "b").any()
    assert read_label(out, "c")[6, 8] == 1  # a kept image draws every person, however small
    assert not (out / "images" / "val2017" / "b.jpg").is_symlink()


def test_rerun_skips_done_files_and_resumes(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "COCO_person"
    args = ("--coco-root", str(coco_root), "--out", str(out), "--splits", "val2017")
    run(parse(*args))
    label_a = out / "annotations" / "val2017" / "a.png"
    stamp = label_a.stat().st_mtime_ns
    (out / "annotations" / "val2017" / "c.png").unlink()
    run(parse(*args))
    assert label_a.stat().st_mtime_ns == stamp
    assert read_label(out, "c")[6, 8] == 1
    assert not list(out.rglob(".*tmp*")), "no temporary files left behind"


def test_rerun_with_other_settings_is_refused_unless_overwrite(
    coco_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "COCO_person"
    args = ("--coco-root", str(coco_root), "--out", str(out), "--splits", "val2017")
    run(parse(*args))
    with pytest.raises(HumanSegError, match="prepare_coco.json.*other settings"):
        run(parse(*args, "--min-area", "5"))
    run(parse(*args, "--min-area", "5", "--overwrite"))
    assert len((out / "val2017.txt").read_text().splitlines()) == 1


def test_missing_annotation_file_is_named(coco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match="instances_train2017.json: COCO annotation file"):
        run(parse("--coco-root", str(coco_root), "--out", str(tmp_path / "o")))


def test_missing_image_is_named(coco_root: Path, tmp_path: Path) -> None:
    (coco_root / "val2017" / "c.jpg").unlink()
    with pytest.raises(HumanSegError, match=r"c\.jpg: image listed in instances_val2017"):
        run(parse("--coco-root", str(coco_root), "--out", str(tmp_path / "o"),
                  "--splits", "val2017"))


@pytest.mark.skipif(not (DATA / "coco_mini").is_dir(), reason="../shared/data/coco_mini absent")
def test_real_coco_mini_val(tmp_path: Path) -> None:
    root = DATA / "coco_mini"
    document = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    with_person = {a["image_id"] for a in document["annotations"]
                   if a["category_id"] == 1 and not a["iscrowd"]}
    out = tmp_path / "COCO_person"
    run(parse("--coco-root", str(root), "--out", str(out), "--splits", "val2017"))
    lines = (out / "val2017.txt").read_text().splitlines()
    names = {img["id"]: Path(img["file_name"]).stem for img in document["images"]}
    assert sorted(Path(line.split()[1]).stem for line in lines) == sorted(
        names[i] for i in with_person
    )
    dataset = build_dataset({"type": "Dataset", "dataset_root": str(out), "num_classes": 2,
                             "mode": "val", "val_path": "val2017.txt"})
    image, label = dataset[0]
    assert image.shape[1:] == label.shape and (label == 1).any()


def test_cli_verb_converts_and_reports_errors_in_one_line(
    coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from humanseg.cli import main

    out = tmp_path / "COCO_person"
    assert main(["prepare-coco", "--coco-root", str(coco_root), "--out", str(out),
                 "--splits", "val2017"]) == 0
    assert "val2017: 2 images" in capsys.readouterr().out
    assert main(["prepare-coco", "--coco-root", str(tmp_path / "nope"), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("humanseg prepare-coco: error: ") and "\n" not in error
