"""PaddleSeg reference runs, executed inside `.venv-paddle` (paddlepaddle + paddleseg 2.8.0).

`parity OUT`: builds PaddleSeg's FCN + HRNet_W18, FCN + HRNet_W18_Small_V1 and PPHumanSegLite,
fills every parameter and BN statistic with seeded random values, and writes for each model
`NAME.pdparams`, `NAME_input.npy` and `NAME_logits.npy` (eval mode) into OUT, then
`NAME_train_logits.npy` (one training-mode forward, BN on batch statistics) and
`NAME_after_train_step.pdparams` (the running statistics that forward updated).

`keys OUT`: writes `NAME.keys.txt` (one `name shape` line per state_dict entry, in order) for
the test fixtures in tests/data/paddleseg/.

`bench --plan JSON`: prints one JSON line per model with PaddleSeg's CPU latency and
training-step time, measured the same way as `benchmarks/bench_models.py` measures ours (which
calls it with FLAGS_paddle_num_threads and OMP_NUM_THREADS set).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
warnings.filterwarnings("ignore")
import paddle  # noqa: E402
from paddleseg.models import FCN, PPHumanSegLite  # noqa: E402
from paddleseg.models.backbones import HRNet_W18, HRNet_W18_Small_V1  # noqa: E402
from timing import median_times  # noqa: E402

# name -> (builder, parity input shape N, C, H, W, range of the random BN scales). The deep
# HRNet-W18 gets smaller BN scales so that its residual sums, and so its logits, stay O(1).
MODELS: dict[
    str, tuple[Callable[[], paddle.nn.Layer], tuple[int, int, int, int], tuple[float, float]]
] = {
    "fcn_hrnet_w18": (
        lambda: FCN(num_classes=2, backbone=HRNet_W18(), backbone_indices=[-1]),
        (2, 3, 64, 96),
        (0.3, 0.8),
    ),
    "fcn_hrnet_w18_small_v1": (
        lambda: FCN(num_classes=2, backbone=HRNet_W18_Small_V1(), backbone_indices=[-1]),
        (1, 3, 96, 64),
        (0.5, 1.5),
    ),
    "pphumanseg_lite": (lambda: PPHumanSegLite(num_classes=2), (2, 3, 70, 98), (0.5, 1.5)),
}


def randomize(
    model: paddle.nn.Layer, rng: np.random.Generator, bn_scale: tuple[float, float]
) -> None:
    """Seeded values for every tensor: scaled-normal weights, non-trivial BN statistics."""
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_mean") or name.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # BN scale
            value = rng.uniform(*bn_scale, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, (1.0 / fan_in) ** 0.5, shape)
        tensor.set_value(value.astype(np.float32))


def parity(out: Path, seed: int) -> None:
    """Write weights, inputs and eval-mode logits of every reference model into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for index, (name, (build, shape, bn_scale)) in enumerate(MODELS.items()):
        paddle.seed(seed + index)
        rng = np.random.default_rng(seed + index)
        model = build()
        randomize(model, rng, bn_scale)
        model.eval()
        image = rng.normal(0.0, 1.0, shape).astype(np.float32)
        with paddle.no_grad():
            logits = model(paddle.to_tensor(image))[0].numpy()
        paddle.save(model.state_dict(), str(out / f"{name}.pdparams"))
        np.save(out / f"{name}_input.npy", image)
        np.save(out / f"{name}_logits.npy", logits)
        # Training mode: logits from batch statistics, and the running statistics it updates.
        model.train()
        with paddle.no_grad():
            train_logits = model(paddle.to_tensor(image))[0].numpy()
        np.save(out / f"{name}_train_logits.npy", train_logits)
        paddle.save(model.state_dict(), str(out / f"{name}_after_train_step.pdparams"))


def write_keys(out: Path) -> None:
    """Write every reference model's state_dict names and shapes, one per line."""
    out.mkdir(parents=True, exist_ok=True)
    for name, (build, _shape, _bn_scale) in MODELS.items():
        lines = [
            f"{key} {','.join(str(d) for d in tensor.shape)}"
            for key, tensor in build().state_dict().items()
        ]
        (out / f"{name}.keys.txt").write_text("\n".join(lines) + "\n")


def bench_model(
    model: paddle.nn.Layer, sizes: list[list[int]], train_batch: int, train_size: int,
    repeats: int,
) -> dict:
    """Latency (batch 1, no grad) at each [H, W] and one SGD training step of `model`."""
    model.eval()
    latency = {}
    for height, width in sizes:
        image = paddle.randn([1, 3, height, width])

        def infer(image: paddle.Tensor = image) -> object:
            with paddle.no_grad():
                return model(image)[0].numpy()

        latency[f"{width}x{height}"] = median_times(infer, repeats)
    model.train()
    optimizer = paddle.optimizer.SGD(learning_rate=0.01, parameters=model.parameters())
    images = paddle.randn([train_batch, 3, train_size, train_size])
    labels = paddle.randint(0, 2, [train_batch, train_size, train_size])

    def train_step() -> object:
        loss = paddle.nn.functional.cross_entropy(model(images)[0], labels, axis=1)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return loss

    return {"latency": latency, "train_step": median_times(train_step, max(2, repeats // 4))}


def bench(
    plan: dict[str, list[list[int]]], train_batch: int, train_size: int, repeats: int
) -> None:
    """Print one JSON line per planned model (PaddleSeg reference name -> [[H, W], ...])."""
    for name, sizes in plan.items():
        figures = bench_model(MODELS[name][0](), sizes, train_batch, train_size, repeats)
        print(json.dumps({"model": name, **figures}), flush=True)


def main(argv: list[str]) -> int:
    """Command line: `parity OUT [--seed N]` or `bench [--threads N] ...`."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    parity_parser = sub.add_parser("parity")
    parity_parser.add_argument("out", type=Path)
    parity_parser.add_argument("--seed", type=int, default=0)
    sub.add_parser("keys").add_argument("out", type=Path)
    bench_parser = sub.add_parser("bench")
    bench_parser.add_argument("--plan", required=True, help='JSON {"model": [[H, W], ...]}')
    bench_parser.add_argument("--train_batch", type=int, default=8)
    bench_parser.add_argument("--train_size", type=int, default=192)
    bench_parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    paddle.set_device("cpu")
    if args.mode == "parity":
        parity(args.out, args.seed)
    elif args.mode == "keys":
        write_keys(args.out)
    else:  # threads: the caller sets OMP_NUM_THREADS before paddle is imported
        bench(json.loads(args.plan), args.train_batch, args.train_size, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
