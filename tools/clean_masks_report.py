"""Measure mask cleaning at inference (humanseg.ops.regions) on the held-out photos, per source.

The packaged model (or `--config` / `--model_path`) runs through the inference pipeline itself
(`build_predictor`, keeping every region); each setting (`--min_region_frac` values and
`--main_subject`) cleans the same network-resolution probabilities, as `Predictor` does, before
they are mapped back to the photo. Reported
per source and setting: mIoU, person IoU, and 8-connected person regions per photo in the
prediction against the label's. Writes `clean_masks.{json,md}` to `--save_dir` and a PNG to `--out`.

    .venv/bin/python tools/clean_masks_report.py --out docs/figures
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ablation_report import (
    IGNORE,
    PERSON,
    mask_tile,
    person_components,
    save_figure,
    source_name,
    write_small_png,
)

from humanseg.builder import load_config
from humanseg.data import build_dataset
from humanseg.deploy.api import build_predictor
from humanseg.engine.predict import Prediction
from humanseg.io import atomic_path
from humanseg.metrics import SegMetrics
from humanseg.ops import RegionFilter
from humanseg.weights import resolve_paths

VAL_CONFIG = "configs/portrait/pp_humanseg_lite_portrait_192x192_scl.yml"
FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
SETTINGS = [(f"min_region_frac {f:g}", RegionFilter(f)) for f in FRACTIONS] + [
    ("main_subject", RegionFilter(main_subject=True))
]


def cleaned_label(prediction: Prediction, region_filter: RegionFilter) -> np.ndarray:
    """The label `humanseg predict` writes with `region_filter` as its cleaning."""
    return Prediction(region_filter(prediction.probabilities), prediction.placement,
                      prediction.size).label()


def measure(dataset: Any, predictor: Any) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """Metrics per (setting, source) and, per photo, its region counts under every setting."""
    metrics: dict[str, dict[str, SegMetrics]] = {
        name: defaultdict(lambda: SegMetrics(2, ignore_index=IGNORE)) for name, _ in SETTINGS
    }
    photos = []
    for index in range(len(dataset)):
        image, label = dataset.raw(index)
        source = source_name(dataset.samples[index].source.images)
        raw = predictor.infer(image)
        truth = np.where(label == IGNORE, 0, label)
        photo = {"source": source, "name": dataset.samples[index].image.name,
                 "label_regions": person_components(truth), "regions": {}, "person_iou": {},
                 "index": index}
        valid = label != IGNORE
        for name, region_filter in SETTINGS:
            prediction = cleaned_label(raw, region_filter)
            metrics[name][source].update(prediction[None], label[None])
            metrics[name]["all"].update(prediction[None], label[None])
            photo["regions"][name] = person_components(prediction)
            person, wanted = (prediction == PERSON) & valid, (label == PERSON) & valid
            union = max(int((person | wanted).sum()), 1)
            photo["person_iou"][name] = float((person & wanted).sum() / union)
        photos.append(photo)
    table: dict[str, dict[str, Any]] = {}
    for name, _ in SETTINGS:
        table[name] = {}
        for source, source_metrics in sorted(metrics[name].items()):
            scores = source_metrics.compute()
            chosen = [p for p in photos if source in ("all", p["source"])]
            table[name][source] = {
                "photos": len(chosen),
                "miou": scores["miou"],
                "person_iou": scores["class_iou"][PERSON],
                "regions": float(np.mean([p["regions"][name] for p in chosen])),
                "label_regions": float(np.mean([p["label_regions"] for p in chosen])),
            }
    return table, photos


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """One row per setting and source: mIoU, person IoU, regions per photo, ratio to labels."""
    text = ("| setting | source | photos | mIoU | person IoU | regions / photo (pred) "
            "| (label) | pred / label |\n|---|---|---|---|---|---|---|---|\n")
    for name, sources in table.items():
        for source, row in sources.items():
            ratio = row["regions"] / row["label_regions"]
            text += (f"| {name} | {source} | {row['photos']} | {row['miou']:.4f} "
                     f"| {row['person_iou']:.4f} | {row['regions']:.2f} "
                     f"| {row['label_regions']:.2f} | {ratio:.2f} |\n")
    return text


def plot(table: dict[str, dict[str, Any]], path: Path) -> None:
    """Regions per photo relative to the labels, and the mIoU change in points against no
    cleaning, for every setting and source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    sources = [s for s in next(iter(table.values())) if s != "all"] + ["all"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(sources)
    for offset, source in enumerate(sources):
        positions = np.arange(len(names)) + (offset - (len(sources) - 1) / 2) * width
        ratio = [table[n][source]["regions"] / table[n][source]["label_regions"] for n in names]
        axes[0].bar(positions, ratio, width, label=source)
        baseline = table[names[0]][source]["miou"]
        change = [100 * (table[n][source]["miou"] - baseline) for n in names]
        axes[1].bar(positions, change, width, label=source)
    axes[0].axhline(1.15, color="black", linestyle="--", linewidth=1, label="goal 1.15")
    axes[0].set_title("person regions per photo / label's", fontsize=10)
    axes[1].set_title(f"mIoU change vs {names[0]} (points)", fontsize=10)
    axes[1].axhline(0, color="black", linewidth=1)
    for axis in axes:
        axis.set_xticks(np.arange(len(names)))
        axis.set_xticklabels([n.replace("min_region_frac ", "frac ") for n in names],
                             fontsize=8, rotation=20)
        axis.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    save_figure(figure, path, "mask cleaning on the held-out photos, packaged model")


def plot_examples(dataset: Any, predictor: Any, photos: list[dict], path: Path,
                  fraction: float, rows: int = 4) -> list[str]:
    """Label | no cleaning | cleaning at `fraction`: masks of the photos that lose most regions
    and of those that lose most person IoU (both directions, not a showcase)."""
    default = RegionFilter(fraction)
    name = f"min_region_frac {fraction:g}"
    removed = [p["regions"]["min_region_frac 0"] - p["regions"][name] for p in photos]
    lost = [p["person_iou"]["min_region_frac 0"] - p["person_iou"][name] for p in photos]
    chosen = [photos[i] for i in np.argsort(removed, kind="stable")[::-1][: rows // 2]]
    chosen += [photos[i] for i in np.argsort(lost, kind="stable")[::-1][: rows - rows // 2]]
    lines = []
    for photo in chosen:
        image, label = dataset.raw(photo["index"])
        raw = predictor.infer(image)
        tiles = [mask_tile(label, (0, 200, 0)),
                 mask_tile(raw.label(), (230, 120, 0)),
                 mask_tile(cleaned_label(raw, default), (0, 110, 230))]
        lines.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], 1))
    width = max(line.shape[1] for line in lines)
    write_small_png(path, np.concatenate(
        [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines]))
    return [f"{p['name']} ({p['source']}): label {p['label_regions']}, without "
            f"{p['regions']['min_region_frac 0']}, with {p['regions'][name]} regions; person IoU "
            f"{p['person_iou']['min_region_frac 0']:.3f} -> {p['person_iou'][name]:.3f}"
            for p in chosen]


def main() -> None:
    """Measure every setting, write the tables and the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="model config (default: the packaged model's)")
    parser.add_argument("--model_path", help="model.pt (default: the packaged model)")
    parser.add_argument("--val_config", default=VAL_CONFIG,
                        help="config whose val_dataset holds the held-out photos")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="PNG folder")
    parser.add_argument("--save_dir", type=Path, default=Path("output/portrait"),
                        help="where clean_masks.json and clean_masks.md go")
    parser.add_argument("--example_frac", type=float, default=0.02,
                        help="the min_region_frac the example figure shows (0.02: the default "
                        "cleaning until 2026-12-02)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config_path, model_path = resolve_paths(args.config, args.model_path)
    predictor = build_predictor(config_path, model_path, region_filter=RegionFilter(0.0))
    dataset = build_dataset(load_config(args.val_config)["val_dataset"])
    table, photos = measure(dataset, predictor)
    examples = plot_examples(dataset, predictor, photos, args.out / "clean_masks_examples.png",
                             args.example_frac)
    plot(table, args.out / "clean_masks.png")
    text = markdown(table)
    text += f"\nExamples (label | without | with min_region_frac {args.example_frac:g}):\n\n"
    text += "".join(f"- {line}\n" for line in examples)
    args.save_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.save_dir / "clean_masks.json") as tmp:
        tmp.write_text(json.dumps({"table": table, "photos": photos}, indent=1) + "\n")
    with atomic_path(args.save_dir / "clean_masks.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
