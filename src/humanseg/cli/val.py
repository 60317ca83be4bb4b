"""`humanseg val` / `python val.py`: score a trained model on its config's val_dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from humanseg.cli.options import add_device, add_precision
from humanseg.engine.evaluate import METRICS_FILE, evaluate, format_metrics, write_metrics
from humanseg.engine.runtime import check_precision, load_inference_model, resolve_device
from humanseg.errors import HumanSegError


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
    add_device(parser, "where the model runs")
    add_precision(parser)


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
