"""`train()`: iteration-based training with eval, checkpoints and exact resume.

One loop serves a single process and `torchrun` (DDP): every rank runs it on its slice of each
global batch, and only rank 0 writes checkpoints, TensorBoard scalars and the progress bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from humanseg.builder import train_normalisation
from humanseg.engine import checkpoint
from humanseg.engine.distill import TERM_NAME as TEACHER_TERM
from humanseg.engine.distill import Teacher
from humanseg.engine.distributed import (
    DistContext,
    broadcast_object,
    init_distributed,
    mean_across_ranks,
    shutdown_distributed,
)
from humanseg.engine.evaluate import evaluate, format_metrics
from humanseg.engine.runtime import autocast, check_precision
from humanseg.engine.sampling import SeededSamples, ShuffledBatches
from humanseg.errors import HumanSegError
from humanseg.optim import build_optimizer, build_scheduler, learning_rate_curve
from humanseg.registry import whole_number

TENSORBOARD_DIR = "tensorboard"
DEFAULT_SAVE_INTERVAL = 1000  # when neither --save_interval nor the config's save_interval is set


@dataclass
class TrainOptions:
    """Command-line overrides and engine settings (None: take the value from the config)."""

    iters: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    resume_model: str | None = None
    save_interval: int | None = None
    log_iters: int = 10
    num_workers: int = 0
    seed: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    keep_checkpoint_max: int = 5
    do_eval: bool = False
    use_vdl: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class TrainResult:
    """What a run did: the trained model, logged losses, evaluations and the best score."""

    save_dir: Path
    iterations: int
    seed: int
    model: torch.nn.Module
    losses: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_miou: float | None = None
    best_iter: int | None = None


def _options(options: dict[str, Any]) -> TrainOptions:
    """Build TrainOptions, naming any option `train()` does not know."""
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise HumanSegError(f"train(): unknown option(s) {', '.join(unknown)}")
    return TrainOptions(**options)


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so model initialisation is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Trainer:
    """The state of one training run, split into the steps of the loop."""

    def __init__(self, cfg: dict[str, Any], save_dir: Path, opts: TrainOptions,
                 context: DistContext) -> None:
        """Build model, loss, data, optimizer and schedule; restore them when resuming."""
        from humanseg.builder import check_num_classes
        from humanseg.data import build_dataset
        from humanseg.losses import build_loss_from_config
        from humanseg.models import build_model, load_model_file

        for section in ("model", "loss", "train_dataset"):
            if section not in cfg:
                raise HumanSegError(f"config has no {section} section")
        if opts.do_eval and "val_dataset" not in cfg:
            raise HumanSegError("--do_eval: config has no val_dataset section")
        self.cfg, self.save_dir, self.opts, self.context = cfg, save_dir, opts, context
        self.device = context.device
        check_precision(opts.precision, self.device)
        self.iters = whole_number(opts.iters or cfg.get("iters") or 0, ("iters",))
        self.batch_size = whole_number(opts.batch_size or cfg.get("batch_size") or 0,
                                       ("batch_size",))
        interval = opts.save_interval  # the command line wins over the config
        if interval is None:
            interval = cfg.get("save_interval", DEFAULT_SAVE_INTERVAL)
        self.save_interval = whole_number(interval, ("save_interval",))
        self.log_iters = whole_number(opts.log_iters, ("log_iters",))

        resume_dir = checkpoint.resolve_resume_dir(opts.resume_model) if opts.resume_model else None
        state = checkpoint.load_train_state(resume_dir) if resume_dir else None
        seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        self.seed = int(state["seed"]) if state else broadcast_object(context, seed)
        _seed_everything(self.seed)

        self.model = build_model(cfg["model"])
        self.num_classes = check_num_classes(cfg, self.model)
        if resume_dir:
            load_model_file(self.model, resume_dir / checkpoint.MODEL_FILE)
        self.model.to(self.device).train()
        self.loss = build_loss_from_config(cfg["loss"]).to(self.device)
        self.ignore_index = int(cfg["train_dataset"].get("ignore_index", 255))
        self.train_dataset = build_dataset(cfg["train_dataset"], ("train_dataset",))
        # After the dataset, whose build has checked the transforms (Normalize among them).
        self.teacher = Teacher(
            cfg["teacher"], cfg["model"], self.device,
            train_normalisation(cfg["train_dataset"].get("transforms")),
        ) if "teacher" in cfg else None
        self.val_dataset = (build_dataset(cfg["val_dataset"], ("val_dataset",)) if opts.do_eval
                            else None)

        curve = learning_rate_curve(cfg, self.iters, opts.learning_rate)
        self.optimizer = build_optimizer(
            cfg.get("optimizer") or {"type": "sgd"}, self.model.parameters(), curve.base_lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=opts.precision == "fp16")
        self.start_iter = 0
        self.best_miou: float | None = None
        self.best_iter: int | None = None
        if state:
            self._restore(state, resume_dir)
        # Built after restoring, at the resumed iteration, for this run's iters and learning rate.
        self.scheduler = build_scheduler(self.optimizer, curve, self.start_iter)

        self.network: torch.nn.Module = self.model
        if context.is_distributed:
            if self.device.type == "cuda":
                self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.network, device_ids=device_ids)

    def _restore(self, state: dict[str, Any], resume_dir: Path) -> None:
        """Load optimizer, scaler, iteration, best score and RNG states (not the schedule)."""
        self.start_iter = int(state["iteration"])
        if self.start_iter >= self.iters:
            raise HumanSegError(f"--resume_model {resume_dir}: checkpoint is at iteration "
                                f"{self.start_iter}, not below --iters {self.iters}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise HumanSegError(f"--resume_model {resume_dir}: optimizer state does not fit "
                                f"this config ({error})") from None
        self.best_miou, self.best_iter = state.get("best_miou"), state.get("best_iter")
        checkpoint.restore_rng_state(state["rng"])

    def _loader(self) -> DataLoader:
        """Endless, resumable batches for this rank (data order fixed by seed and iteration)."""
        sampler = ShuffledBatches(
            len(self.train_dataset), self.batch_size, self.seed, self.context.rank,
            self.context.world_size, start_iteration=self.start_iter,
        )
        return DataLoader(
            SeededSamples(self.train_dataset), batch_sampler=sampler,
            num_workers=self.opts.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the loss terms (detached) and the total."""
        # The teacher sees `images`; with `teacher.grey_student` the student sees some in grey.
        student_images = images if self.teacher is None else self.teacher.student_view(images)
        with autocast(self.device, self.opts.precision):
            logits = self.network(student_images)
        total, terms = self.loss(logits.float(), labels)
        if self.teacher is not None:
            terms[TEACHER_TERM] = self.teacher.loss(logits, images, labels != self.ignore_index)
            total = total + self.teacher.coef * terms[TEACHER_TERM]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": total.detach(), **{name: value.detach() for name, value in terms.items()}}

    def _state(self, iteration: int) -> dict[str, Any]:
        """Everything besides the weights that resuming at `iteration` needs."""
        return {
            "iteration": iteration, "seed": self.seed,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": checkpoint.capture_rng_state(),
            "best_miou": self.best_miou, "best_iter": self.best_iter,
        }

    def _model_state(self) -> dict[str, torch.Tensor]:
        """The plain state_dict on the CPU (what a model file holds)."""
        return {name: value.detach().cpu() for name, value in self.model.state_dict().items()}

    def _evaluate_and_save(self, iteration: int, result: TrainResult, writer: Any) -> None:
        """Evaluate (all ranks), then let rank 0 write best model and checkpoint."""
        if self.val_dataset is not None:
            metrics = evaluate(
                self.model, self.val_dataset, self.num_classes, context=self.context,
                ignore_index=int(self.cfg["val_dataset"].get("ignore_index", 255)),
                precision=self.opts.precision,
            )
            result.evaluations.append({"iter": iteration, **metrics})
            improved = self.best_miou is None or metrics["miou"] > self.best_miou
            if improved:
                self.best_miou, self.best_iter = float(metrics["miou"]), iteration
            if self.context.is_main:
                tqdm.write(format_metrics(metrics))
                if improved:
                    checkpoint.save_best_model(self.save_dir, self._model_state(),
                                               {"iter": iteration, **metrics})
                tqdm.write(f"[EVAL] best mIoU {self.best_miou:.4f} at iter {self.best_iter}")
                if writer is not None:
                    for name in ("miou", "acc", "kappa", "dice", "connectivity"):
                        writer.add_scalar(f"Evaluate/{name}", metrics[name], iteration)
        if self.context.is_main:
            checkpoint.save_checkpoint(self.save_dir, iteration, self._model_state(),
                                       self._state(iteration), self.opts.keep_checkpoint_max)

    def _log_line(self, iteration: int, lr: float, logged: dict[str, float],
                  started: float) -> str:
        """PaddleSeg-style progress line (for logs written to a file), with the ETA."""
        seconds_per_iter = (time.monotonic() - started) / (iteration - self.start_iter)
        eta = int(seconds_per_iter * (self.iters - iteration))
        terms = " ".join(f"{name}={value:.4f}" for name, value in logged.items() if name != "loss")
        return (f"[TRAIN] iter {iteration}/{self.iters} loss {logged['loss']:.4f} ({terms}) "
                f"lr {lr:.6f} {seconds_per_iter:.3f}s/it ETA {eta // 3600:d}:"
                f"{eta % 3600 // 60:02d}:{eta % 60:02d}")

    def run(self) -> TrainResult:
        """The training loop from the start (or resumed) iteration to `iters`."""
        result = TrainResult(self.save_dir, self.iters, self.seed, self.model)
        main = self.context.is_main
        writer = None
        if main and self.opts.use_vdl:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.save_dir / TENSORBOARD_DIR),
                                   purge_step=self.start_iter + 1)
        # disable=None: the bar shows on a terminal only; log files get the [TRAIN] lines.
        bar = tqdm(total=self.iters, initial=self.start_iter, unit="it", dynamic_ncols=True,
                   disable=None if main and self.opts.progress else True, file=sys.stderr)
        window: dict[str, torch.Tensor] = {}
        window_steps = 0
        started = time.monotonic()
        try:
            batches = iter(self._loader())
            for iteration in range(self.start_iter + 1, self.iters + 1):
                images, labels = next(batches)
                images = images.to(self.device, non_blocking=True).float()
                labels = labels.to(self.device, non_blocking=True).long()
                lr = self.optimizer.param_groups[0]["lr"]
                for name, value in self._step(images, labels).items():
                    window[name] = window.get(name, 0.0) + value.float()  # stays on the device
                window_steps += 1
                bar.update(1)
                if iteration % self.log_iters == 0 or iteration == self.iters:
                    names = sorted(window)
                    means = mean_across_ranks(
                        self.context, torch.stack([window[name] for name in names]) / window_steps)
                    logged = {name: float(value) for name, value in zip(names, means, strict=True)}
                    if not np.isfinite(logged["loss"]):
                        raise HumanSegError(
                            f"loss became {logged['loss']} by iteration {iteration}; lower the "
                            "learning rate or check the labels")
                    result.losses.append({"iter": iteration, "lr": lr, **logged})
                    bar.set_postfix(loss=f"{logged['loss']:.4f}", lr=f"{lr:.2e}")
                    if main:
                        tqdm.write(self._log_line(iteration, lr, logged, started))
                    if writer is not None:
                        for name, value in logged.items():
                            writer.add_scalar(f"Train/{name}", value, iteration)
                        writer.add_scalar("Train/lr", lr, iteration)
                    window, window_steps = {}, 0
                if iteration % self.save_interval == 0 or iteration == self.iters:
                    self._evaluate_and_save(iteration, result, writer)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        result.best_miou, result.best_iter = self.best_miou, self.best_iter
        return result


