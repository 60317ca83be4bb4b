"""Load, check, build: a config read and merged by `humanseg.config`, then checked by building its
sections with the builders training uses (the registries of `humanseg.registry`), so the check
and the run cannot disagree. Every problem names the file that set the key, then its key path.

This module sits above data, models, losses and optim. The training-only builders are imported
when a full check runs, so `load_config(path, inference=True)` (prediction: the top level,
class counts, the val and export transforms) imports neither torch nor albumentations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humanseg.config import DATASET_SECTIONS, TOP_LEVEL_KEYS, blame, read_config
from humanseg.data.inference import Normalize, build_inference_transforms, normalize
from humanseg.errors import KeyPath, SpecError, format_key
from humanseg.registry import check_keys, whole_number

MODEL_PATH: KeyPath = ("model",)
TEACHER_PATH: KeyPath = ("teacher",)
TEACHER_KEYS = frozenset(
    {"model_path", "model", "coef", "temperature", "flip", "input_size", "skip_grey",
     "grey_student"})


def load_config(path: str | os.PathLike, inference: bool = False) -> dict[str, Any]:
    """Load a config with its `_base_` chain, deep-merged and checked (`validate_config`); a bad
    key raises one HumanSegError `FILE: key.path: what is wrong`."""
    cfg, origins = read_config(path)
    try:
        validate_config(cfg, inference)
    except SpecError as error:
        raise blame(error, origins, Path(path)) from None
    return cfg


def validate_config(cfg: dict[str, Any], inference: bool = False) -> None:
    """Check the top level and every section by building it (datasets: type, keys and
    transforms, not their files; the model on the meta device, without weights); raise
    SpecError. With `inference`, only what prediction reads: the top level, class counts, the
    val and export transforms."""
    check_keys(cfg, TOP_LEVEL_KEYS, ())
    for key in ("batch_size", "iters"):
        if cfg.get(key) is not None:
            whole_number(cfg[key], (key,))
    check_num_classes(cfg)
    if inference:
        val = cfg.get("val_dataset")
        if isinstance(val, dict) and "transforms" in val:
            build_inference_transforms(val["transforms"], ("val_dataset", "transforms"))
    else:
        _check_training_sections(cfg)
    export = cfg.get("export")
    if export is not None:
        if not isinstance(export, dict):
            raise SpecError(("export",), "must be a mapping with `transforms`")
        check_keys(export, {"transforms"}, ("export",))
        build_inference_transforms(export.get("transforms", []), ("export", "transforms"))


def _check_training_sections(cfg: dict[str, Any]) -> None:
    """Datasets, model, loss, optimizer and schedule, each by its builder."""
    from humanseg.data import check_dataset_spec
    from humanseg.losses import build_loss_from_config

    for section in DATASET_SECTIONS:
        if section in cfg:
            check_dataset_spec(cfg[section], (section,))
    if "model" in cfg:
        check_model(cfg["model"])
    if "loss" in cfg:
        build_loss_from_config(cfg["loss"])
    if "teacher" in cfg:
        train = cfg.get("train_dataset")
        transforms = train.get("transforms") if isinstance(train, dict) else None
        settings = teacher_settings(cfg["teacher"], train_normalisation(transforms) is not None)
        if settings.model:  # empty or absent: the student's model section
            check_model(settings.model, (*TEACHER_PATH, "model"))
    check_optimization(cfg)


@dataclass(frozen=True)
class TeacherSettings:
    """The checked `teacher:` section of a training config (what each key means:
    `humanseg.engine.distill`, which builds the teacher from it)."""

    model_path: str
    model: dict[str, Any] | None = None  # None: the student's model section
    coef: float = 1.0
    temperature: float = 1.0
    flip: bool = False
    skip_grey: bool = False
    grey_student: float = 0.0
    input_hw: tuple[int, int] | None = None  # (height, width) the teacher sees; None: as given


def teacher_settings(spec: Any, has_normalisation: bool) -> TeacherSettings:
    """Check a `teacher:` section; `has_normalisation`: whether the train transforms end in a
    `Normalize` (which `grey_student` needs to grey normalised samples). Raise SpecError."""
    if not isinstance(spec, Mapping):
        raise SpecError(TEACHER_PATH, f"must be a mapping, got {spec!r}")
    check_keys(spec, TEACHER_KEYS, TEACHER_PATH)
    if "model_path" not in spec:
        raise SpecError((*TEACHER_PATH, "model_path"), "the teacher's weights are required")
    model = spec.get("model")
    if model is not None and not isinstance(model, Mapping):
        raise SpecError((*TEACHER_PATH, "model"), f"must be a model section, got {model!r}")
    grey_student = spec.get("grey_student", 0.0)
    if not _is_number(grey_student) or not 0.0 <= grey_student <= 1.0:
        raise SpecError((*TEACHER_PATH, "grey_student"),
                        f"must be a number in [0, 1], got {grey_student!r}")
    if grey_student > 0 and not has_normalisation:
        raise SpecError((*TEACHER_PATH, "grey_student"),
                        "the train transforms need a Normalize to grey normalised samples")
    size = spec.get("input_size")
    if size is not None and (not isinstance(size, list | tuple) or len(size) != 2
                             or not all(isinstance(v, int) and v > 0 for v in size)):
        raise SpecError((*TEACHER_PATH, "input_size"), f"must be [width, height], got {size!r}")
    return TeacherSettings(
        model_path=str(spec["model_path"]),
        model=None if model is None else dict(model),
        coef=_positive_number(spec, "coef"),
        temperature=_positive_number(spec, "temperature"),
        flip=bool(spec.get("flip", False)),
        skip_grey=bool(spec.get("skip_grey", False)),
        grey_student=float(grey_student),
        input_hw=None if size is None else (int(size[1]), int(size[0])),
    )


def _is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return not isinstance(value, bool) and isinstance(value, int | float)


def _positive_number(spec: Mapping[str, Any], key: str) -> float:
    """A number > 0 from the teacher section (default 1), else a SpecError naming the key."""
    value = spec.get(key, 1.0)
    if not _is_number(value) or value <= 0:
        raise SpecError((*TEACHER_PATH, key), f"must be a number > 0, got {value!r}")
    return float(value)


def train_normalisation(transforms: Any) -> Normalize | None:
    """The `Normalize` of a train transform list (the last one), or None when it has none."""
    specs = [spec for spec in transforms or [] if isinstance(spec, Mapping)
             and spec.get("type") == "Normalize"]
    if not specs:
        return None
    return normalize(**{key: value for key, value in specs[-1].items() if key != "type"})


def check_model(spec: Any, path: KeyPath = MODEL_PATH) -> None:
    """Build a `model:` spec on the meta device: every type, key and value is checked by the
    constructors themselves, in no memory and without loading `pretrained` weights."""
    import torch

    from humanseg.models import MODELS

    with torch.device("meta"):
        MODELS.build(spec, path)


def check_optimization(cfg: dict[str, Any]) -> None:
    """Optimizer and schedule, built as training builds them (on a one-number probe)."""
    import torch

    from humanseg.optim import build_optimizer, learning_rate_curve

    legacy = cfg.get("learning_rate")
    if legacy is not None and (isinstance(legacy, bool) or not isinstance(legacy, dict | int
                                                                         | float)):
        raise SpecError(("learning_rate",), f"must be a number or a mapping, got {legacy!r}")
    if "optimizer" in cfg:
        build_optimizer(cfg["optimizer"], [torch.nn.Parameter(torch.zeros(1))], 0.01)
    if "lr_scheduler" in cfg or isinstance(legacy, dict):
        learning_rate_curve(cfg, total_iters=int(cfg.get("iters") or 1))


def check_num_classes(cfg: dict[str, Any], model: Any = None) -> int | None:
    """The one class-count check: the built `model` (when given), the `model` section and every
    dataset must agree on `num_classes` (PaddleSeg checks this too); returns the count, or None
    when nothing names one. Raise SpecError at the first that differs."""
    found: list[tuple[KeyPath, Any]] = []
    if model is not None:
        found.append((("model", "num_classes"), int(model.num_classes)))
    for section in ("model", *DATASET_SECTIONS):
        if isinstance(cfg.get(section), dict) and "num_classes" in cfg[section]:
            found.append(((section, "num_classes"), cfg[section]["num_classes"]))
    for path, value in found[1:]:
        if value != found[0][1]:
            raise SpecError(path, f"{value} differs from {format_key(found[0][0])} {found[0][1]}")
    return found[0][1] if found else None
