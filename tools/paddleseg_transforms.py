"""PaddleSeg's own transforms on given arrays, run inside `.venv-paddle` (paddleseg 2.8.0).

IN.npz holds `image` (RGB uint8 HxWx3) and `label` (uint8 HxW), or `image_0..` / `label_0..` for
several samples; PIPELINES.json is a JSON list of PaddleSeg transform lists
(`[{type: Name, **params}, ...]`).

`apply IN.npz PIPELINES.json OUT.npz`: for pipeline i, OUT gets `image_i` (CHW float32,
PaddleSeg's output) and `label_i`; tests/test_transforms.py compares them with humanseg's.

`bench IN.npz PIPELINES.json SEED`: prints the median wall and CPU seconds per sample of pipeline 0
over the samples as JSON (PaddleSeg's Compose from a float32 image, as its Dataset feeds it, on
one thread), for benchmarks/bench_transforms.py.
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
warnings.filterwarnings("ignore")
from paddleseg.cvlibs import manager  # noqa: E402
from paddleseg.transforms import Compose  # noqa: E402
from timing import median_times  # noqa: E402


def build(specs: list[dict]) -> Compose:
    """PaddleSeg's Compose for a transforms list (images given as RGB already)."""
    ops = [manager.TRANSFORMS[spec["type"]](**{k: v for k, v in spec.items() if k != "type"})
           for spec in specs]
    return Compose(ops, to_rgb=False)


def run_pipeline(compose: Compose, image: np.ndarray, label: np.ndarray) -> dict:
    """One call as PaddleSeg's Dataset makes it in training."""
    data = {"img": image.astype("float32"), "label": label.copy(), "gt_fields": ["label"]}
    return compose(data)


def samples(arrays: np.lib.npyio.NpzFile) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (image, label) pairs of an input file."""
    if "image" in arrays:
        return [(arrays["image"], arrays["label"])]
    count = sum(1 for key in arrays if key.startswith("image_"))
    return [(arrays[f"image_{i}"], arrays[f"label_{i}"]) for i in range(count)]


def main(mode: str, in_path: str, pipelines_path: str, extra: str) -> None:
    """Apply every pipeline and save the outputs, or time pipeline 0."""
    arrays = np.load(in_path)
    pipelines = json.loads(Path(pipelines_path).read_text(encoding="utf-8"))
    pairs = samples(arrays)
    if mode == "apply":
        outputs = {}
        for index, specs in enumerate(pipelines):
            data = run_pipeline(build(specs), *pairs[0])
            outputs[f"image_{index}"] = np.asarray(data["img"], dtype=np.float32)
            outputs[f"label_{index}"] = np.asarray(data["label"])
        np.savez(extra, **outputs)
        return
    cv2.setNumThreads(1)
    random.seed(int(extra))
    np.random.seed(int(extra))
    compose = build(pipelines[0])

    def one_pass() -> None:
        for image, label in pairs:
            run_pipeline(compose, image, label)

    times = median_times(one_pass, repeats=5)
    print(json.dumps({key: value / len(pairs) for key, value in times.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
