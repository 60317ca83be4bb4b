"""Model cost on the CPU: params, FLOPs, latency and one training step, ours vs PaddleSeg.

Per model: parameters, FLOPs at 192x192 and at 398x224 (WxH), inference latency (batch 1, no
grad, 2 threads) at both sizes, and one training step (batch 8, 192x192, forward + backward +
SGD). HRNet needs sides that are multiples of 32, so it runs at 416x224 instead of 398x224.
When `.venv-paddle` exists (`make parity`), PaddleSeg's models are measured in the same run
with the same settings and the ratios printed (PaddleSeg time / ours: above 1 means we are
faster). Run: `.venv/bin/python benchmarks/bench_models.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import median_seconds

from humanseg.models import build_model
from humanseg.models.info import count_flops, count_parameters

ROOT = Path(__file__).resolve().parents[1]
PADDLE_PYTHON = ROOT / ".venv-paddle" / "bin" / "python"
# Our spec, PaddleSeg reference name (tools/paddle_reference.py), latency sizes (H, W).
MODELS: dict[str, tuple[dict, str, list[tuple[int, int]]]] = {
    "PP-HumanSeg-Lite": (
        {"type": "PPHumanSegLite", "num_classes": 2},
        "pphumanseg_lite",
        [(192, 192), (224, 398)],
    ),
    "FCN HRNet-W18-Small-V1": (
        {"type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"}, "num_classes": 2},
        "fcn_hrnet_w18_small_v1",
        [(192, 192), (224, 416)],
    ),
    "FCN HRNet-W18": (
        {"type": "FCN", "backbone": {"type": "HRNet_W18"}, "num_classes": 2},
        "fcn_hrnet_w18",
        [(192, 192), (224, 416)],
    ),
}


def measure_ours(
    spec: dict, sizes: list[tuple[int, int]], batch: int, train_size: int, repeats: int
) -> dict:
    """Params, FLOPs and latency per size, and one SGD training step."""
    model = build_model(spec)
    result: dict = {"params": count_parameters(model), "flops": {}, "latency_s": {}}
    for height, width in sizes:
        key = f"{width}x{height}"
        result["flops"][key] = count_flops(model, height, width)
        image = torch.randn(1, 3, height, width)

        def infer(image: torch.Tensor = image) -> torch.Tensor:
            with torch.no_grad():
                return model(image)

        result["latency_s"][key] = median_seconds(infer, repeats)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, 3, train_size, train_size)
    labels = torch.randint(0, 2, (batch, train_size, train_size))

    def train_step() -> float:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    result["train_step_s"] = median_seconds(train_step, max(2, repeats // 4))
    return result


def measure_paddle(
    plan: dict[str, list[tuple[int, int]]], batch: int, train_size: int, repeats: int, threads: int
) -> dict[str, dict]:
    """PaddleSeg's figures from tools/paddle_reference.py in `.venv-paddle`, by reference name."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        str(PADDLE_PYTHON), str(ROOT / "tools" / "paddle_reference.py"), "bench",
        "--plan", json.dumps(plan), "--train_batch", str(batch),
        "--train_size", str(train_size), "--repeats", str(repeats),
    ]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {row["model"]: row for row in rows}


def ratio(theirs: float | None, ours: float) -> str:
    """`x1.23` (PaddleSeg time / ours) or `-` when PaddleSeg was not measured."""
    return f"x{theirs / ours:.2f}" if theirs else "-"


def main() -> None:
    """Measure every model and print one table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train_size", type=int, default=192)
    parser.add_argument("--no_paddle", action="store_true", help="skip PaddleSeg's figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    paddle: dict[str, dict] = {}
    if PADDLE_PYTHON.exists() and not args.no_paddle:
        plan = {ref: sizes for _spec, ref, sizes in MODELS.values()}
        paddle = measure_paddle(plan, args.batch, args.train_size, args.repeats, args.threads)
    print(
        f"# torch {torch.__version__}, {args.threads} threads, {platform.processor() or 'cpu'}; "
        f"median of {args.repeats} (latency) / {max(2, args.repeats // 4)} (train step) runs"
    )
    print(
        "| model | params | input WxH | GFLOPs | latency ms | PaddleSeg ms | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (spec, ref, sizes) in MODELS.items():
        ours = measure_ours(spec, sizes, args.batch, args.train_size, args.repeats)
        theirs = paddle.get(ref, {})
        for key, seconds in ours["latency_s"].items():
            their_seconds = theirs.get("latency_s", {}).get(key)
            print(
                f"| {name} | {ours['params'] / 1e6:.3f} M | {key} | "
                f"{ours['flops'][key] / 1e9:.3f} | {seconds * 1e3:.1f} | "
                f"{their_seconds * 1e3 if their_seconds else float('nan'):.1f} | "
                f"{ratio(their_seconds, seconds)} |"
            )
        train = ours["train_step_s"]
        their_train = theirs.get("train_step_s")
        print(
            f"| {name} train step (batch {args.batch}, {args.train_size}x{args.train_size}, "
            f"fwd+bwd+SGD) | | | | {train * 1e3:.0f} | "
            f"{their_train * 1e3 if their_train else float('nan'):.0f} | "
            f"{ratio(their_train, train)} |"
        )


if __name__ == "__main__":
    main()
