"""PaddleSeg 2.8's SemanticConnectivityLoss and CrossEntropyLoss timed on a saved batch.

Runs under `.venv-paddle` (numpy, paddle, paddleseg; no torch): `benchmarks/bench_loss.py` saves
its batch to an .npz, runs this script on it and prints the figures beside ours.
Usage: `.venv-paddle/bin/python benchmarks/paddle_sc_loss.py BATCH.npz --repeats N`; prints one
JSON line {"sc_ms", "ce_ms", "sc_value", "sc_backward"}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import paddle
from paddleseg.models.losses import CrossEntropyLoss, SemanticConnectivityLoss
from timing import median_times  # benchmarks/timing.py, beside this script


def median_ms(step: Callable[[], None], repeats: int) -> float:
    """Median wall time of `step()` in milliseconds after one warm-up call."""
    return 1000 * median_times(step, repeats, warmup=1)["wall_s"]


def main() -> None:
    """Time both losses, forward and backward (as far as PaddleSeg's SC loss allows one)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("batch", help=".npz with logits [N, C, H, W] and labels [N, H, W]")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    paddle.set_device("cpu")
    saved = np.load(args.batch)
    logits = paddle.to_tensor(saved["logits"], stop_gradient=False)
    labels = paddle.to_tensor(saved["labels"])
    sc_loss, cross_entropy = SemanticConnectivityLoss(), CrossEntropyLoss()
    value = sc_loss(logits, labels)
    # The reference's loss is built from the argmax map: it may hold no graph to go back through.
    sc_backward = not value.stop_gradient

    def sc_step() -> None:
        loss = sc_loss(logits, labels)
        if sc_backward:
            loss.backward()
        logits.clear_gradient()

    def ce_step() -> None:
        cross_entropy(logits, labels).backward()
        logits.clear_gradient()

    print(
        json.dumps(
            {
                "sc_ms": median_ms(sc_step, args.repeats),
                "ce_ms": median_ms(ce_step, args.repeats),
                "sc_value": float(value),
                "sc_backward": sc_backward,
            }
        )
    )


if __name__ == "__main__":
    main()
