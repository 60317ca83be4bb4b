"""The Python API: `load_predictor(...)` and `segment(image)`, re-exported as `humanseg.*`.

`load_predictor` builds the engine's backend-neutral `Predictor` on PyTorch or onnxruntime (the
one place that chooses a backend; the CLI verbs and the HTTP service call it too) and wraps it
in a `Segmenter`, whose call on a photo gives a `SegmentResult` (mask, alpha, cut-out, background
replaced or blurred). Neither torch nor albumentations is imported until a torch model is loaded:
with onnxruntime (the default backend for the packaged model, shipped as ONNX too, and for ONNX
files) torch is never imported; a `.pt` model on onnxruntime imports it once, to export.
"""

from __future__ import annotations

import inspect
import os
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from humanseg.data.inference import build_inference_transforms
from humanseg.deploy.compose import Background, compose, parse_background, rgba_cutout
from humanseg.engine.predict import Forward, Prediction, Predictor, TorchForward
from humanseg.engine.runtime import (
    BACKENDS,
    DEVICES,
    PRECISIONS,
    check_precision,
    load_inference_model,
    resolve_device,
)
from humanseg.errors import HumanSegError
from humanseg.io import read_image
from humanseg.ops.edges import EdgeRefiner
from humanseg.ops.regions import (
    DEFAULT_CONFIDENT_PEAK,
    DEFAULT_MIN_REGION_AREA,
    DEFAULT_MIN_REGION_FRAC,
    RegionFilter,
)
from humanseg.weights import default_paths, packaged_onnx

PACKAGED_MODEL = "default"  # `model=` name of the model shipped in the package
ImageInput = np.ndarray | str | os.PathLike
BackgroundInput = str | os.PathLike | tuple[int, int, int] | np.ndarray


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """A one-line error naming the option, when `value` is not one of `allowed`."""
    if value not in allowed:
        raise HumanSegError(f"{name}={value!r}: expected one of {', '.join(allowed)}")


def resolve_backend(backend: str, config_path: str | os.PathLike,
                    model_path: str | os.PathLike, device: str = "cpu",
                    precision: str = "fp32", compile: bool = False) -> str:
    """The backend that runs a model: `backend` itself unless it is "auto", which picks
    onnxruntime for an `.onnx` file and for the packaged model (shipped as ONNX too) on the CPU
    at fp32 without `compile` (same masks, a fraction of the start-up and frame time), else
    PyTorch."""
    _check_choice("backend", backend, BACKENDS)
    if backend != "auto":
        return backend
    if Path(model_path).suffix.lower() == ".onnx":
        return "onnxruntime"
    plain_cpu = device == "cpu" and precision == "fp32" and not compile
    if plain_cpu and packaged_onnx(Path(config_path), Path(model_path)) is not None:
        return "onnxruntime"
    return "torch"


def _onnxruntime_forward(config_path: Path, model_path: Path, cfg: dict[str, Any],
                         ) -> tuple[Forward, int]:
    """The onnxruntime forward and class count. The packaged model runs its shipped ONNX
    export; another PyTorch model file (a zip archive as torch.save writes, or a folder holding
    one) is exported once into the cache (`humanseg.deploy.cache`) and the cached ONNX file is
    used from then on; any other file is loaded as ONNX."""
    from humanseg.deploy.onnx_runtime import OnnxRuntimeForward

    shipped = packaged_onnx(config_path, model_path)
    if shipped is not None:
        model_path = shipped
    elif model_path.is_dir() or (model_path.suffix.lower() != ".onnx"
                                 and zipfile.is_zipfile(model_path)):
        from humanseg.deploy.cache import cached_onnx

        model_path = cached_onnx(config_path, model_path)
    onnx_forward = OnnxRuntimeForward(model_path)
    classes = onnx_forward.num_classes or (cfg.get("model") or {}).get("num_classes")
    if classes is None:
        raise HumanSegError(f"{model_path}: class count unknown (dynamic output) and "
                            f"{config_path} has no model.num_classes")
    return onnx_forward, int(classes)


