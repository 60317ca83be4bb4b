"""The `val` verb and `evaluate()`: mIoU, per-class IoU, Acc, Kappa, Dice and connectivity.

Predictions are scored at the photo's resolution, as PaddleSeg and `humanseg predict` do: a
dataset whose `transforms` is an inference pipeline (every val dataset built from a config) and
that has `raw(index)` (the photo and label as stored) is scored on its untransformed label; the
photo goes through the val transforms, and the network's class probabilities are sampled back
onto the photo's pixels through the `Placement` those transforms recorded (padding dropped,
resizing undone) by the same `photo_label` as `Predictor`. Any other dataset's `(image, label)`
samples are scored at the label's resolution, the probabilities stretched onto it. Scores can be
averaged over horizontal flips and scales (PaddleSeg's `--aug_eval`). Under torchrun each rank
scores a shard of the images and rank 0 accumulates all of them, so metrics cover every image once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from humanseg.data.inference import InferencePipeline, Placement, photo_label
from humanseg.engine.distributed import DistContext, broadcast_object, gather_to_main
from humanseg.engine.runtime import (
    autocast,
    check_precision,
    load_inference_model,
    resolve_device,
)
from humanseg.errors import HumanSegError
from humanseg.io import atomic_path

METRICS_FILE = "val_metrics.json"


def _round_to_multiple(value: float, divisor: int) -> int:
    """The multiple of `divisor` nearest to `value`, at least `divisor`."""
    return max(divisor, int(round(value / divisor)) * divisor)


@torch.no_grad()
def infer_scores(
    model: torch.nn.Module, images: torch.Tensor, out_size: tuple[int, int], *,
    flip_horizontal: bool = False, scales: Sequence[float] = (1.0,), precision: str = "fp32",
    probabilities: bool = False,
) -> torch.Tensor:
    """Class scores [N, C, *out_size]: logits, or summed softmax over flips and scales (aug);
    softmax always with `probabilities` (what prediction resamples)."""
    softmax = probabilities or flip_horizontal or tuple(scales) != (1.0,)
    divisor = int(getattr(model, "size_divisor", 1))
    height, width = images.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        scaled = images
        if scale != 1.0:
            size = (_round_to_multiple(height * scale, divisor),
                    _round_to_multiple(width * scale, divisor))
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True) if flip_horizontal else (False,):
            batch = scaled.flip(-1) if flip else scaled
            with autocast(images.device, precision):
                logits = model(batch)
            logits = logits.float().flip(-1) if flip else logits.float()
            if tuple(logits.shape[-2:]) != tuple(out_size):
                logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
            scores = logits.softmax(dim=1) if softmax else logits
            total = scores if total is None else total + scores
    assert total is not None
    return total


def photo_sample(dataset: Dataset, index: int) -> tuple[np.ndarray, np.ndarray, Placement]:
    """Network input [3, h, w], label to score against and where that label lies in the input."""
    transforms = getattr(dataset, "transforms", None)
    if isinstance(transforms, InferencePipeline) and hasattr(dataset, "raw"):
        photo, label = dataset.raw(index)
        inputs, placement = transforms.prepare(photo)
        return inputs, np.asarray(label), placement
    image, label = dataset[index]
    inputs, label = np.asarray(image, dtype=np.float32), np.asarray(label)
    return inputs, label, Placement.resize(label.shape[-2:], inputs.shape[-2:])


def evaluate(
    model: torch.nn.Module, dataset: Dataset, num_classes: int, *,
    context: DistContext | None = None, ignore_index: int = 255, flip_horizontal: bool = False,
    scales: Sequence[float] = (1.0,), precision: str = "fp32", progress: bool = False,
) -> dict[str, Any]:
    """Score `model` on every sample of `dataset`; every rank returns the same metrics dict."""
    from humanseg.metrics import SegMetrics

    device = next(model.parameters()).device
    context = context or DistContext(rank=0, world_size=1, device=device)
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise HumanSegError("val_dataset: holds no samples")
    metrics = SegMetrics(num_classes, ignore_index=ignore_index)
    was_training = model.training
    model.eval()
    steps = -(-size // context.world_size)
    try:
        for step in tqdm(range(steps), desc="eval", unit="img", leave=False,
                         disable=not (progress and context.is_main)):
            index = step * context.world_size + context.rank
            scored = None
            if index < size:
                inputs, label, placement = photo_sample(dataset, index)
                batch = torch.from_numpy(inputs)[None].to(device)
                scores = infer_scores(model, batch, tuple(inputs.shape[-2:]),
                                      flip_horizontal=flip_horizontal, scales=scales,
                                      precision=precision, probabilities=True)
                prediction = photo_label(scores[0].cpu().numpy(), placement, label.shape)
                scored = (prediction, label.astype(np.uint8))
            for pair in gather_to_main(context, scored):
                if pair is not None:
                    metrics.update(pair[0][None], pair[1][None])
    finally:
        model.train(was_training)
    result = _plain(metrics.compute()) if context.is_main else None
    return broadcast_object(context, result)


def _plain(value: Any) -> Any:
    """Metrics with tensors and NumPy values turned into floats and lists (JSON-ready)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def format_metrics(metrics: dict[str, Any]) -> str:
    """PaddleSeg-style summary lines for the console."""
    def vector(values: Sequence[float]) -> str:
        return "[" + " ".join(f"{value:.4f}" for value in values) + "]"

    return "\n".join([
        f"[EVAL] mIoU: {metrics['miou']:.4f} Acc: {metrics['acc']:.4f} "
        f"Kappa: {metrics['kappa']:.4f} Dice: {metrics['dice']:.4f} "
        f"Connectivity: {metrics['connectivity']:.4f}",
        f"[EVAL] Class IoU: {vector(metrics['class_iou'])}",
        f"[EVAL] Class Acc: {vector(metrics['class_acc'])}",
    ])


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write metrics as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg val` / `python val.py` (PaddleSeg's names)."""
    parser.add_argument("--config", required=True, help="config file (its val_dataset is scored)")
    parser.add_argument("--model_path", required=True,
                        help="model.pt (plain state_dict) or a folder holding one")
    parser.add_argument("--aug_eval", action="store_true",
                        help="average softmax over --flip_horizontal and --scales")
    parser.add_argument("--flip_horizontal", action="store_true",
                        help="with --aug_eval: add horizontally flipped inputs")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="with --aug_eval: input scales, e.g. 0.75 1.0 1.25")
    parser.add_argument("--save_dir", default=None,
                        help=f"where {METRICS_FILE} goes (default: beside the model file)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the model runs")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="autocast precision (fp16 needs --device cuda)")


def run(args: argparse.Namespace) -> int:
    """Evaluate a trained model on the config's val_dataset, print and save the metrics."""
    from humanseg.builder import check_num_classes
    from humanseg.data import build_dataset

    device = resolve_device(args.device)
    check_precision(args.precision, device)
    cfg, model = load_inference_model(args.config, args.model_path, device, inference=False)
    if "val_dataset" not in cfg:
        raise HumanSegError(f"{args.config}: config has no val_dataset section")
    num_classes = check_num_classes(cfg, model)
    dataset = build_dataset(cfg["val_dataset"], ("val_dataset",))
    flip = args.aug_eval and args.flip_horizontal
    scales = args.scales if args.aug_eval else [1.0]
    metrics = evaluate(
        model, dataset, num_classes, ignore_index=int(cfg["val_dataset"].get("ignore_index", 255)),
        flip_horizontal=flip, scales=scales, precision=args.precision, progress=True,
    )
    metrics["images"] = len(dataset)
    print(format_metrics(metrics))
    model_path = Path(args.model_path)
    save_dir = Path(args.save_dir) if args.save_dir else (
        model_path if model_path.is_dir() else model_path.parent)
    write_metrics(save_dir / METRICS_FILE, metrics)
    print(f"[EVAL] metrics written to {save_dir / METRICS_FILE}")
    return 0
