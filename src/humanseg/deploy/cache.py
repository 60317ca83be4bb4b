"""ONNX files exported on first use, so `--backend onnxruntime` works with a PyTorch model file.

The first `humanseg predict --backend onnxruntime` with a `.pt` model (or the packaged one)
exports it (that run imports torch) into `$XDG_CACHE_HOME/humanseg/onnx/` (default
`~/.cache/humanseg/onnx`), atomically and verified like `humanseg export`; later runs load the
cached file and never import torch. The file name is a hash of the model file's bytes, the
config's `model` section and the input size, so a retrained model or a changed config gets a new
file; delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from humanseg.data.inference import InferencePipeline, build_inference_transforms
from humanseg.engine.runtime import model_file
from humanseg.errors import HumanSegError

PROBE_SHAPES = ((97, 61, 3), (53, 149, 3))  # two unlike photo shapes (H, W, C)


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/humanseg/onnx`, or `~/.cache/humanseg/onnx` when that is unset."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "humanseg" / "onnx"


def fixed_input_size(pipeline: InferencePipeline) -> tuple[int, int] | None:
    """The network input (H, W) when the val transforms give every photo the same size (e.g. a
    final `Resize`), else None (the export is then dynamic)."""
    sizes = {pipeline.preprocess(np.zeros(shape, np.uint8)).shape[1:] for shape in PROBE_SHAPES}
    return next(iter(sizes)) if len(sizes) == 1 else None


def cache_key(model_path: Path, model_spec: dict, input_size: tuple[int, int] | None) -> str:
    """A hash of everything the exported graph depends on."""
    digest = hashlib.sha256()
    try:
        with model_path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        message = f"{model_path}: cannot read the model file ({error.strerror})"
        raise HumanSegError(message) from None
    digest.update(json.dumps([model_spec, input_size], sort_keys=True).encode())
    return digest.hexdigest()[:32]


def cached_onnx(config_path: Path, model_path: Path) -> Path:
    """The cached ONNX export of a PyTorch model file (or a folder holding `model.pt`), exported
    now if it is not there yet."""
    from humanseg.builder import load_config

    cfg = load_config(config_path, inference=True)
    if "model" not in cfg:
        raise HumanSegError(f"{config_path}: config has no model section")
    if "transforms" not in (cfg.get("val_dataset") or {}):
        raise HumanSegError(f"{config_path}: val_dataset.transforms is needed for preprocessing")
    model_path = model_file(model_path)
    input_size = fixed_input_size(build_inference_transforms(cfg["val_dataset"]["transforms"]))
    path = cache_dir() / f"{cache_key(model_path, cfg['model'], input_size)}.onnx"
    if path.is_file():
        return path
    import torch

    from humanseg.deploy.export import export_onnx
    from humanseg.engine.runtime import load_inference_model

    _, model = load_inference_model(config_path, model_path, torch.device("cpu"))
    side = 8 * int(model.size_divisor)  # any valid size checks a dynamic export
    check_size = input_size or (side, side)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, check_size, dynamic=input_size is None)
    return path
