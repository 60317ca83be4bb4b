"""Optimizer and learning-rate schedule from a PaddleSeg-style config (PaddleSeg semantics).

Optimizers (`optimizer:`) and schedules (`lr_scheduler:`, and the legacy `learning_rate.decay:`)
are registered factories; `build_optimizer` and `learning_rate_curve` build them from a config
with the one key check of `humanseg.registry`, errors naming the key path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from humanseg.errors import KeyPath, SpecError
from humanseg.registry import Registry

# Paddle's names in any case (`Adam`, `adamw`, `Momentum`); only the exact `SGD` is plain SGD.
OPTIMIZERS = Registry("optimizer", case_insensitive=True)
SCHEDULERS = Registry("lr_scheduler")
DECAYS = Registry("learning_rate decay")  # the legacy `learning_rate: {value, decay}` form
OPTIMIZER_PATH: KeyPath = ("optimizer",)


def _sgd(parameters: list[torch.nn.Parameter], learning_rate: float, momentum: float,
         weight_decay: float | None, use_nesterov: bool) -> torch.optim.SGD:
    """torch's SGD with Paddle's key names."""
    return torch.optim.SGD(parameters, lr=learning_rate, momentum=float(momentum),
                           weight_decay=float(weight_decay or 0.0), nesterov=bool(use_nesterov))


@OPTIMIZERS.register(name="sgd")
def momentum(parameters: list[torch.nn.Parameter], learning_rate: float, momentum: float = 0.9,
             weight_decay: float | None = 0.0, use_nesterov: bool = False) -> torch.optim.SGD:
    """Paddle's Momentum, which PaddleSeg calls `sgd` (momentum 0.9 unless given).

    Args:
        momentum: the momentum factor.
        weight_decay: L2 penalty (None or 0: none).
        use_nesterov: Nesterov momentum.
    """
    return _sgd(parameters, learning_rate, momentum, weight_decay, use_nesterov)


OPTIMIZERS.register(momentum, name="momentum")


@OPTIMIZERS.register(name="SGD")
def plain_sgd(parameters: list[torch.nn.Parameter], learning_rate: float, momentum: float = 0.0,
              weight_decay: float | None = 0.0, use_nesterov: bool = False) -> torch.optim.SGD:
    """Paddle's class name `SGD`: plain SGD (momentum 0 unless given); keys as `sgd`."""
    return _sgd(parameters, learning_rate, momentum, weight_decay, use_nesterov)


def _adam(optimizer_class: type[torch.optim.Optimizer], parameters: list[torch.nn.Parameter],
          learning_rate: float, beta1: float, beta2: float, epsilon: float,
          weight_decay: float | None) -> torch.optim.Optimizer:
    """torch's Adam or AdamW with Paddle's key names."""
    return optimizer_class(parameters, lr=learning_rate, betas=(float(beta1), float(beta2)),
                           eps=float(epsilon), weight_decay=float(weight_decay or 0.0))


@OPTIMIZERS.register(name="adam")
def adam(parameters: list[torch.nn.Parameter], learning_rate: float, beta1: float = 0.9,
         beta2: float = 0.999, epsilon: float = 1e-8,
         weight_decay: float | None = 0.0) -> torch.optim.Optimizer:
    """Adam with L2 weight decay.

    Args:
        beta1, beta2: decay rates of the moment estimates.
        epsilon: added to the denominator.
        weight_decay: L2 penalty (None or 0: none).
    """
    return _adam(torch.optim.Adam, parameters, learning_rate, beta1, beta2, epsilon, weight_decay)


