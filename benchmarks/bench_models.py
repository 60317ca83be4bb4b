"""Model cost on the CPU: params, FLOPs, latency and one training step, ours vs PaddleSeg.

Per model: parameters, FLOPs at 192x192 and at 398x224 (WxH), inference latency (batch 1, 2
threads) at both sizes, and one training step (batch 8, 192x192, forward + backward + SGD).
HRNet needs sides that are multiples of 32, so it runs at 416x224 instead of 398x224. Our
latency is that of the BN-folded model under `torch.inference_mode` (what the predictor's torch
path runs; the unfused model's is printed beside it). When `.venv-paddle` exists (`make
parity`), PaddleSeg's models are measured in the same run with the same settings, model by
model right after ours, in `--rounds` alternating rounds (median over rounds), and the ratios
printed (PaddleSeg time / ours: above 1 means we are faster), the median's and each round's
CPU-time ratio. Wall time is shown with process CPU time beside it: on a shared machine other
load stretches wall time, CPU seconds much less. `--compile` adds our models under
`torch.compile` (`humanseg.engine.runtime.CompiledModel`: the BN-folded model with frozen
weights for inference, as `--compile` of predict/video/serve runs it, and the training step),
each compiled once per model before the rounds, with the compile time printed below the table.
Run: `.venv/bin/python benchmarks/bench_models.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

# OpenMP threads that spin while waiting (libgomp's default) lose most of their time to other
# processes on a shared machine; passive waiting is set before torch (and paddle) load OpenMP.
# `OMP_WAIT_POLICY=DEFAULT` leaves the OpenMP runtime's own default (a short spin, then sleep).
if os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE").upper() == "DEFAULT":
    del os.environ["OMP_WAIT_POLICY"]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timing import median_times  # noqa: E402

from humanseg.engine.runtime import CompiledModel  # noqa: E402
from humanseg.models import build_model, fuse  # noqa: E402
from humanseg.models.info import count_flops, count_parameters  # noqa: E402
from humanseg.models.layers import channels_last_weights  # noqa: E402

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


def timed_first_call(step: Callable[[], object]) -> dict[str, float]:
    """Wall and process-CPU seconds of one call: a compile's cost (its worker processes' CPU
    time is not in the process figure, so wall time is the one to read)."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    step()
    return {"wall_s": time.perf_counter() - start_wall, "cpu_s": time.process_time() - start_cpu}


