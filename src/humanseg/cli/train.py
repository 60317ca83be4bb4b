"""`humanseg train` / `python train.py`: train a model from a config (PaddleSeg's options)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from humanseg.cli.options import add_device, add_precision
from humanseg.engine import checkpoint
from humanseg.engine.train import DEFAULT_SAVE_INTERVAL, TrainOptions, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg train` / `python train.py` (PaddleSeg's names)."""
    defaults = TrainOptions()
    parser.add_argument("--config", required=True, help="config file (YAML, PaddleSeg schema)")
    parser.add_argument("--save_dir", default="output", help="checkpoints and logs go here")
    parser.add_argument("--do_eval", action="store_true", help="evaluate at every save interval")
    parser.add_argument("--use_vdl", action="store_true",
                        help="write TensorBoard scalars to SAVE_DIR/tensorboard")
    parser.add_argument("--iters", type=int, help="iterations (default: the config's)")
    parser.add_argument("--batch_size", type=int, help="batch size per process (default: config)")
    parser.add_argument("--learning_rate", type=float, help="base learning rate (default: config)")
    parser.add_argument("--resume_model", help="checkpoint folder SAVE_DIR/iter_N to resume from")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into a save_dir that holds an earlier run, deleting its "
                        "iter_N checkpoints, best_model and tensorboard logs first")
    parser.add_argument("--save_interval", type=int,
                        help="iterations between evaluations and checkpoints (default: the "
                        f"config's save_interval, else {DEFAULT_SAVE_INTERVAL})")
    parser.add_argument("--log_iters", type=int, default=defaults.log_iters,
                        help="iterations between loss logs")
    parser.add_argument("--num_workers", type=int, default=defaults.num_workers,
                        help="data loading worker processes")
    parser.add_argument("--seed", type=int, help="random seed (default: drawn and saved)")
    add_device(parser, "where training runs (under torchrun: one GPU per process)")
    add_precision(parser, "fp16: autocast + GradScaler on CUDA; bf16: autocast on CPU or CUDA")
    parser.add_argument("--keep_checkpoint_max", type=int, default=defaults.keep_checkpoint_max,
                        help="iter_N checkpoints to keep (0 keeps all)")


def run(args: argparse.Namespace) -> int:
    """Load the config and train with the command-line options."""
    from humanseg.builder import load_config

    cfg = load_config(args.config)
    names = {f.name for f in dataclasses.fields(TrainOptions)} - {"progress"}
    result = train(cfg, args.save_dir, **{name: getattr(args, name) for name in names})
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.best_miou is not None:
        print(f"[TRAIN] done: best mIoU {result.best_miou:.4f} at iter {result.best_iter}, "
              f"model in {Path(args.save_dir) / checkpoint.BEST_DIR}")
    else:
        print(f"[TRAIN] done: {result.iterations} iterations, checkpoints in {args.save_dir}")
    return 0