def _is_run_output(name: str) -> bool:
    """A save_dir entry that training writes: iter_N, best_model, tensorboard."""
    return bool(checkpoint.ITER_DIR.match(name)) or name in (checkpoint.BEST_DIR, TENSORBOARD_DIR)


def _clear_previous_run(save_dir: Path, opts: TrainOptions) -> None:
    """Refuse a save_dir holding another run's checkpoints, best model or TensorBoard logs
    unless resuming; with `overwrite`, delete them. Other files (the default `output/` also
    holds predict and demo results) neither block a run nor go."""
    previous = sorted(p.name for p in save_dir.iterdir() if _is_run_output(p.name))
    if not previous or opts.resume_model:
        return
    if not opts.overwrite:
        shown = ", ".join(previous[:3]) + (", ..." if len(previous) > 3 else "")
        raise HumanSegError(
            f"{save_dir}: holds another run's outputs ({shown}); a new run there would mix its "
            "checkpoints with these. Give --resume_model to continue a run, --overwrite to "
            "replace its checkpoints, or another --save_dir")
    for name in previous:
        shutil.rmtree(save_dir / name)


@contextlib.contextmanager
def _claim_save_dir(save_dir: Path, opts: TrainOptions, context: DistContext) -> Iterator[None]:
    """Rank 0 locks `save_dir` and checks it is free for this run; every rank gets the verdict."""
    with contextlib.ExitStack() as held:
        problem = None
        if context.is_main:
            try:
                held.enter_context(checkpoint.locked_save_dir(save_dir))
                _clear_previous_run(save_dir, opts)
            except HumanSegError as error:
                problem = str(error)
        problem = broadcast_object(context, problem)
        if problem is not None:
            raise HumanSegError(problem)
        yield


def train(cfg: dict[str, Any], save_dir: str | Path, **options: Any) -> TrainResult:
    """Train from a loaded config into `save_dir`; options are TrainOptions' fields. The
    save_dir is locked while the run lasts and must be empty unless resuming or overwriting."""
    opts = _options(options)
    context = init_distributed(opts.device)
    try:
        with _claim_save_dir(Path(save_dir), opts, context):
            return _Trainer(cfg, Path(save_dir), opts, context).run()
    finally:
        shutdown_distributed(context)
