"""Score the portrait runs on the held-out photos and draw the SCL ablation's table and plots.

For the default model (a model file, or a run folder's final iteration) and every ablation run
(`ARM_seedN` folders, ARM = `ce`, `scl` or `scl_soft`; their final iterations), the model is
scored in fp32 on the config's val_dataset at the photos' full resolution: mIoU, person IoU,
connectivity, and the mean number of 8-connected person components per image in the prediction
against the label's, overall and per source.
Training curves come from each ablation run's TensorBoard scalars.
Writes `report.json` and `report.md` (the tables) to `--save_dir` and three PNGs to `--out`
(names start with `--prefix`).

    .venv/bin/python tools/ablation_report.py --default output/portrait/default \
        --ablation output/portrait/ablation --config CONFIG.yml --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from humanseg.builder import load_config
from humanseg.data import build_dataset
from humanseg.data.inference import photo_label
from humanseg.engine.evaluate import infer_scores, photo_sample
from humanseg.errors import HumanSegError
from humanseg.io import atomic_path
from humanseg.metrics import SegMetrics
from humanseg.models import build_model, load_model_file
from humanseg.ops import label_components

PERSON = 1
IGNORE = 255
RUN_NAME = re.compile(r"^(?P<arm>ce|scl|scl_soft)_seed(?P<seed>\d+)$")
ARM_TITLES = {"ce": "CE only", "scl": "CE + SC loss", "scl_soft": "CE + SC (unmatched soft)"}
ARM_COLOURS = {"ce": "tab:orange", "scl": "tab:blue", "scl_soft": "tab:green"}
TILE_HEIGHT = 120


def final_model(run_dir: Path) -> Path:
    """`iter_N/model.pt` with the largest N in a training run's folder."""
    iterations = [
        (int(p.name.removeprefix("iter_")), p)
        for p in run_dir.glob("iter_*")
        if p.name.removeprefix("iter_").isdigit()
    ]
    if not iterations:
        raise HumanSegError(f"{run_dir}: no iter_N checkpoint folder")
    return max(iterations)[1] / "model.pt"


def person_components(class_map: np.ndarray) -> int:
    """Number of 8-connected person components in one [H, W] class map."""
    return int(label_components((class_map == PERSON)[None].astype(np.uint8)).counts(2)[0, 1])


def source_name(images: Path) -> str:
    """`portraits` for .../portraits/images, `COCO_person` for .../COCO_person/images/val2017."""
    return images.parent.name if images.name == "images" else images.parent.parent.name


