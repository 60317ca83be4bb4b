"""Mask-cleaning rules side by side, to choose `humanseg predict`'s default on training photos.

    cd benchmarks && ../.venv/bin/python bench_region_rules.py --split train [--per_source 200]

Every photo of the chosen split of every source (bench_default_model's sources; `--split train`:
the photos the held-out split leaves, evenly thinned to `--per_source`) goes once through
`humanseg predict`'s own predictor (onnxruntime, the packaged model unless --config/--model_path)
without cleaning; each rule (`RegionFilter` options) then cleans the same network-resolution
probabilities, and the label PNG predict would write is scored at the photo's resolution: mIoU,
its change against no cleaning (points), and person regions per photo (8-connected) against the
label's. The line `chosen` names the rule with the highest worst-source mIoU change among those
keeping portraits and COCO at or under 1.15x the labels' regions (issue 10's goal).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_default_model import SOURCES, region_counts, validation_photos

from humanseg.deploy.api import build_predictor
from humanseg.engine.predict import Prediction
from humanseg.io import read_image, read_mask
from humanseg.metrics import SegMetrics
from humanseg.ops import RegionFilter
from humanseg.weights import resolve_paths

GOAL_RATIO = 1.15
GOAL_SOURCES = ("portraits", "coco_person")
PEAKS = (1.0, 0.9, 0.8, 0.7, 0.65, 0.6)
RULES: dict[str, RegionFilter] = {"raw": RegionFilter()}
RULES.update({f"frac={frac:g},peak={peak:g}": RegionFilter(frac, confident_peak=peak)
              for frac in (0.02, 0.05, 0.1, 0.2) for peak in PEAKS})
RULES.update({f"area={area:g},peak={peak:g}":
              RegionFilter(min_region_area=area, confident_peak=peak)
              for area in (0.0005, 0.001, 0.002, 0.005) for peak in PEAKS})


def thinned(pairs: list[tuple[Path, Path]], count: int) -> list[tuple[Path, Path]]:
    """At most `count` of `pairs`, evenly spaced (the same ones every run)."""
    if len(pairs) <= count:
        return pairs
    return [pairs[index * len(pairs) // count] for index in range(count)]


def measure(predictor, pairs: list[tuple[Path, Path]]) -> dict[str, dict[str, float]]:
    """mIoU and predicted / label regions per photo of every rule on one source's photos."""
    metrics = {name: SegMetrics(num_classes=2) for name in RULES}
    regions: dict[str, list[int]] = defaultdict(list)
    for image_path, label_path in pairs:
        prediction, label = predictor.infer(read_image(image_path)), read_mask(label_path)
        regions["label"].append(region_counts(label)[0])
        scored: dict[bytes, tuple[np.ndarray, int]] = {}  # rules that agree are scored once
        for name, rule in RULES.items():
            cleaned = rule(prediction.probabilities)
            key = cleaned.tobytes()
            if key not in scored:
                mask = Prediction(cleaned, prediction.placement, prediction.size).label()
                photo = SegMetrics(num_classes=2)
                photo.update(mask[None], label[None])
                scored[key] = (photo.confusion, region_counts(mask)[0])
            confusion, count = scored[key]
            metrics[name].confusion += confusion  # mIoU pools the pixels of every photo
            regions[name].append(count)
    label_regions = float(np.mean(regions["label"]))
    raw_miou = float(metrics["raw"].compute()["miou"])
    return {name: {"miou": float(metrics[name].compute()["miou"]),
                   "change_points": 100 * (float(metrics[name].compute()["miou"]) - raw_miou),
                   "regions": float(np.mean(regions[name])), "label_regions": label_regions}
            for name in RULES}


def chosen_rule(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The rule with the highest worst-source mIoU change among those meeting the region goal."""
    def meets(name: str) -> bool:
        return all(table[s][name]["regions"] <= GOAL_RATIO * table[s][name]["label_regions"]
                   for s in GOAL_SOURCES)

    return max((name for name in RULES if meets(name)),
               key=lambda name: min(table[s][name]["change_points"] for s in table))


def main() -> None:
    """Score every rule on every source of the split; print a table and the chosen rule."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--per_source", type=int, default=200,
                        help="at most this many training photos per source (val: all)")
    parser.add_argument("--config", help="config (default: the packaged model's)")
    parser.add_argument("--model_path", help="model file (default: the packaged model)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    config_path, model_path = resolve_paths(args.config, args.model_path)
    predictor = build_predictor(config_path, model_path, backend="onnxruntime",
                                region_filter=RegionFilter())
    table = {}
    for source in SOURCES:
        pairs = validation_photos(source, held_out=args.split == "val")
        if args.split == "train":
            pairs = thinned(pairs, args.per_source)
        table[source] = measure(predictor, pairs)
        print(f"{source}: {len(pairs)} photos", file=sys.stderr, flush=True)
    for name in RULES:
        cells = [f"{s} {table[s][name]['regions']:.2f}/{table[s][name]['label_regions']:.2f} "
                 f"{table[s][name]['miou']:.4f} ({table[s][name]['change_points']:+.3f})"
                 for s in SOURCES]
        print(f"{name:22s} " + " | ".join(cells))
    print(f"chosen: {chosen_rule(table)}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