def build_predictor(config_path: str | os.PathLike, model_path: str | os.PathLike,
                    backend: str = "auto", device: str = "cpu", precision: str = "fp32",
                    region_filter: RegionFilter | None = None,
                    edges: EdgeRefiner | None = None, compile: bool = False) -> Predictor:
    """The engine's `Predictor` for a config and model file on the chosen backend
    (`resolve_backend`), preprocessing with the config's val transforms; `edges` refines the
    person edges of a two-class model (ignored for other models); `compile`: torch.compile the
    torch backend's model."""
    from humanseg.builder import load_config

    config_path, model_path = Path(config_path), Path(model_path)
    backend = resolve_backend(backend, config_path, model_path, device, precision, compile)
    if backend == "onnxruntime":
        if compile:
            raise HumanSegError("compile: only the torch backend is compiled (onnxruntime "
                                "optimises its graph itself); drop --compile or use torch")
        cfg = load_config(config_path, inference=True)
        forward, num_classes = _onnxruntime_forward(config_path, model_path, cfg)
    else:
        torch_device = resolve_device(device)
        check_precision(precision, torch_device)
        cfg, model = load_inference_model(config_path, model_path, torch_device)
        forward = TorchForward(model, torch_device, precision, compile)
        num_classes = int(model.num_classes)
    if "val_dataset" not in cfg or "transforms" not in cfg["val_dataset"]:
        raise HumanSegError(f"{config_path}: val_dataset.transforms is needed for preprocessing")
    pipeline = build_inference_transforms(cfg["val_dataset"]["transforms"])
    return Predictor(forward, pipeline, num_classes, region_filter,
                     edges if num_classes == 2 else None)


def as_image(image: ImageInput, name: str = "image") -> np.ndarray:
    """An RGB uint8 [H, W, 3] photo from an array of that form or an image file's path
    (`name`: what the error calls it)."""
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        form = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise HumanSegError(f"{name}: expected an RGB uint8 [H, W, 3] array or a file path, "
                            f"got {form}")
    return image


def as_background(background: BackgroundInput) -> Background:
    """A `Background` from `#RRGGBB`, an image path, an (R, G, B) tuple or an RGB uint8 array."""
    if isinstance(background, np.ndarray):
        return Background(image=as_image(background, "background"))
    if isinstance(background, tuple):
        if len(background) != 3 or not all(isinstance(value, int) and 0 <= value <= 255
                                           for value in background):
            raise HumanSegError(f"background {background!r}: expected (R, G, B) in 0..255")
        return Background(colour=background)
    if isinstance(background, str | os.PathLike):
        return parse_background(str(background))
    raise HumanSegError(f"background {background!r}: expected a #RRGGBB colour, an (R, G, B) "
                        "tuple, an image path or an RGB uint8 array")


@dataclass(frozen=True, eq=False)
class SegmentResult:
    """One photo's segmentation; maps at the photo's size are made on first use."""

    image: np.ndarray  # the photo, RGB uint8 [H, W, 3]
    prediction: Prediction  # class probabilities at the network's resolution

    @cached_property
    def mask(self) -> np.ndarray:
        """Class indices uint8 [H, W] (0 background, 1 person): `humanseg predict`'s label PNG."""
        return self.prediction.label()

    @cached_property
    def alpha(self) -> np.ndarray:
        """Person probability float32 [H, W] in [0, 1]: the soft edge used for compositing."""
        return self.prediction.alpha()

    def cutout(self) -> np.ndarray:
        """The person on transparency: RGBA uint8 [H, W, 4], alpha channel = round(255 * alpha)."""
        return rgba_cutout(self.image, self.alpha)

    def replace_background(self, background: BackgroundInput) -> np.ndarray:
        """The person in front of a colour (`#RRGGBB` or (R, G, B)) or a picture (path or RGB
        array, scaled to cover the photo and centre-cropped): RGB uint8 [H, W, 3]."""
        return compose(self.image, self.alpha, as_background(background))

    def blur_background(self) -> np.ndarray:
        """The person in front of a strong blur of the photo itself: RGB uint8 [H, W, 3]."""
        return compose(self.image, self.alpha, Background(blur=True))


