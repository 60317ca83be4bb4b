"""The seed's three commands, verbatim but for paths, run as subprocesses in a scratch folder.

The scratch folder holds the seed layout: `dataset/COCO_person` (list files `train2017.txt`,
`val2017.txt`), `data/human_image.jpg`, and `configs/pp_humanseg/<the SCL config>.yml`, which
inherits the repository's config unchanged except for 2 iterations of batch 2 (CPU time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG_NAME = "fcn_hrnetw18_coco_person_192x192_scl"
CONFIG = f"configs/pp_humanseg/{CONFIG_NAME}.yml"
SAVE_DIR = f"saved_model/{CONFIG_NAME}"


def seed_layout(workdir: Path, make_blob_dataset, blob_sample) -> None:
    """Write the dataset, the sample photo and the shortened config under `workdir`."""
    root = make_blob_dataset(workdir / "dataset" / "COCO_person", train=4, val=2, size=96)
    (root / "train.txt").rename(root / "train2017.txt")
    (root / "val.txt").rename(root / "val2017.txt")
    image, _ = blob_sample(np.random.default_rng(5), 150, 100)
    (workdir / "data").mkdir()
    cv2.imwrite(str(workdir / "data" / "human_image.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    config = workdir / CONFIG
    config.parent.mkdir(parents=True)
    config.write_text(f"_base_: {REPO / CONFIG}\niters: 2\nbatch_size: 2\n")


def run(workdir: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python <repo>/SCRIPT ARGS` in `workdir` with one torch thread."""
    script, *options = argv
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *options], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


def test_seed_train_val_predict_commands(tmp_path: Path, make_blob_dataset, blob_sample) -> None:
    seed_layout(tmp_path, make_blob_dataset, blob_sample)
    train = run(tmp_path, "train.py", "--config", CONFIG, "--save_dir", SAVE_DIR,
                "--do_eval", "--use_vdl")
    assert train.returncode == 0, train.stderr[-3000:]
    assert "mIoU" in train.stdout + train.stderr
    best_model = f"{SAVE_DIR}/best_model/model.pt"
    assert (tmp_path / best_model).is_file() and (tmp_path / SAVE_DIR / "iter_2").is_dir()
    assert any((tmp_path / SAVE_DIR / "tensorboard").iterdir())

    val = run(tmp_path, "val.py", "--config", CONFIG, "--model_path", best_model)
    assert val.returncode == 0, val.stderr[-3000:]
    assert "mIoU" in val.stdout and "Connectivity" in val.stdout
    metrics = json.loads((tmp_path / SAVE_DIR / "best_model" / "val_metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["images"] == 2

    predict = run(tmp_path, "predict.py", "--config", CONFIG, "--model_path", best_model,
                  "--image_path", "data/human_image.jpg", "--save_dir", "./output/result")
    assert predict.returncode == 0, predict.stderr[-3000:]
    result = tmp_path / "output" / "result"
    for output in ("label/human_image.png", "pseudo_color_prediction/human_image.png",
                   "added_prediction/human_image.jpg", "cutout/human_image.png"):
        assert (result / output).is_file(), output
    label = cv2.imread(str(result / "label" / "human_image.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (150, 100)
