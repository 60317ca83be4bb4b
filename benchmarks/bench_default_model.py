"""Portrait models side by side on the held-out photos of every source, in one run.

    .venv/bin/python benchmarks/bench_default_model.py \
        --candidate default=src/humanseg/weights/default.yml:src/humanseg/weights/default.pt \
        --candidate official=configs/pp_humanseg/pp_humanseg_lite_portrait_398x224.yml:OFFICIAL.pt \
        [--mediapipe_python .venv-mediapipe/bin/python] [--json out.json]

Each candidate (NAME=CONFIG:MODEL.pt for the model's raw masks, or NAME=CONFIG:MODEL.pt:CLEAN to
clean them as `humanseg predict` does, CLEAN being F for `--min_region_frac F` alone or
`frac=F,area=A,peak=P,edges=E` for `--min_region_frac F --min_region_area A --confident_peak P`
and, with E = 1, the guided-filter edges (`humanseg.ops.edges`), keys left out off; `default`
for predict's defaults, edges included) is exported to
ONNX here and run through onnxruntime by `humanseg predict`'s own predictor (the config's val
transforms, padding cropped off, the probabilities mapped back to the photo, the label PNG's
mask), so the figures are what a user gets. MediaPipe's selfie
segmenter (general and landscape) runs in its own environment on the same photos.

Photos: the fixed validation split (`humanseg.data.split`) of ../shared/data's portraits, ccp and
eg1800 and of the COCO person images (`humanseg prepare-coco` output in dataset/COCO_person).
Per source: mIoU and person IoU (binary masks at 0.5, at the photo's resolution), connectivity
(1 - SC loss of the hard prediction), and person regions per photo (8-connected components),
all of them and those covering at least 0.1% of the photo, in the prediction and in the label:
EG1800's binary labels cut hair into many specks (its README), so its raw label count is
inflated and the 0.1% column is the one to compare.
Forgetting (`--reference NAME`): the person IoU of each candidate's masks against the reference
candidate's (e.g. the released weights), per source: how far a fine-tuned model has moved from the
model it started from, on the same held-out photos and on a low-light version of each (darkened
with gamma 2.2 to a third of its brightness, plus sensor noise), a kind of photo no source holds.
Latency: per frame at each model's input size, batch 1, onnxruntime with 1 and 2 threads in
alternating rounds; MediaPipe's `process()` at its own input size on its one thread, timed in the
same run just after. The machine and its load are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_deploy import REPO, run_mediapipe, time_rounds

from humanseg.data.inference import config_input_size
from humanseg.data.split import is_validation
from humanseg.deploy.api import build_predictor
from humanseg.deploy.export import export_onnx
from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.engine.runtime import load_inference_model
from humanseg.io import read_image, read_mask
from humanseg.metrics import SegMetrics
from humanseg.ops import (
    DEFAULT_CONFIDENT_PEAK,
    DEFAULT_MIN_REGION_AREA,
    DEFAULT_MIN_REGION_FRAC,
    RegionFilter,
    label_components,
)
from humanseg.ops.edges import EdgeRefiner

DATA = REPO.parent / "shared" / "data"
COCO = REPO / "dataset" / "COCO_person"
# source -> [(images folder, masks folder)]
SOURCES: dict[str, list[tuple[Path, Path]]] = {
    "portraits": [(DATA / "portraits" / "images", DATA / "portraits" / "masks")],
    "ccp": [(DATA / "ccp" / "images", DATA / "ccp" / "masks")],
    "eg1800": [(DATA / "eg1800" / "images", DATA / "eg1800" / "masks")],
    "coco_person": [(COCO / "images" / split, COCO / "annotations" / split)
                    for split in ("train2017", "val2017")],
}
MIN_REGION_SHARE = 0.001
PERSON = 1
REPEATS = 200


def validation_photos(source: str, held_out: bool = True) -> list[tuple[Path, Path]]:
    """(image, label) paths of one source's held-out photos (or, with `held_out` False, of its
    training photos), sorted by stem."""
    pairs = []
    for images, masks in SOURCES[source]:
        for image in sorted(images.glob("*.jpg")):
            if is_validation(image.stem) == held_out:
                pairs.append((image, masks / f"{image.stem}.png"))
    return pairs


def cleaning_options(spec: str) -> dict[str, float]:
    """`humanseg predict`'s cleaning options from a candidate's CLEAN field (module docstring):
    '' raw, 'default' predict's defaults, 'F' or 'frac=F,area=A,peak=P,edges=E'."""
    if spec == "default":
        return {"min_region_frac": DEFAULT_MIN_REGION_FRAC, "min_region_area":
                DEFAULT_MIN_REGION_AREA, "confident_peak": DEFAULT_CONFIDENT_PEAK, "edges": 1.0}
    options = {"min_region_frac": 0.0, "min_region_area": 0.0, "confident_peak": 1.0,
               "edges": 0.0}
    names = {"frac": "min_region_frac", "area": "min_region_area", "peak": "confident_peak",
             "edges": "edges"}
    for item in filter(None, spec.split(",")):
        key, equals, value = item.rpartition("=")
        if equals and key not in names:
            sys.exit(f"cleaning {spec!r}: unknown key {key!r} (known: {', '.join(names)})")
        options[names[key] if equals else "min_region_frac"] = float(value)
    return options