class OursBench:
    """One model of ours, built (and with `compile`, compiled: timed once) before the rounds;
    `measure()` gives one round's figures."""

    def __init__(self, spec: dict, sizes: list[tuple[int, int]], args: argparse.Namespace):
        """Build the model, its BN-folded copy, inputs and steps (compiled ones too)."""
        self.repeats = args.repeats
        model = build_model(spec).eval()
        fused = channels_last_weights(fuse(model))  # as the predictor runs it
        self.params = count_parameters(model)
        self.flops: dict[str, int] = {}
        self.steps: dict[str, dict[str, Callable[[], object]]] = {"latency": {}, "unfused": {}}
        self.compile_s: dict[str, dict[str, float]] = {}
        if args.compile:
            torch._dynamo.reset()  # no graphs or recompile counts left from the previous model
            self.steps["compiled"] = {}
            compiled_fused = CompiledModel(fused, freeze=True)
        for height, width in sizes:
            key = f"{width}x{height}"
            self.flops[key] = count_flops(model, height, width)
            image = torch.randn(1, 3, height, width)
            networks = {"latency": fused, "unfused": model}
            if args.compile:
                networks["compiled"] = compiled_fused
            for table, network in networks.items():
                self.steps[table][key] = partial(infer, network, image)
            if args.compile:
                self.compile_s[key] = timed_first_call(self.steps["compiled"][key])
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        images = torch.randn(args.batch, 3, args.train_size, args.train_size)
        labels = torch.randint(0, 2, (args.batch, args.train_size, args.train_size))
        self.train_steps = {"train_step": partial(train_step, model, optimizer, images, labels)}
        if args.compile:
            compiled_model = CompiledModel(model)
            self.train_steps["train_step_compiled"] = partial(
                train_step, compiled_model, optimizer, images, labels)
            self.compile_s["train"] = timed_first_call(self.train_steps["train_step_compiled"])

    def measure(self) -> dict:
        """One round: median latency per size and table, and the training step(s)."""
        result: dict = {
            table: {key: median_times(step, self.repeats) for key, step in steps.items()}
            for table, steps in self.steps.items()
        }
        for name, step in self.train_steps.items():
            result[name] = median_times(step, max(2, self.repeats // 4))
        return result


def infer(network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> object:
    """One inference call as the predictor's torch path makes it."""
    with torch.inference_mode():
        return network(image)


def train_step(model: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Forward, cross-entropy, backward and an SGD step (PaddleSeg's side does the same)."""
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


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
    if not theirs:
        return f"{milliseconds(ours)} | - | -"
    return f"{milliseconds(ours)} | {milliseconds(theirs)} | {ratio(ours, theirs)}"


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
    parser.add_argument("--compile", action="store_true",
                        help="also time our models under torch.compile (inference: BN-folded, "
                        "weights frozen; training step), compiled once per model before the "
                        "rounds; set TORCHINDUCTOR_CACHE_DIR to an empty folder for a cold "
                        "compile time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# torch {torch.__version__}, {args.threads} threads, {platform.machine()}; "
        f"median over {args.rounds} alternating rounds of the median of {args.repeats} "
        f"(latency) / {max(2, args.repeats // 4)} (train step) runs; ms wall (ms CPU); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    compiled = " | ours compiled ms | PaddleSeg / compiled" if args.compile else ""
    print(
        "| model | params | input WxH | GFLOPs | ours ms | PaddleSeg ms | PaddleSeg / ours "
        f"| CPU ratio per round | ours unfused ms{compiled} |"
    )
    print("|---" * (9 + 2 * args.compile) + "|")
    compile_notes = []
    for name in args.models:
        spec, reference, sizes = MODELS[name]
        bench = OursBench(spec, sizes, args)
        ours_rounds, their_rounds = [], []
        for _ in range(args.rounds):
            ours_rounds.append(bench.measure())
            their_rounds.append(measure_paddle(reference, sizes, args))
        ours = median_of_rounds(ours_rounds)
        theirs = None if their_rounds[0] is None else median_of_rounds(their_rounds)
        params = f"{bench.params / 1e6:.3f} M"
        train = f"train step (batch {args.batch}, {args.train_size}x{args.train_size})"
        rows = [(key, ("latency", key), ("unfused", key), ("compiled", key))
                for key in ours["latency"]]
        rows.append((train, ("train_step",), None, ("train_step_compiled",)))
        for label, path, unfused_path, compiled_path in rows:
            flops = f"{bench.flops[label] / 1e9:.3f}" if label in bench.flops else ""
            line = (f"| {name} | {params} | {label} | {flops} "
                    f"| {cells(lookup(ours, path), lookup(theirs, path))} "
                    f"| {per_round(ours_rounds, their_rounds, path)} "
                    f"| {milliseconds(lookup(ours, unfused_path))} |")
            if args.compile:
                line += (f" {milliseconds(lookup(ours, compiled_path))} "
                         f"| {ratio(lookup(ours, compiled_path), lookup(theirs, path))} |")
            print(line)
        compile_notes += [f"# {name} {key}: compile (first call) {times['wall_s']:.1f} s wall, "
                          f"{times['cpu_s']:.1f} s CPU in this process"
                          for key, times in bench.compile_s.items()]
    for note in compile_notes:
        print(note)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


def lookup(figures: dict | None, path: tuple[str, ...] | None) -> dict[str, float] | None:
    """The `{"wall_s", "cpu_s"}` entry at `path` in nested figures (None when absent)."""
    if figures is None or path is None:
        return None
    for key in path:
        figures = figures[key]
    return figures


def milliseconds(times: dict[str, float] | None) -> str:
    """`wall (cpu)` in milliseconds, or empty."""
    return "" if times is None else f"{times['wall_s'] * 1e3:.1f} ({times['cpu_s'] * 1e3:.1f})"


def ratio(ours: dict[str, float] | None, theirs: dict[str, float] | None) -> str:
    """`xWALL (xCPU)`: PaddleSeg's time over ours (above 1: we are faster)."""
    if ours is None or theirs is None:
        return "-"
    return f"x{theirs['wall_s'] / ours['wall_s']:.2f} (x{theirs['cpu_s'] / ours['cpu_s']:.2f})"


def per_round(ours_rounds: list[dict], their_rounds: list[dict | None],
              path: tuple[str, ...]) -> str:
    """The CPU-time ratio of each round (ours and PaddleSeg's measured back to back)."""
    if their_rounds[0] is None:
        return "-"
    return " ".join(
        f"x{lookup(theirs, path)['cpu_s'] / lookup(ours, path)['cpu_s']:.2f}"
        for ours, theirs in zip(ours_rounds, their_rounds, strict=True)
    )


if __name__ == "__main__":
    main()