class Segmenter:
    """A loaded model: call it on a photo (array or path) to get a `SegmentResult`."""

    def __init__(self, predictor: Predictor) -> None:
        """Wrap the engine's predictor (kept as `.predictor` for class probabilities)."""
        self.predictor = predictor

    def __call__(self, image: ImageInput) -> SegmentResult:
        """Segment one RGB uint8 [H, W, 3] photo, or the image file at a path."""
        photo = as_image(image)
        return SegmentResult(photo, self.predictor.infer(photo))


def load_predictor(model: str | os.PathLike = PACKAGED_MODEL,
                   config: str | os.PathLike | None = None, backend: str = "auto",
                   device: str = "cpu", precision: str = "fp32",
                   min_region_frac: float = DEFAULT_MIN_REGION_FRAC, main_subject: bool = False,
                   track_subject: bool = False,
                   min_region_area: float = DEFAULT_MIN_REGION_AREA,
                   confident_peak: float = DEFAULT_CONFIDENT_PEAK,
                   refine_edges: bool = True, compile: bool = False) -> Segmenter:
    """Load a model for segmenting photos.

    Args:
        model: "default" (the packaged portrait model) or a model file: `model.pt`, a folder
            holding one, or an exported `.onnx` (run by onnxruntime).
        config: the model's config YAML (its val transforms preprocess); None for "default".
        backend: "auto" (onnxruntime for an `.onnx` file and for the packaged model on the CPU
            at fp32, else torch), "torch", or "onnxruntime" (a `.pt` model other than the
            packaged one is exported once into the cache).
        device: "cpu" or "cuda" (torch backend).
        precision: "fp32", "fp16" (CUDA) or "bf16": autocast of the torch backend.
        min_region_frac: drop person regions smaller than this fraction of the largest (0 keeps
            every region).
        main_subject: keep only the main person region.
        track_subject: follow the main subject from call to call (video frames).
        min_region_area: also drop person regions smaller than this fraction of the network's
            output map (0: off).
        confident_peak: keep a small region anyway when its peak person probability exceeds
            this (1: every small region is dropped).
        refine_edges: make the person edges follow the photo's (a guided filter,
            `humanseg.ops.edges`; two-class models); False keeps the network's resampled edges.
        compile: run the torch backend's model through `torch.compile` (inductor, weights
            frozen): the first photo waits for the compile (30-100 s on 2 CPU cores), later
            ones take up to 22% less CPU (docs/benchmarks.md); where compiling fails, one
            warning and the eager model. With backend "auto" it picks torch.
    """
    _check_choice("device", device, DEVICES)
    _check_choice("precision", precision, PRECISIONS)
    if str(model) == PACKAGED_MODEL:
        if config is not None:
            raise HumanSegError(f"config={str(config)!r}: the packaged model brings its own "
                                "config; give model=PATH with it")
        config_path, model_path = default_paths()
    elif config is None:
        raise HumanSegError(f"model={str(model)!r}: give config= too (the model's YAML)")
    else:
        config_path, model_path = Path(config), Path(model)
    region_filter = RegionFilter(min_region_frac, main_subject, track_subject=track_subject,
                                 min_region_area=min_region_area, confident_peak=confident_peak)
    edges = EdgeRefiner(min_region_frac=min_region_frac) if refine_edges else None
    return Segmenter(build_predictor(config_path, model_path, backend, device, precision,
                                     region_filter, edges, compile))


def segment(image: ImageInput, **options: Any) -> SegmentResult:
    """Segment one photo (array or path) in one call: `load_predictor(**options)(image)`. Loads
    the model on every call; for many photos call `load_predictor` once."""
    allowed = inspect.signature(load_predictor).parameters
    for name in options:
        if name not in allowed:
            raise HumanSegError(f"segment(): unknown option {name!r}; expected one of "
                                f"{', '.join(allowed)}")
    return load_predictor(**options)(image)
