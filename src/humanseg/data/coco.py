"""`humanseg prepare-coco`: COCO instance annotations -> person label PNGs and PaddleSeg list files.

Output layout (`--out`, e.g. dataset/COCO_person), in the form the list-file `Dataset` reads:

    images/train2017/<name>.jpg       link to the COCO image (a copy with --copy-images)
    annotations/train2017/<name>.png  0 background, 1 person, 255 crowd ("iscrowd") person regions
    train2017.txt                     `images/train2017/<name>.jpg annotations/train2017/<name>.png`
    (the same for val2017)

An image is kept when it holds a non-crowd person of at least `--min-area` pixels (COCO area);
with `--keep-empty` the others are kept too (with their persons, if any, drawn as usual). Labels
are truthful either way: every person instance of a kept image is drawn, crowd regions first so a
person drawn over a crowd stays 1. The run is resumable: labels and links already in place are
skipped, and the settings are stored in `prepare_coco.json` so a rerun with other settings fails
instead of mixing outputs (use --overwrite to redo).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from humanseg.errors import HumanSegError
from humanseg.io import atomic_path, atomic_write, write_image

PERSON_CATEGORY = 1
PERSON, CROWD = 1, 255
SPLITS = ("train2017", "val2017")
SETTINGS_FILE = "prepare_coco.json"


def person_label(coco: Any, image_info: dict[str, Any]) -> np.ndarray:
    """Label of one image: 0 background, 255 crowd person regions, then 1 for each person."""
    height, width = image_info["height"], image_info["width"]
    label = np.zeros((height, width), dtype=np.uint8)
    ann_ids = coco.getAnnIds(imgIds=[image_info["id"]], catIds=[PERSON_CATEGORY], iscrowd=None)
    annotations = coco.loadAnns(ann_ids)
    with warnings.catch_warnings():  # pycocotools 2.0.11 trips a NumPy 2 deprecation warning
        warnings.simplefilter("ignore", DeprecationWarning)
        for crowd in (1, 0):
            for ann in annotations:
                if int(ann.get("iscrowd", 0)) == crowd:
                    label[coco.annToMask(ann).astype(bool)] = CROWD if crowd else PERSON
    return label


def keeps_image(coco: Any, image_id: int, min_area: float, keep_empty: bool) -> bool:
    """Whether the image goes into the dataset (see module docstring)."""
    if keep_empty:
        return True
    ann_ids = coco.getAnnIds(imgIds=[image_id], catIds=[PERSON_CATEGORY], iscrowd=False)
    return any(ann["area"] >= min_area for ann in coco.loadAnns(ann_ids))


def place_image(source: Path, target: Path, copy: bool) -> None:
    """Put the image at `target` as a relative symlink (or a copy), atomically."""
    if copy:
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(source.resolve(), target.parent.resolve())
    with atomic_path(target) as tmp:
        tmp.unlink()
        tmp.symlink_to(relative)


def load_coco(annotation_file: Path) -> Any:
    """pycocotools' COCO index of one annotation file, with a clear error when it is bad."""
    from pycocotools.coco import COCO

    if not annotation_file.is_file():
        raise HumanSegError(f"{annotation_file}: COCO annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            return COCO(str(annotation_file))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise HumanSegError(f"{annotation_file}: not a COCO instances file ({error})") from None


def check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume a run made with other settings (unless overwriting); record these."""
    record = out / SETTINGS_FILE
    if record.is_file() and not overwrite:
        previous = json.loads(record.read_text(encoding="utf-8"))
        if previous != settings:
            raise HumanSegError(
                f"{record}: earlier run used other settings {previous}; "
                "rerun with the same options, or with --overwrite"
            )
    atomic_write(record, lambda tmp: tmp.write_text(json.dumps(settings, indent=2) + "\n"))


def convert_split(
    coco_root: Path, out: Path, split: str, args: argparse.Namespace
) -> tuple[int, int]:
    """Write one split's labels, images and list file; return (kept images, newly written)."""
    coco = load_coco(coco_root / "annotations" / f"instances_{split}.json")
    image_ids = sorted(coco.getImgIds())
    lines, written = [], 0
    for image_id in tqdm(image_ids, desc=f"prepare-coco {split}", unit="img"):
        info = coco.loadImgs([image_id])[0]
        if not keeps_image(coco, image_id, args.min_area, args.keep_empty):
            continue
        source = coco_root / split / info["file_name"]
        if not source.is_file():
            raise HumanSegError(f"{source}: image listed in instances_{split}.json not found")
        image_rel = Path("images") / split / info["file_name"]
        label_rel = Path("annotations") / split / f"{Path(info['file_name']).stem}.png"
        image_out, label_out = out / image_rel, out / label_rel
        if args.overwrite or not label_out.is_file():
            write_image(label_out, person_label(coco, info))
            written += 1
        if args.overwrite or not (image_out.is_file() or image_out.is_symlink()):
            place_image(source, image_out, args.copy_images)
        lines.append(f"{image_rel.as_posix()} {label_rel.as_posix()}\n")
    atomic_write(out / f"{split}.txt", lambda tmp: tmp.write_text("".join(lines)))
    return len(lines), written
