"""SC loss vs cross-entropy, forward + backward, on realistic portrait batches (prints ratios).

Both SC variants are timed: the paper's (`unmatched: hard`) and `unmatched: soft`, whose
unmatched predicted components carry gradient (docs/sc_loss.md).

Labels hold 1-3 person blobs (head + torso ellipses); predictions are the labels cut into
fragments by background bands, with false-alarm specks and holes, as a half-trained model makes;
a third run uses pure-noise logits, as an untrained model makes.
When `.venv-paddle` exists (`make parity`), PaddleSeg 2.8's SC and cross-entropy losses are
timed on the same batch too (benchmarks/paddle_sc_loss.py).
Run: `make bench` (or `.venv/bin/python benchmarks/bench_loss.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# OpenMP threads that spin while waiting lose their time slices to other processes on a shared
# machine; passive waiting must be chosen before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from humanseg.losses import CrossEntropyLoss, SemanticConnectivityLoss  # noqa: E402
from humanseg.ops.connectivity import (  # noqa: E402
    PlaneSoftmax,
    semantic_connectivity_per_image,
)

ROOT = Path(__file__).resolve().parents[1]
PADDLE_PYTHON = ROOT / ".venv-paddle" / "bin" / "python"


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


def time_ms(
    steps: dict[str, Callable[[], None]], repeats: int
) -> dict[str, tuple[float, float]]:
    """(median, minimum) wall time in ms of each step, the steps interleaved so that load
    changes hit all alike. On a shared machine the minimum is the least disturbed run."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {
        name: (1000 * statistics.median(values), 1000 * min(values))
        for name, values in times.items()
    }


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


def through_torch_autograd(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SC loss with its two-class probabilities differentiated by torch's autograd
    (PlaneSoftmax, the route of GPUs and half precision) instead of the compiled sweep."""
    return semantic_connectivity_per_image(PlaneSoftmax(logits), labels, logits.shape[1]).mean()


def bench_shape(
    shape: tuple[int, int, int, int], speckled: bool, repeats: int, seed: int, paddle: bool
) -> None:
    """Print SC, CE (ours and torch's) timings and the SC/CE ratios for one batch shape.

    `speckled`: logits of pure noise, as an untrained model gives (tens of thousands of
    components), instead of fragmented person predictions; PaddleSeg is not run on it (its
    one-hot [H, W, components] tensors would take gigabytes).
    """
    num_images, num_classes, height, _ = shape
    rng = np.random.default_rng(seed)
    labels_np = person_labels(rng, num_images, height)
    if speckled:
        noise = rng.normal(size=shape).astype(np.float32)
        logits = torch.from_numpy(noise).requires_grad_(True)
    else:
        logits = logits_for(rng, fragmented_predictions(rng, labels_np), num_classes)
    labels = torch.from_numpy(labels_np)
    sc_loss = SemanticConnectivityLoss()
    kind = "speckled (untrained) predictions" if speckled else "fragmented person predictions"
    print(
        f"[{','.join(map(str, shape))}] {kind}: SC loss value {sc_loss(logits, labels).item():.4f}"
    )
    timings = {
        "SC loss": forward_backward(sc_loss, logits, labels),
        "SC, torch autograd": forward_backward(through_torch_autograd, logits, labels),
        "SC unmatched soft": forward_backward(
            SemanticConnectivityLoss(unmatched="soft"), logits, labels
        ),
        "CrossEntropyLoss": forward_backward(CrossEntropyLoss(), logits, labels),
        "F.cross_entropy": forward_backward(F.cross_entropy, logits, labels),
    }
    measured = time_ms(timings, repeats)
    for name, (median, fastest) in measured.items():
        print(f"  {name:<18} fwd+bwd median {median:8.2f} ms   min {fastest:8.2f} ms")
    for variant in ("SC loss", "SC, torch autograd"):
        sc_median, sc_fastest = measured[variant]
        for baseline in ("CrossEntropyLoss", "F.cross_entropy"):
            median, fastest = measured[baseline]
            print(
                f"  ratio {variant} / {baseline:<18} median {sc_median / median:5.2f}"
                f"   min {sc_fastest / fastest:5.2f}"
            )
    sc_median, sc_fastest = measured["SC loss"]
    soft_median, soft_fastest = measured["SC unmatched soft"]
    print(
        f"  ratio SC unmatched soft / SC (paper)  median {soft_median / sc_median:5.2f}"
        f"   min {soft_fastest / sc_fastest:5.2f}"
    )
    if paddle and not speckled and PADDLE_PYTHON.exists():
        reference = paddle_figures(logits.detach().numpy(), labels_np, max(3, repeats // 8))
        backward = "fwd+bwd (no gradient reaches the logits)" if reference["sc_backward"] else "fwd"
        print(
            f"  PaddleSeg 2.8 SC loss {backward} median {reference['sc_ms']:.1f} ms "
            f"(value {reference['sc_value']:.4f}), its CrossEntropyLoss {reference['ce_ms']:.1f} "
            f"ms: ratio {reference['sc_ms'] / reference['ce_ms']:.1f}; "
            f"ours is {reference['sc_ms'] / measured['SC loss'][0]:.0f}x faster"
        )


def paddle_figures(logits: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """PaddleSeg's SC and CE timings on this batch, from benchmarks/paddle_sc_loss.py."""
    with tempfile.TemporaryDirectory() as folder:
        batch = Path(folder) / "batch.npz"
        np.savez(batch, logits=logits, labels=labels)
        command = [
            str(PADDLE_PYTHON), str(ROOT / "benchmarks" / "paddle_sc_loss.py"), str(batch),
            "--repeats", str(repeats),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Benchmark both shapes of the issue and print the machine it ran on."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no_paddle", action="store_true", help="skip PaddleSeg's timings")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for shape, speckled in (
        ((8, 2, 192, 192), False), ((4, 2, 512, 512), False), ((8, 2, 192, 192), True)
    ):
        bench_shape(shape, speckled, args.repeats, args.seed, not args.no_paddle)


if __name__ == "__main__":
    main()