@OPTIMIZERS.register(name="adamw")
def adamw(parameters: list[torch.nn.Parameter], learning_rate: float, beta1: float = 0.9,
          beta2: float = 0.999, epsilon: float = 1e-8,
          weight_decay: float | None = 0.01) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay, 0.01 unless given); keys as `adam`."""
    return _adam(torch.optim.AdamW, parameters, learning_rate, beta1, beta2, epsilon,
                 weight_decay)


def build_optimizer(
    spec: Any, parameters: Iterable[torch.nn.Parameter], learning_rate: float,
    path: KeyPath = OPTIMIZER_PATH,
) -> torch.optim.Optimizer:
    """The optimizer of a config's `optimizer:` section (type `sgd` when none is named) over the
    parameters that need gradient, at `learning_rate`; SpecError at the bad key."""
    if not isinstance(spec, Mapping):
        raise SpecError(path, f"must be a mapping, got {spec!r}")
    params = [p for p in parameters if p.requires_grad]
    return OPTIMIZERS.build({"type": "sgd", **spec}, path, parameters=params,
                            learning_rate=learning_rate)


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


@SCHEDULERS.register(name="PolynomialDecay")
def polynomial_decay(
    total_iters: int, learning_rate: float, end_lr: float = 0.0, power: float = 0.9,
    decay_steps: int | None = None, cycle: bool = False, warmup_iters: int = 0,
    warmup_start_lr: float = 0.0,
) -> LearningRateCurve:
    """Paddle's PolynomialDecay with PaddleSeg's defaults (its Config sets them over Paddle's
    end_lr 1e-4, power 1), after an optional linear warmup.

    Args:
        learning_rate: the base rate (`--learning_rate` replaces it).
        end_lr, power: the rate falls as (base - end_lr) * (1 - progress) ** power + end_lr.
        decay_steps: iterations of the decay (default: those after warmup).
        cycle: restart the decay at each multiple of decay_steps.
        warmup_iters, warmup_start_lr: linear warmup from warmup_start_lr to the base rate.
    """
    return LearningRateCurve(
        float(learning_rate), total_iters, "poly_cycle" if cycle else "poly", power=power,
        end_lr=end_lr, warmup_iters=warmup_iters, warmup_start_lr=warmup_start_lr,
        decay_steps=decay_steps,
    )


@SCHEDULERS.register(name="CosineAnnealingDecay")
def cosine_annealing_decay(
    total_iters: int, learning_rate: float, eta_min: float = 0.0, T_max: int | None = None,
    warmup_iters: int = 0, warmup_start_lr: float = 0.0,
) -> LearningRateCurve:
    """Cosine from the base rate down to `eta_min` over `T_max` iterations (default: those after
    warmup); warmup keys as PolynomialDecay's."""
    return LearningRateCurve(
        float(learning_rate), total_iters, "cosine", end_lr=eta_min, warmup_iters=warmup_iters,
        warmup_start_lr=warmup_start_lr, decay_steps=T_max,
    )


@DECAYS.register(name="poly")
def legacy_poly(total_iters: int, learning_rate: float, power: float = 0.9,
                end_lr: float = 0.0) -> LearningRateCurve:
    """The legacy `learning_rate: {value, decay: {type: poly, power, end_lr}}` form."""
    return LearningRateCurve(float(learning_rate), total_iters, "poly", power=power,
                             end_lr=end_lr)


@DECAYS.register(name="constant")
def legacy_constant(total_iters: int, learning_rate: float) -> LearningRateCurve:
    """The legacy form without decay: the base rate throughout."""
    return LearningRateCurve(float(learning_rate), total_iters, "constant")


def _base_rate(value: Any, override_lr: float | None, path: KeyPath) -> float:
    """The configured base rate, or the command line's when given."""
    if override_lr is not None:
        return float(override_lr)
    if value is None:
        raise SpecError(path, "missing (or pass --learning_rate)")
    return value


def learning_rate_curve(
    cfg: Mapping[str, Any], total_iters: int, override_lr: float | None = None
) -> LearningRateCurve:
    """The curve of `lr_scheduler:` (or the legacy `learning_rate:` form) in a whole config."""
    scheduler = cfg.get("lr_scheduler")
    if scheduler is not None:
        if not isinstance(scheduler, Mapping):
            raise SpecError(("lr_scheduler",), f"must be a mapping, got {scheduler!r}")
        spec = {"type": "PolynomialDecay", **scheduler}
        if SCHEDULERS.resolve(spec["type"]) is not None:  # else the build names the bad type
            spec["learning_rate"] = _base_rate(
                spec.get("learning_rate"), override_lr, ("lr_scheduler", "learning_rate"))
        return SCHEDULERS.build(spec, ("lr_scheduler",), total_iters=total_iters)
    legacy = cfg.get("learning_rate")
    if isinstance(legacy, Mapping):
        base_lr = _base_rate(legacy.get("value"), override_lr, ("learning_rate", "value"))
        decay = legacy.get("decay") or {"type": "constant"}
        return DECAYS.build(decay, ("learning_rate", "decay"), total_iters=total_iters,
                            learning_rate=base_lr)
    if override_lr is not None or isinstance(legacy, int | float):
        return LearningRateCurve(float(override_lr or legacy), total_iters, "constant")
    raise SpecError(("lr_scheduler",), "missing (the config has no lr_scheduler or "
                                       "learning_rate section)")


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
