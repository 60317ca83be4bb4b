"""Training data pipeline against the model step: is the loader ever the bottleneck?

For a training config (default: the packaged model's portrait recipe), in one run:
1. the loader alone (the engine's seeded, endless batches) with 0, 1 and 2 worker processes:
   samples per second over `--batches` batches after `--warmup` (workers decode each photo
   once and keep it; the first pass over the data also pays for decoding);
2. the model step alone (forward, the config's loss, backward, optimizer) on one fixed batch;
3. both together, as `humanseg train` runs them, for each worker count.
Run from the repository root (the config's data paths are relative to it):
`OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_loader.py [--config C]`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from humanseg.builder import load_config  # noqa: E402
from humanseg.data import build_dataset  # noqa: E402
from humanseg.engine.runtime import autocast  # noqa: E402
from humanseg.engine.sampling import SeededSamples, ShuffledBatches  # noqa: E402
from humanseg.losses import build_loss_from_config  # noqa: E402
from humanseg.models import build_model  # noqa: E402
from humanseg.optim import build_optimizer  # noqa: E402
from humanseg.weights import resolve_paths  # noqa: E402

WORKER_COUNTS = (0, 1, 2)


def batches(dataset: object, batch_size: int, workers: int) -> Iterator:
    """The engine's endless, seeded batches with `workers` loader processes."""
    sampler = ShuffledBatches(len(dataset), batch_size, seed=0)  # type: ignore[arg-type]
    loader = DataLoader(
        SeededSamples(dataset), batch_sampler=sampler, num_workers=workers,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


def samples_per_second(
    source: Iterator, work: Callable[[object], None], warmup: int, count: int, batch_size: int
) -> float:
    """Throughput of `work(next(source))` over `count` batches after `warmup` batches."""
    for _ in range(warmup):
        work(next(source))
    start = time.perf_counter()
    for _ in range(count):
        work(next(source))
    return count * batch_size / (time.perf_counter() - start)


def main() -> None:
    """Measure loader, step and both together; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="training config (default: the packaged model's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the step")
    parser.add_argument("--batch_size", type=int, help="default: the config's")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config_path = args.config or resolve_paths(None, None)[0]
    cfg = load_config(config_path)
    batch_size = args.batch_size or int(cfg["batch_size"])
    dataset = build_dataset(cfg["train_dataset"])
    model = build_model(cfg["model"]).train()
    loss = build_loss_from_config(cfg["loss"])
    optimizer = build_optimizer(cfg.get("optimizer") or {"type": "sgd"}, model.parameters(), 1e-4)
    device = torch.device("cpu")

    def step(batch: object) -> None:
        images, labels = batch[0], batch[1]  # type: ignore[index]
        with autocast(device, args.precision):
            logits = model(images)
        total, _ = loss(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    def nothing(_batch: object) -> None:
        return None

    fixed = next(batches(dataset, batch_size, 0))
    step_rate = samples_per_second(
        iter(lambda: fixed, None), step, 2, max(3, args.batches // 4), batch_size
    )
    print(
        f"# {config_path}: {len(dataset)} samples, batch {batch_size}, {args.threads} torch "
        f"threads, {args.precision}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; samples/s over {args.batches} batches after {args.warmup}"
    )
    print(f"model step alone (fixed batch): {step_rate:.1f} samples/s")
    print("| loader workers | loader alone samples/s | training loop samples/s | loop / step |")
    print("|---|---|---|---|")
    for workers in WORKER_COUNTS:
        alone = samples_per_second(
            batches(dataset, batch_size, workers), nothing, args.warmup, args.batches, batch_size
        )
        loop = samples_per_second(
            batches(dataset, batch_size, workers), step, args.warmup, args.batches, batch_size
        )
        print(f"| {workers} | {alone:.1f} | {loop:.1f} | {loop / step_rate:.2f} |")


if __name__ == "__main__":
    main()
