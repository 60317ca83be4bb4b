"""Test data for the engine tests: person-like blobs on textured backgrounds, and their configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

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


def blob_sample(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
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


def make_blob_dataset(root: Path, train: int, val: int, size: int = 64, seed: int = 0) -> Path:
    """Write `images/`, `masks/` and PaddleSeg list files `train.txt` / `val.txt` under `root`."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for index in range(train + val):
        image, mask = blob_sample(rng, size, size)
        name = f"blob_{index:03d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
        split = "train" if index < train else "val"
        lines[split].append(f"images/{name}.png masks/{name}.png")
    for split, entries in lines.items():
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n")
    return root


def blob_config(root: Path, *, iters: int = 30, batch_size: int = 4, learning_rate: float = 0.05,
                model: str = "{type: PPHumanSegLite, num_classes: 2}", loss: str = SCL_LOSS) -> str:
    """A PaddleSeg-schema config training `model` on the blob dataset at `root` (CE + SC)."""
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
{loss}"""


class TinySegNet(torch.nn.Module):
    """A small convolutional segmenter without batch norm (so DDP equals one big batch exactly)."""

    size_divisor = 1

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, num_classes, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared 2-core machine, 2 threads can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