def region_counts(mask: np.ndarray) -> tuple[int, int]:
    """(all 8-connected person regions, those covering >= MIN_REGION_SHARE of the photo)."""
    labels = label_components((mask == PERSON)[None].astype(np.uint8))
    areas = [int(area) for area, klass in zip(labels.area, labels.klass, strict=True)
             if int(klass) == PERSON]
    return len(areas), sum(area >= MIN_REGION_SHARE * mask.size for area in areas)


def score(masks: dict[str, np.ndarray], pairs: list[tuple[Path, Path]]) -> dict[str, float]:
    """mIoU, person IoU, connectivity and region counts of binary masks (keyed by stem)."""
    metrics = SegMetrics(num_classes=2)
    counts = defaultdict(list)
    for _, label_path in pairs:
        label, predicted = read_mask(label_path), masks[label_path.stem]
        metrics.update(predicted[None], label[None])
        for name, mask in (("pred", predicted), ("label", label)):
            every, large = region_counts(mask)
            counts[f"{name}_regions"].append(every)
            counts[f"{name}_regions_0.1%"].append(large)
    result = metrics.compute()
    summary = {"miou": float(result["miou"]), "person_iou": float(result["class_iou"][PERSON]),
               "connectivity": float(result["connectivity"])}
    summary.update({name: float(np.mean(values)) for name, values in counts.items()})
    return summary


def low_light(image: np.ndarray, stem: str) -> np.ndarray:
    """A dim, noisy version of a photo (gamma 2.2, a third of the brightness, noise sigma 3),
    with noise seeded by the stem so every candidate sees the same pixels."""
    rng = np.random.default_rng(int.from_bytes(stem.encode()[-8:], "little"))
    dark = 255.0 * (image / 255.0) ** 2.2 / 3.0 + rng.normal(0.0, 3.0, image.shape)
    return np.clip(np.round(dark), 0, 255).astype(np.uint8)


def agreement(masks: dict[str, np.ndarray], reference: dict[str, np.ndarray],
              pairs: list[tuple[Path, Path]]) -> float:
    """Person IoU of `masks` against `reference`, pooled over the photos of `pairs`."""
    intersection = union = 0
    for _, label_path in pairs:
        ours, theirs = masks[label_path.stem] == PERSON, reference[label_path.stem] == PERSON
        intersection += int((ours & theirs).sum())
        union += int((ours | theirs).sum())
    return intersection / union if union else 1.0


