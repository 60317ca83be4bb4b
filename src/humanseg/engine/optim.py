"""Optimizer and learning-rate schedule from a PaddleSeg-style config (PaddleSeg semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from humanseg.errors import HumanSegError

SGD_NAMES = {"sgd", "momentum"}
ADAM_NAMES = {"adam"}
ADAMW_NAMES = {"adamw"}


def _take(spec: dict, allowed: dict[str, Any], where: str) -> dict[str, Any]:
    """Merge `spec` over `allowed` defaults; any key outside `allowed` (and `type`) is an error."""
    unknown = sorted(set(spec) - set(allowed) - {"type"})
    if unknown:
        raise HumanSegError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return {key: spec.get(key, default) for key, default in allowed.items()}


def build_optimizer(
    spec: dict, parameters: Iterable[torch.nn.Parameter], learning_rate: float
) -> torch.optim.Optimizer:
    """SGD (momentum), Adam or AdamW from a config's `optimizer:` section at `learning_rate`.

    As in PaddleSeg, `sgd` is Paddle's Momentum (momentum 0.9 unless given); only the exact
    Paddle class name `SGD` means plain SGD (momentum 0 unless given).
    """
    name = str(spec.get("type", "sgd"))
    kind = name.lower()
    params = [p for p in parameters if p.requires_grad]
    if kind in SGD_NAMES:
        opts = _take(
            spec,
            {"momentum": 0.0 if name == "SGD" else 0.9, "weight_decay": 0.0,
             "use_nesterov": False},
            "optimizer",
        )
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=float(opts["momentum"]),
            weight_decay=float(opts["weight_decay"] or 0.0),
            nesterov=bool(opts["use_nesterov"]),
        )
    if kind in ADAM_NAMES | ADAMW_NAMES:
        default_decay = 0.01 if kind in ADAMW_NAMES else 0.0
        opts = _take(
            spec,
            {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": default_decay},
            "optimizer",
        )
        optimizer_class = torch.optim.AdamW if kind in ADAMW_NAMES else torch.optim.Adam
        return optimizer_class(
            params, lr=learning_rate, betas=(float(opts["beta1"]), float(opts["beta2"])),
            eps=float(opts["epsilon"]), weight_decay=float(opts["weight_decay"] or 0.0),
        )
    raise HumanSegError(f"optimizer.type: unknown optimizer {spec.get('type')!r} "
                        "(expected sgd, momentum, adam or adamw)")


class LearningRateCurve:
    """Learning rate as a function of the 0-based iteration: linear warmup, then a decay.

    Kinds: `poly` (Paddle's PolynomialDecay), `poly_cycle` (its cycle=True), `cosine`, `constant`.

    A plain object (not a closure) so that LambdaLR's state_dict can save and restore it.
    """

    def __init__(
        self, base_lr: float, total_iters: int, kind: str = "poly", *, power: float = 0.9,
        end_lr: float = 0.0, warmup_iters: int = 0, warmup_start_lr: float = 0.0,
        decay_steps: int | None = None,
    ) -> None:
        """Store the curve's parameters; `decay_steps` defaults to iterations after warmup."""
        self.base_lr = float(base_lr)
        self.kind = kind
        self.power = float(power)
        self.end_lr = float(end_lr)
        self.warmup_iters = int(warmup_iters)
        self.warmup_start_lr = float(warmup_start_lr)
        self.decay_steps = max(1, int(decay_steps or total_iters - self.warmup_iters))

    def learning_rate(self, step: int) -> float:
        """The learning rate used for the update of 0-based iteration `step`."""
        if step < self.warmup_iters:
            fraction = step / self.warmup_iters
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * fraction
        decay_step = step - self.warmup_iters
        if self.kind == "poly_cycle":  # Paddle's cycle=True: restart at each decay_steps multiple
            period = self.decay_steps * max(1, math.ceil(decay_step / self.decay_steps))
            progress = decay_step / period
        else:
            progress = min(decay_step, self.decay_steps) / self.decay_steps
        if self.kind == "cosine":
            cosine = (1 + math.cos(math.pi * progress)) / 2
            return self.end_lr + (self.base_lr - self.end_lr) * cosine
        if self.kind == "constant":
            return self.base_lr
        return (self.base_lr - self.end_lr) * (1 - progress) ** self.power + self.end_lr

    def __call__(self, step: int) -> float:
        """LambdaLR's multiplicative factor: the curve divided by the base rate."""
        return self.learning_rate(step) / self.base_lr if self.base_lr else 0.0


def learning_rate_curve(
    cfg: dict, total_iters: int, override_lr: float | None = None
) -> LearningRateCurve:
    """The curve of `lr_scheduler:` (or the legacy `learning_rate:` form) in a whole config."""
    scheduler = cfg.get("lr_scheduler")
    if scheduler is not None:
        kind_name = str(scheduler.get("type", "PolynomialDecay"))
        kinds = {"PolynomialDecay": "poly", "CosineAnnealingDecay": "cosine"}
        if kind_name not in kinds:
            raise HumanSegError(f"lr_scheduler.type: unknown scheduler {kind_name!r} "
                                f"(expected {' or '.join(kinds)})")
        kind = kinds[kind_name]
        allowed = {"learning_rate": None, "warmup_iters": 0, "warmup_start_lr": 0.0}
        if kind == "poly":
            # PaddleSeg's defaults (its Config sets them over Paddle's end_lr 1e-4, power 1)
            allowed |= {"end_lr": 0.0, "power": 0.9, "decay_steps": None, "cycle": False}
        else:
            allowed |= {"eta_min": 0.0, "T_max": None}
        opts = _take(scheduler, allowed, "lr_scheduler")
        base_lr = override_lr if override_lr is not None else opts["learning_rate"]
        if base_lr is None:
            raise HumanSegError("lr_scheduler.learning_rate: missing (or pass --learning_rate)")
        if kind == "poly":
            return LearningRateCurve(
                float(base_lr), total_iters, "poly_cycle" if opts["cycle"] else "poly",
                power=opts["power"], end_lr=opts["end_lr"],
                warmup_iters=opts["warmup_iters"], warmup_start_lr=opts["warmup_start_lr"],
                decay_steps=opts["decay_steps"],
            )
        return LearningRateCurve(
            float(base_lr), total_iters, "cosine", end_lr=opts["eta_min"],
            warmup_iters=opts["warmup_iters"], warmup_start_lr=opts["warmup_start_lr"],
            decay_steps=opts["T_max"],
        )
    legacy = cfg.get("learning_rate")
    if isinstance(legacy, dict):
        base_lr = override_lr if override_lr is not None else legacy.get("value")
        if base_lr is None:
            raise HumanSegError("learning_rate.value: missing (or pass --learning_rate)")
        decay = legacy.get("decay") or {"type": "constant"}
        kind = {"poly": "poly", "constant": "constant"}.get(str(decay.get("type")))
        if kind is None:
            raise HumanSegError(f"learning_rate.decay.type: unknown decay {decay.get('type')!r} "
                                "(expected poly)")
        opts = _take(decay, {"power": 0.9, "end_lr": 0.0}, "learning_rate.decay")
        return LearningRateCurve(float(base_lr), total_iters, kind, power=opts["power"],
                                 end_lr=opts["end_lr"])
    if override_lr is not None or isinstance(legacy, (int, float)):
        return LearningRateCurve(float(override_lr or legacy), total_iters, "constant")
    raise HumanSegError("config has no lr_scheduler (or learning_rate) section")


def build_scheduler(
    optimizer: torch.optim.Optimizer, curve: LearningRateCurve, start_iteration: int = 0
) -> LambdaLR:
    """A LambdaLR stepped once per iteration that follows `curve` exactly from `start_iteration`.

    Resuming rebuilds the schedule this way (as PaddleSeg does) rather than loading the saved
    one, so a new total of iterations or base rate takes effect at the resumed position.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = curve.base_lr  # the base the curve's factors multiply
    return LambdaLR(optimizer, lr_lambda=curve, last_epoch=start_iteration - 1)
