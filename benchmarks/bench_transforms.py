"""Training-time data transforms: humanseg (uint8, albumentations) vs PaddleSeg 2.8 (float32).

Both run the same PaddleSeg transforms list, the training transforms of
configs/pp_humanseg/pp_humanseg_lite_portrait_398x224.yml (pad to 16:9, resize, random scale,
rotation, crop, flip, colour distortion, blur, normalise), on the same decoded photos, on one
thread (as in one DataLoader worker); decoding is left out of both. PaddleSeg's side runs in
`.venv-paddle` through tools/paddleseg_transforms.py. Prints seconds per sample and the ratio.
Run: `.venv/bin/python benchmarks/bench_transforms.py` (needs `make paddle-venv` for the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
from timing import median_times

from humanseg.builder import load_config
from humanseg.data.transforms import build_transforms
from humanseg.io import read_image, read_mask

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pp_humanseg" / "pp_humanseg_lite_portrait_398x224.yml"
CCP = ROOT.parent / "shared" / "data" / "ccp"
PADDLE_PYTHON = ROOT / ".venv-paddle" / "bin" / "python"


def photos(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real full-body photos with their masks (423x640), or noise images when the data is absent."""
    if CCP.is_dir():
        images = sorted((CCP / "images").glob("*.jpg"))[:count]
        return [(read_image(p), read_mask(CCP / "masks" / f"{p.stem}.png")) for p in images]
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (640, 423, 3), dtype=np.uint8),
             rng.integers(0, 2, (640, 423), dtype=np.uint8)) for _ in range(count)]


def paddleseg_times(
    specs: list[dict], pairs: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """PaddleSeg's median wall and CPU seconds per sample, measured in its own environment."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for index, (image, label) in enumerate(pairs):
            arrays[f"image_{index}"], arrays[f"label_{index}"] = image, label
        np.savez(Path(tmp) / "in.npz", **arrays)
        (Path(tmp) / "pipelines.json").write_text(json.dumps([specs]))
        result = subprocess.run(
            [str(PADDLE_PYTHON), str(ROOT / "tools" / "paddleseg_transforms.py"), "bench",
             str(Path(tmp) / "in.npz"), str(Path(tmp) / "pipelines.json"), "0"],
            check=True, capture_output=True, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Time both pipelines on the same photos and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    specs = load_config(CONFIG)["train_dataset"]["transforms"]
    pairs = photos(args.images)
    transforms = build_transforms(specs)
    random.seed(0)

    def one_pass() -> None:
        for image, label in pairs:
            transforms(image, label)

    ours = {k: v / len(pairs) for k, v in median_times(one_pass, repeats=5).items()}
    print(f"{len(pairs)} photos {pairs[0][0].shape[1]}x{pairs[0][0].shape[0]}, "
          f"transforms of {CONFIG.name}, 1 thread; ms per sample (wall, CPU)")
    print(f"humanseg   {ours['wall_s'] * 1000:7.2f} {ours['cpu_s'] * 1000:7.2f}")
    if not PADDLE_PYTHON.exists():
        print("PaddleSeg  skipped (.venv-paddle absent: `make paddle-venv`)")
        return
    theirs = paddleseg_times(specs, pairs)
    print(f"PaddleSeg  {theirs['wall_s'] * 1000:7.2f} {theirs['cpu_s'] * 1000:7.2f}")
    print(f"speed-up   {theirs['wall_s'] / ours['wall_s']:7.2f}x "
          f"{theirs['cpu_s'] / ours['cpu_s']:7.2f}x")


if __name__ == "__main__":
    main()
