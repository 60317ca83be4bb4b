"""Model cost on the CPU: params, FLOPs, latency and one training step, ours vs PaddleSeg.

Per model: parameters, FLOPs at 192x192 and at 398x224 (WxH), inference latency (batch 1, 2
threads) at both sizes, and one training step (batch 8, 192x192, forward + backward + SGD).
HRNet needs sides that are multiples of 32, so it runs at 416x224 instead of 398x224. Our
latency is that of the BN-folded model under `torch.inference_mode` (what the predictor's torch
path runs; the unfused model's is printed beside it). When `.venv-paddle` exists (`make
parity`), PaddleSeg's models are measured in the same run with the same settings, model by
model right after ours, in `--rounds` alternating rounds (median over rounds), and the ratios
printed (PaddleSeg time / ours: above 1 means we are faster). Wall time is shown with process
CPU time beside it: on a shared machine other load stretches wall time, CPU seconds much less.
Run: `.venv/bin/python benchmarks/bench_models.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

# OpenMP threads that spin while waiting (libgomp's default) lose most of their time to other
# processes on a shared machine; passive waiting is set before torch (and paddle) load OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timing import median_times  # noqa: E402

from humanseg.models import build_model, fuse  # noqa: E402
from humanseg.models.info import count_flops, count_parameters  # noqa: E402

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
    """Params, FLOPs, latency per size (BN-folded as the predictor runs it, and as trained), and
    one SGD training step."""
    model = build_model(spec).eval()
    fused = fuse(model)
    result: dict = {"params": count_parameters(model), "flops": {}, "latency": {}, "unfused": {}}
    for height, width in sizes:
        key = f"{width}x{height}"
        result["flops"][key] = count_flops(model, height, width)
        image = torch.randn(1, 3, height, width)
        for table, network in (("latency", fused), ("unfused", model)):

            def infer(image: torch.Tensor = image, network: torch.nn.Module = network) -> object:
                with torch.inference_mode():
                    return network(image)

            result[table][key] = median_times(infer, repeats)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, 3, train_size, train_size)
    labels = torch.randint(0, 2, (batch, train_size, train_size))

    def train_step() -> torch.Tensor:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    result["train_step"] = median_times(train_step, max(2, repeats // 4))
    return result


def median_of_rounds(rounds: list[dict]) -> dict:
    """Figure by figure, the median over rounds of nested `{..: {"wall_s", "cpu_s"}}` dicts."""
    first = rounds[0]
    if "wall_s" in first:
        return {k: statistics.median(r[k] for r in rounds) for k in first}
    return {
        k: median_of_rounds([r[k] for r in rounds]) if isinstance(v, dict) else v
        for k, v in first.items()
    }


def measure_paddle(
    reference: str, sizes: list[tuple[int, int]], args: argparse.Namespace
) -> dict | None:
    """PaddleSeg's figures for one model from tools/paddle_reference.py in `.venv-paddle`."""
    if args.no_paddle or not PADDLE_PYTHON.exists():
        return None
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "FLAGS_paddle_num_threads": threads}
    command = [
        str(PADDLE_PYTHON), str(ROOT / "tools" / "paddle_reference.py"), "bench",
        "--plan", json.dumps({reference: sizes}), "--train_batch", str(args.batch),
        "--train_size", str(args.train_size), "--repeats", str(args.repeats),
    ]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return next(json.loads(line) for line in output.splitlines() if line.startswith("{"))


def cells(ours: dict[str, float], theirs: dict[str, float] | None) -> str:
    """`ours wall (cpu) | PaddleSeg wall (cpu) | ratio wall (cpu)` in milliseconds."""
    mine = f"{ours['wall_s'] * 1e3:.1f} ({ours['cpu_s'] * 1e3:.1f})"
    if not theirs:
        return f"{mine} | - | -"
    other = f"{theirs['wall_s'] * 1e3:.1f} ({theirs['cpu_s'] * 1e3:.1f})"
    ratio = f"x{theirs['wall_s'] / ours['wall_s']:.2f} (x{theirs['cpu_s'] / ours['cpu_s']:.2f})"
    return f"{mine} | {other} | {ratio}"


def main() -> None:
    """Measure every model (PaddleSeg's right after ours, in alternating rounds); print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="ours/PaddleSeg alternations")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train_size", type=int, default=192)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--no_paddle", action="store_true", help="skip PaddleSeg's figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# torch {torch.__version__}, {args.threads} threads, {platform.machine()}; "
        f"median over {args.rounds} alternating rounds of the median of {args.repeats} "
        f"(latency) / {max(2, args.repeats // 4)} (train step) runs; ms wall (ms CPU); "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| model | params | input WxH | GFLOPs | ours ms | PaddleSeg ms | PaddleSeg / ours "
        "| ours unfused ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        spec, reference, sizes = MODELS[name]
        ours_rounds, their_rounds = [], []
        for _ in range(args.rounds):
            ours_rounds.append(measure_ours(spec, sizes, args.batch, args.train_size, args.repeats))
            their_rounds.append(measure_paddle(reference, sizes, args))
        ours = median_of_rounds(ours_rounds)
        theirs = None if their_rounds[0] is None else median_of_rounds(their_rounds)
        params = f"{ours['params'] / 1e6:.3f} M"
        for key, times in ours["latency"].items():
            their_times = theirs["latency"][key] if theirs else None
            flops = ours["flops"][key] / 1e9
            unfused = ours["unfused"][key]
            print(
                f"| {name} | {params} | {key} | {flops:.3f} | {cells(times, their_times)} "
                f"| {unfused['wall_s'] * 1e3:.1f} ({unfused['cpu_s'] * 1e3:.1f}) |"
            )
        train = f"train step (batch {args.batch}, {args.train_size}x{args.train_size})"
        their_train = theirs["train_step"] if theirs else None
        print(f"| {name} | {params} | {train} | | {cells(ours['train_step'], their_train)} | |")


if __name__ == "__main__":
    main()