@torch.no_grad()
def score_run(model_path: Path, cfg: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """Metrics of one model on every validation photo, plus its per-image predictions."""
    model = build_model(cfg["model"])
    load_model_file(model, model_path)
    model.eval()
    overall = SegMetrics(2, ignore_index=IGNORE)
    per_source: dict[str, SegMetrics] = defaultdict(lambda: SegMetrics(2, ignore_index=IGNORE))
    predictions, pred_counts, label_counts, sources = [], [], [], []
    for index in range(len(dataset)):
        inputs, label, placement = photo_sample(dataset, index)  # as `humanseg val` scores
        scores = infer_scores(model, torch.from_numpy(inputs)[None], tuple(inputs.shape[-2:]),
                              probabilities=True)
        prediction = photo_label(scores[0].numpy(), placement, label.shape)
        truth = label.astype(np.uint8)
        overall.update(prediction[None], truth[None])
        sources.append(source_name(dataset.samples[index].source.images))
        per_source[sources[-1]].update(prediction[None], truth[None])
        predictions.append(prediction)
        pred_counts.append(person_components(prediction))
        label_counts.append(person_components(np.where(truth == IGNORE, 0, truth)))
    metrics = overall.compute()
    by_source = {}
    for name, source_metrics in sorted(per_source.items()):
        scores = source_metrics.compute()
        mine = [i for i, source in enumerate(sources) if source == name]
        by_source[name] = {
            "miou": scores["miou"], "person_iou": scores["class_iou"][PERSON],
            "connectivity": scores["connectivity"],
            "pred_components": float(np.mean([pred_counts[i] for i in mine])),
            "label_components": float(np.mean([label_counts[i] for i in mine])),
        }
    return {
        "model": str(model_path),
        "miou": metrics["miou"],
        "person_iou": metrics["class_iou"][PERSON],
        "connectivity": metrics["connectivity"],
        "pred_components": float(np.mean(pred_counts)),
        "label_components": float(np.mean(label_counts)),
        "per_source_miou": {name: scores["miou"] for name, scores in by_source.items()},
        "per_source": by_source,
        "pred_counts": pred_counts,
        "label_counts": label_counts,
        "predictions": predictions,
    }


def cached_score(model_path: Path, cfg: dict[str, Any], dataset: Any, cache: Path) -> dict:
    """`score_run`, kept beside the model (`cache`.json + .npz of the predictions) so that a
    report can be redrawn, or runs scored as they finish; redone when the model is newer."""
    table, arrays = cache.with_suffix(".json"), cache.with_suffix(".npz")
    if table.exists() and arrays.exists() and table.stat().st_mtime >= model_path.stat().st_mtime:
        score = json.loads(table.read_text())
        with np.load(arrays) as stored:
            score["predictions"] = [stored[f"p{i}"] for i in range(len(stored.files))]
        return score
    score = score_run(model_path, cfg, dataset)
    with atomic_path(arrays) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, **{f"p{i}": p for i, p in enumerate(score["predictions"])})
    with atomic_path(table) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in score.items() if k != "predictions"}))
    return score


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of a run as {tag: [(step, value), ...]} (last write of each step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run_dir / "tensorboard"
    if not folder.is_dir():
        raise HumanSegError(f"{folder}: no TensorBoard scalars (train with --use_vdl)")
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    curves = {}
    for tag in accumulator.Tags()["scalars"]:
        by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
        curves[tag] = sorted(by_step.items())
    return curves


def smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Moving average (valid part) to make noisy loss logs readable."""
    if values.size < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curves(runs: dict[str, dict[str, Any]], path: Path) -> None:
    """Training CE and SC loss, validation mIoU and connectivity per iteration, every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("Train/CrossEntropyLoss", "training cross-entropy (5-log average)", True),
        ("Train/SemanticConnectivityLoss", "training SC loss (CE + SC runs)", True),
        ("Evaluate/miou", "validation mIoU", False),
        ("Evaluate/connectivity", "validation connectivity", False),
    ]  # runs trained without --do_eval have no validation curves: their panels are left out
    panels = [panel for panel in panels
              if any(run["curves"].get(panel[0]) for run in runs.values())]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (tag, title, smoothed) in zip(axes, panels, strict=True):
        for name, run in runs.items():
            points = run["curves"].get(tag)
            if not points:
                continue
            steps, values = (np.array(column) for column in zip(*points, strict=True))
            if smoothed:
                values = smooth(values)
                steps = steps[len(steps) - len(values) :]
            style = ("-", "--", ":")[(run["seed"] - 1) % 3]
            axis.plot(steps, values, style, color=ARM_COLOURS[run["arm"]], label=name)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(figure, path)


def save_figure(figure: Any, path: Path, title: str | None = None) -> None:
    """Lay out a matplotlib figure, title it with the machine and date, write it as a PNG
    atomically and close it."""
    import matplotlib.pyplot as plt

    if title is not None:
        figure.suptitle(f"{title} (2026-12-01, 2-core CPU shared with other jobs)", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)


def mask_tile(mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Person pixels in `colour` on grey with component borders drawn, scaled to TILE_HEIGHT.
    No photo pixels: the data's licences do not allow republishing the photos."""
    scale = TILE_HEIGHT / mask.shape[0]
    size = (round(mask.shape[1] * scale), TILE_HEIGHT)
    mask = cv2.resize((mask == PERSON).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    tinted = np.full((TILE_HEIGHT, size[0], 3), 96, np.uint8)
    tinted[mask > 0] = colour
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tinted, contours, -1, (255, 255, 0), 1)
    return tinted


def plot_fragments(
    dataset: Any, first: dict[str, Any], second: dict[str, Any], path: Path,
    names: tuple[str, str] = ("CE-only", "CE+SC"), rows_each: int = 2,
) -> list[str]:
    """Label | first arm | second arm masks: the photos where the first has the most components
    more than the second, then the reverse (both directions, not a showcase)."""
    excess = np.array(first["pred_counts"]) - np.array(second["pred_counts"])
    order = np.argsort(-excess, kind="stable")
    chosen = [int(i) for i in order[:rows_each]] + [int(i) for i in order[::-1][:rows_each]]
    lines = []
    for index in chosen:
        _, label = dataset.raw(index)
        tiles = [
            mask_tile(label, (0, 200, 0)),
            mask_tile(first["predictions"][index], (230, 120, 0)),
            mask_tile(second["predictions"][index], (0, 110, 230)),
        ]
        lines.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1))
    width = max(line.shape[1] for line in lines)
    grid = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)))
                           for line in lines], axis=0)
    write_small_png(path, grid)
    return [
        f"{dataset.samples[i].image.name}: label {first['label_counts'][i]}, "
        f"{names[0]} {first['pred_counts'][i]}, {names[1]} {second['pred_counts'][i]} components"
        for i in chosen
    ]


