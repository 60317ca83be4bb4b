"""SC loss vs cross-entropy, forward + backward, on realistic portrait batches (prints ratios).

Labels hold 1-3 person blobs (head + torso ellipses); predictions are the labels cut into
fragments by background bands, with false-alarm specks and holes, as a half-trained model makes.
Run: `make bench` (or `.venv/bin/python benchmarks/bench_loss.py`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from humanseg.losses import CrossEntropyLoss, SemanticConnectivityLoss


def person_labels(rng: np.random.Generator, num_images: int, size: int) -> np.ndarray:
    """[N, size, size] int64 maps with 1-3 person blobs (class 1) on background (class 0)."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    labels = np.zeros((num_images, size, size), dtype=np.int64)
    for image in labels:
        for _ in range(rng.integers(1, 4)):
            centre_col, head_row = rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.45)
            scale = rng.uniform(0.6, 1.2)
            head = ((rows - head_row) / (0.09 * scale)) ** 2 + (
                (cols - centre_col) / (0.07 * scale)
            ) ** 2
            torso_row = head_row + 0.3 * scale
            torso = ((rows - torso_row) / (0.25 * scale)) ** 2 + (
                (cols - centre_col) / (0.16 * scale)
            ) ** 2
            image[(head < 1) | (torso < 1)] = 1
    return labels


def fragmented_predictions(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Labels cut by 1-3 background bands, plus false-alarm specks and holes."""
    preds = labels.copy()
    num_images, size, _ = labels.shape
    for pred in preds:
        for _ in range(rng.integers(1, 4)):
            row = rng.integers(0, size - 4)
            pred[row : row + max(2, size // 64)] = 0
        for value in (1, 0):  # specks of person on background, then holes in the person
            for _ in range(rng.integers(3, 12)):
                row, col = rng.integers(0, size - 6, size=2)
                speck = max(2, size // 48)
                pred[row : row + speck, col : col + speck] = value
    return preds


def logits_for(rng: np.random.Generator, preds: np.ndarray, num_classes: int) -> torch.Tensor:
    """Logits whose argmax is `preds`, with noise, as a leaf tensor that records gradient."""
    one_hot = np.eye(num_classes, dtype=np.float32)[preds].transpose(0, 3, 1, 2)
    noise = rng.normal(0.0, 0.3, size=one_hot.shape).astype(np.float32)
    return torch.from_numpy(4.0 * one_hot - 2.0 + noise).requires_grad_(True)


def median_ms(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall time (ms) of each step, the steps interleaved so load changes hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def forward_backward(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    labels: torch.Tensor,
) -> Callable[[], None]:
    """A step that runs loss forward and backward on the batch."""

    def step() -> None:
        logits.grad = None
        loss(logits, labels).backward()

    return step


def bench_shape(shape: tuple[int, int, int, int], repeats: int, seed: int) -> None:
    """Print SC, CE (ours and torch's) timings and the SC/CE ratios for one batch shape."""
    num_images, num_classes, height, _ = shape
    rng = np.random.default_rng(seed)
    labels_np = person_labels(rng, num_images, height)
    preds_np = fragmented_predictions(rng, labels_np)
    logits, labels = logits_for(rng, preds_np, num_classes), torch.from_numpy(labels_np)
    sc_loss = SemanticConnectivityLoss()
    print(f"[{','.join(map(str, shape))}] SC loss value {sc_loss(logits, labels).item():.4f}")
    timings = {
        "SC loss": forward_backward(sc_loss, logits, labels),
        "CrossEntropyLoss": forward_backward(CrossEntropyLoss(), logits, labels),
        "F.cross_entropy": forward_backward(F.cross_entropy, logits, labels),
    }
    measured = median_ms(timings, repeats)
    for name, value in measured.items():
        print(f"  {name:<18} fwd+bwd {value:8.2f} ms")
    for baseline in ("CrossEntropyLoss", "F.cross_entropy"):
        print(f"  ratio SC / {baseline:<18} {measured['SC loss'] / measured[baseline]:.2f}")


def main() -> None:
    """Benchmark both shapes of the issue and print the machine it ran on."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for shape in ((8, 2, 192, 192), (4, 2, 512, 512)):
        bench_shape(shape, args.repeats, args.seed)


if __name__ == "__main__":
    main()
