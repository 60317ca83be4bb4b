"""`humanseg prepare-coco`: COCO instance annotations -> person label PNGs and PaddleSeg list
files (`humanseg.data.coco`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from humanseg.data.coco import SPLITS, check_settings, convert_split
from humanseg.errors import HumanSegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the prepare-coco verb."""
    parser.add_argument("--coco-root", required=True, help="folder with annotations/ and images")
    parser.add_argument("--out", required=True, help="output folder, e.g. dataset/COCO_person")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS),
                        help="COCO splits to convert (annotations/instances_SPLIT.json)")
    parser.add_argument(
        "--min-area", type=float, default=0.0,
        help="keep an image only if it has a non-crowd person of at least this area (pixels)",
    )
    parser.add_argument(
        "--keep-empty", action="store_true", help="also keep images without a (large) person"
    )
    parser.add_argument(
        "--copy-images", action="store_true", help="copy images instead of linking them"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo every file, even with other settings"
    )


def run(args: argparse.Namespace) -> int:
    """Convert every requested split and print a one-line summary per split."""
    coco_root, out = Path(args.coco_root), Path(args.out)
    if not coco_root.is_dir():
        raise HumanSegError(f"{coco_root}: COCO root folder not found")
    if args.min_area < 0:
        raise HumanSegError(f"--min-area: must be >= 0, got {args.min_area}")
    for split in args.splits:
        annotation_file = coco_root / "annotations" / f"instances_{split}.json"
        if not annotation_file.is_file():
            raise HumanSegError(f"{annotation_file}: COCO annotation file not found")
    settings = {"min_area": args.min_area, "keep_empty": args.keep_empty}
    check_settings(out, settings, args.overwrite)
    for split in args.splits:
        kept, written = convert_split(coco_root, out, split, args)
        print(f"{split}: {kept} images -> {out / (split + '.txt')} ({written} labels written)")
    return 0