def candidate_masks(
    config: str, model_path: str, photos: list[Path], work: Path, name: str,
    cleaning: dict[str, float],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], OnnxRuntimeForward, tuple[int, int]]:
    """Person masks (stem -> 0/1) of one candidate through onnxruntime on the photos and on
    their low-light versions, its 1-thread session and input size."""
    import torch

    cfg, model = load_inference_model(config, model_path, torch.device("cpu"))
    input_size = config_input_size(cfg)
    if input_size is None:
        sys.exit(f"{config}: no Resize target_size to export at")
    onnx_path = work / f"{name}.onnx"
    export_onnx(model, onnx_path, input_size)
    regions = {key: value for key, value in cleaning.items() if key != "edges"}
    predictor = build_predictor(config, onnx_path, backend="onnxruntime",
                                region_filter=RegionFilter(**regions),
                                edges=EdgeRefiner(min_region_frac=regions["min_region_frac"])
                                if cleaning.get("edges") else None)

    def mask(image: np.ndarray) -> np.ndarray:
        return (predictor.infer(image).label() == PERSON).astype(np.uint8)  # predict's label

    masks, dim_masks = {}, {}
    for path in photos:
        image = read_image(path)
        masks[path.stem] = mask(image)
        dim_masks[path.stem] = mask(low_light(image, path.stem))
    return masks, dim_masks, OnnxRuntimeForward(onnx_path, num_threads=1), input_size


def main() -> None:
    """Score every candidate and MediaPipe; print one JSON report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", required=True,
                        help="NAME=CONFIG:MODEL.pt (repeatable)")
    parser.add_argument("--mediapipe_python", default=str(REPO / ".venv-mediapipe/bin/python"))
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per backend")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--reference", help="candidate NAME to measure agreement against")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA}: the real data is needed")
    names = [spec.partition("=")[0] for spec in args.candidate]
    if args.reference and args.reference not in names:
        sys.exit(f"--reference {args.reference}: not among the candidates {names}")
    pairs = {source: validation_photos(source) for source in SOURCES}
    photos = [image for source in SOURCES for image, _ in pairs[source]]
    report: dict = {"photos": {source: len(found) for source, found in pairs.items()},
                    "scores": {}, "latency_ms_median_wall_cpu": {}}
    runners = {}
    found_masks: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in args.candidate:
            name, _, paths = spec.partition("=")
            config, model_path, *cleaning = paths.split(":")
            masks, dim_masks, single, (height, width) = candidate_masks(
                config, model_path, photos, work, name, cleaning_options(":".join(cleaning)))
            found_masks[name] = (masks, dim_masks)
            report["scores"][name] = {s: score(masks, pairs[s]) for s in SOURCES}
            frame = np.random.default_rng(0).standard_normal((1, 3, height, width),
                                                             dtype=np.float32)
            double = OnnxRuntimeForward(single.model_path, num_threads=2)
            runners[f"{name} {width}x{height} 1 thread"] = (lambda f=single, x=frame: f(x))
            runners[f"{name} {width}x{height} 2 threads"] = (lambda f=double, x=frame: f(x))
        if args.reference:
            reference, dim_reference = found_masks[args.reference]
            report["agreement_with_" + args.reference] = {
                name: {s: {"photos": agreement(masks, reference, pairs[s]),
                           "low_light": agreement(dim_masks, dim_reference, pairs[s])}
                       for s in SOURCES}
                for name, (masks, dim_masks) in found_masks.items()}
        report["latency_ms_median_wall_cpu"] = time_rounds(runners, args.repeats)
        every_pair = [pair for source in SOURCES for pair in pairs[source]]
        for model in ("general", "landscape"):
            found = run_mediapipe(Path(args.mediapipe_python), every_pair, work, model)
            if found is None:
                continue
            masks = found.pop("masks")
            report["scores"][f"mediapipe_{model}"] = {s: score(masks, pairs[s]) for s in SOURCES}
            report["latency_ms_median_wall_cpu"][found["backend"]] = (
                found["latency_ms_median"], found["cpu_ms_median"])
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