def write_small_png(path: Path, image: np.ndarray, colours: int = 96) -> None:
    """An RGB figure as a palette PNG (a few hundred KB less than true colour), atomically."""
    from PIL import Image

    palette = Image.fromarray(image).quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        palette.save(tmp, format="PNG", optimize=True)


def mean_std(values: list[float]) -> str:
    """`mean ± std` over seeds (population std, as there are only a few)."""
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def markdown(default: dict[str, Any] | None, runs: dict[str, dict[str, Any]]) -> str:
    """The default model's line, the per-run ablation table and the per-arm means."""
    head = ("| run | mIoU | person IoU | connectivity | components / image (pred) "
            "| components / image (label) |\n|---|---|---|---|---|---|\n")

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"| {name} | {r['miou']:.4f} | {r['person_iou']:.4f} | {r['connectivity']:.4f} "
                f"| {r['pred_components']:.2f} | {r['label_components']:.2f} |\n")

    text = ""
    if default is not None:
        text += "### Default model\n\n" + head + row("default (CE + SC)", default["score"])
        sources = ", ".join(f"{k} {v:.4f}" for k, v in default["score"]["per_source_miou"].items())
        text += f"\nmIoU per source: {sources}\n\n"
    text += "### Ablation runs\n\n" + head
    for name, run in sorted(runs.items()):
        text += row(name, run["score"])
    text += ("\n| arm | seeds | mIoU | connectivity | components / image (pred) |\n"
             "|---|---|---|---|---|\n")
    for arm in ARM_TITLES:
        scores = [r["score"] for r in runs.values() if r["arm"] == arm]
        if scores:
            text += (f"| {ARM_TITLES[arm]} | {len(scores)} "
                     f"| {mean_std([s['miou'] for s in scores])} "
                     f"| {mean_std([s['connectivity'] for s in scores])} "
                     f"| {mean_std([s['pred_components'] for s in scores])} |\n")
    text += ("\nPer source, mean over seeds:\n\n| arm | source | mIoU | person IoU | connectivity "
             "| components / image (pred) | (label) |\n|---|---|---|---|---|---|---|\n")
    for arm in ARM_TITLES:
        scores = [r["score"]["per_source"] for r in runs.values() if r["arm"] == arm]
        for source in sorted(scores[0]) if scores else []:
            mean = {key: np.mean([s[source][key] for s in scores]) for key in scores[0][source]}
            text += (f"| {ARM_TITLES[arm]} | {source} | {mean['miou']:.4f} "
                     f"| {mean['person_iou']:.4f} | {mean['connectivity']:.4f} "
                     f"| {mean['pred_components']:.2f} | {mean['label_components']:.2f} |\n")
    return text


