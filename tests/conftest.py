"""Shared test fixtures: person-like blob data sets and their configs (engine tests), a randomly
initialised model saved with its config (deployment tests), and one torch thread.

Each helper is handed to tests as a session fixture of the same name (`blob_sample`,
`make_blob_dataset`, `blob_config`, `write_model`), so test modules import nothing from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from humanseg.models import build_model

CE_LOSS = """\
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1]
"""
# CE + SC loss in PaddleSeg's MixedLoss form, as the paper's SCL configs write it.
SCL_LOSS = """\
loss:
  types:
    - type: MixedLoss
      losses:
        - type: CrossEntropyLoss
        - type: SemanticConnectivityLoss
      coef: [1, 0.1]
  coef: [1]
"""
LOSSES = {"ce": CE_LOSS, "scl": SCL_LOSS}


def draw_blob_sample(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One image: a head-and-torso blob in warm colours on a cool striped, noisy background."""
    yy, xx = np.mgrid[0:height, 0:width]
    period = rng.uniform(6, 14)
    stripes = 0.5 + 0.5 * np.sin((xx * rng.uniform(-1, 1) + yy) * 2 * np.pi / period)
    background = np.stack([40 + 60 * stripes, 90 + 50 * stripes, 150 + 60 * stripes], axis=-1)
    mask = np.zeros((height, width), np.uint8)
    centre_x = int(rng.uniform(0.35, 0.65) * width)
    head_y = int(rng.uniform(0.2, 0.35) * height)
    head_radius = int(rng.uniform(0.08, 0.12) * min(height, width))
    cv2.circle(mask, (centre_x, head_y), head_radius, 1, thickness=-1)
    body_half_width = int(head_radius * rng.uniform(1.4, 2.0))
    cv2.ellipse(mask, (centre_x, height), (body_half_width, height - head_y - head_radius),
                0, 180, 360, 1, thickness=-1)
    person = np.array([200, 120, 80]) + rng.uniform(-30, 30, size=3)
    image = np.where(mask[..., None] == 1, person, background)
    image = image + rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_blob_dataset(root: Path, train: int, val: int, size: int = 64, seed: int = 0) -> Path:
    """Write `images/`, `masks/` and PaddleSeg list files `train.txt` / `val.txt` under `root`."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for index in range(train + val):
        image, mask = draw_blob_sample(rng, size, size)
        name = f"blob_{index:03d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
        split = "train" if index < train else "val"
        lines[split].append(f"images/{name}.png masks/{name}.png")
    for split, entries in lines.items():
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n")
    return root


def blob_config_text(
    root: Path, *, iters: int = 30, batch_size: int = 4, learning_rate: float = 0.05,
    model: str = "{type: PPHumanSegLite, num_classes: 2}", loss: str = "scl",
) -> str:
    """A PaddleSeg-schema config training `model` on the blob dataset at `root` with `loss`
    (`scl`: CE + SC, `ce`: CE alone)."""
    return f"""\
batch_size: {batch_size}
iters: {iters}
train_dataset:
  type: Dataset
  dataset_root: {root}
  train_path: {root}/train.txt
  num_classes: 2
  mode: train
  transforms:
    - type: RandomHorizontalFlip
    - type: Normalize
val_dataset:
  type: Dataset
  dataset_root: {root}
  val_path: {root}/val.txt
  num_classes: 2
  mode: val
  transforms:
    - type: Normalize
optimizer:
  type: sgd
  momentum: 0.9
  weight_decay: 4.0e-5
lr_scheduler:
  type: PolynomialDecay
  learning_rate: {learning_rate}
  end_lr: 0
  power: 0.9
model: {model}
{LOSSES[loss]}"""


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared 2-core machine, 2 threads can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LITE_SPEC = {"type": "PPHumanSegLite", "num_classes": 2}
HRNET_SMALL_SPEC = {
    "type": "FCN",
    "backbone": {"type": "HRNet_W18_Small_V1"},
    "num_classes": 2,
    "backbone_indices": [-1],
}


def randomise_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-normal weights, BatchNorm statistics taken from one random batch: varied, unsaturated."""
    torch.manual_seed(seed)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    for module in batch_norms:
        module.weight.data.uniform_(0.5, 1.5)
        module.bias.data.uniform_(-0.5, 0.5)
        module.momentum = 1.0  # the next forward pass sets the running statistics outright
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 64))
    for module in batch_norms:
        module.momentum = 0.1
    return model.eval()


def save_random_model(
    folder: Path, spec: dict | None = None, input_size: tuple[int, int] = (64, 96)
) -> tuple[Path, Path]:
    """Save a random model (`model.pt`) and a config resizing inputs to `input_size` (H, W)."""
    spec = spec or LITE_SPEC
    height, width = input_size
    config = {
        "model": spec,
        "val_dataset": {
            "type": "FolderDataset",
            "dataset_root": str(folder),
            "num_classes": 2,
            "mode": "val",
            "transforms": [
                {"type": "Resize", "target_size": [width, height]},
                {"type": "Normalize"},
            ],
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    config_path, model_path = folder / "model.yml", folder / "model.pt"
    config_path.write_text(yaml.safe_dump(config))
    torch.save(randomise_weights(build_model(spec)).state_dict(), model_path)
    return config_path, model_path


@pytest.fixture(scope="session")
def blob_sample() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """`blob_sample(rng, height, width) -> (image RGB uint8, mask 0/1)`."""
    return draw_blob_sample


@pytest.fixture(scope="session")
def make_blob_dataset() -> Callable[..., Path]:
    """`make_blob_dataset(root, train, val, size=64, seed=0) -> root` with images, masks and
    PaddleSeg list files."""
    return write_blob_dataset


@pytest.fixture(scope="session")
def blob_config() -> Callable[..., str]:
    """`blob_config(root, iters=..., batch_size=..., learning_rate=..., model=..., loss="scl")`:
    the text of a config training on a blob data set."""
    return blob_config_text


@pytest.fixture(scope="session")
def write_model() -> Callable[..., tuple[Path, Path]]:
    """`write_model(folder, spec=None, input_size=(64, 96)) -> (config, model.pt)` of a random
    model (PP-HumanSeg-Lite unless `spec` says otherwise)."""
    return save_random_model


@pytest.fixture(scope="session")
def randomise() -> Callable[..., torch.nn.Module]:
    """`randomise(model, seed=0) -> model` in eval mode with varied, unsaturated weights."""
    return randomise_weights