def plot_arms(runs: dict[str, dict[str, Any]], path: Path) -> None:
    """Per source: mIoU (in points against the first arm's mean), connectivity and predicted /
    label person components; one bar per arm (mean over seeds), each seed a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [arm for arm in ARM_TITLES if any(r["arm"] == arm for r in runs.values())]
    sources = sorted(next(iter(runs.values()))["score"]["per_source"])
    baseline = {source: np.mean([r["score"]["per_source"][source]["miou"] for r in runs.values()
                                 if r["arm"] == arms[0]]) for source in sources}
    panels = [("miou", f"mIoU change vs {ARM_TITLES[arms[0]]} (points)"),
              ("connectivity", "connectivity"),
              ("ratio", "person components / image, prediction / label")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    width = 0.8 / len(arms)
    for axis, (key, title) in zip(axes, panels, strict=True):
        for offset, arm in enumerate(arms):
            positions = np.arange(len(sources)) + (offset - (len(arms) - 1) / 2) * width
            per_seed = []
            for run in (r for r in runs.values() if r["arm"] == arm):
                by_source = run["score"]["per_source"]
                per_seed.append([
                    by_source[s]["pred_components"] / by_source[s]["label_components"]
                    if key == "ratio" else 100 * (by_source[s]["miou"] - baseline[s])
                    if key == "miou" else by_source[s][key] for s in sources])
            values = np.array(per_seed)
            axis.bar(positions, values.mean(0), width, color=ARM_COLOURS[arm],
                     label=ARM_TITLES[arm], alpha=0.8)
            for seed_values in values:
                axis.plot(positions, seed_values, "k.", markersize=4)
        axis.set_xticks(np.arange(len(sources)))
        axis.set_xticklabels(sources, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3, axis="y")
    axes[0].axhline(0, color="black", linewidth=1)
    axes[0].legend(fontsize=7)
    save_figure(figure, path, "held-out photos, bars: mean over seeds, dots: seeds")


def main() -> None:
    """Score every run, write the tables and the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config whose val_dataset is scored")
    parser.add_argument("--default", type=Path,
                        help="the default model: its training folder or its model file")
    parser.add_argument("--ablation", type=Path, required=True, help="folder of ARM_seedN runs")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="PNG folder")
    parser.add_argument("--save_dir", type=Path, default=Path("output/portrait"),
                        help="where report.json and report.md go")
    parser.add_argument("--prefix", default="scl_", help="start of the PNG file names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    dataset = build_dataset(cfg["val_dataset"])
    runs: dict[str, dict[str, Any]] = {}
    for run_dir in sorted(args.ablation.iterdir()):
        match = RUN_NAME.match(run_dir.name)
        if match and run_dir.is_dir():
            if not any(run_dir.glob("iter_*/model.pt")):
                print(f"{run_dir.name}: no checkpoint yet, left out", flush=True)
                continue
            model_path = final_model(run_dir)
            runs[run_dir.name] = {
                "arm": match["arm"], "seed": int(match["seed"]),
                "score": cached_score(model_path, cfg, dataset, model_path.parent / "score"),
                "curves": scalars(run_dir),
            }
            print(f"{run_dir.name}: mIoU {runs[run_dir.name]['score']['miou']:.4f}", flush=True)
    if not runs:
        raise HumanSegError(f"{args.ablation}: no ARM_seedN run folders (ARM: ce, scl, scl_soft)")
    default = None
    if args.default is not None:
        default_model = args.default if args.default.is_file() else final_model(args.default)
        default = {"score": cached_score(default_model, cfg, dataset,
                                         args.save_dir / "default_score")}
    plot_curves(runs, args.out / f"{args.prefix}training_curves.png")
    plot_arms(runs, args.out / f"{args.prefix}arms_per_source.png")
    examples = []
    first_seed = min(run["seed"] for run in runs.values())
    pair = ("scl", "scl_soft") if any(r["arm"] == "scl_soft" for r in runs.values()) else (
        "ce", "scl")
    first, second = (runs.get(f"{arm}_seed{first_seed}") for arm in pair)
    if first and second:
        examples = plot_fragments(dataset, first["score"], second["score"],
                                  args.out / f"{args.prefix}fragmented_vs_clean.png",
                                  (ARM_TITLES[pair[0]], ARM_TITLES[pair[1]]))
    table = markdown(default, runs)
    table += f"\nFragmented-vs-clean examples (seed {first_seed}):\n\n"
    table += "".join(f"- {line}\n" for line in examples)
    args.save_dir.mkdir(parents=True, exist_ok=True)

    def strip(run: dict[str, Any]) -> dict[str, Any]:
        score = {k: v for k, v in run["score"].items() if k != "predictions"}
        return {**{k: v for k, v in run.items() if k != "score"}, "score": score}

    report = {"default": strip(default) if default else None,
              "runs": {name: strip(run) for name, run in runs.items()}}
    with atomic_path(args.save_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    with atomic_path(args.save_dir / "report.md") as tmp:
        tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
