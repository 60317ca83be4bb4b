"""The portrait model shipped inside the package, used when no --config / --model_path is given."""

from __future__ import annotations

import os
from pathlib import Path

from humanseg.errors import HumanSegError

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = WEIGHTS_DIR / "default.yml"
DEFAULT_MODEL = WEIGHTS_DIR / "default.pt"
# The same model exported to ONNX (`humanseg export`, fixed input size): onnxruntime runs it
# without importing torch, so a cold `humanseg predict` starts in a fraction of a second.
DEFAULT_ONNX = WEIGHTS_DIR / "default.onnx"


def default_paths() -> tuple[Path, Path]:
    """Return (config_path, model_path) of the packaged default model; error if either is absent."""
    for path in (DEFAULT_CONFIG, DEFAULT_MODEL):
        if not path.is_file():
            raise HumanSegError(
                f"{path}: packaged default model file is missing; reinstall the package, "
                "or pass --config and --model_path (see docs/model_zoo.md)"
            )
    return DEFAULT_CONFIG, DEFAULT_MODEL


def resolve_paths(
    config_path: str | os.PathLike | None, model_path: str | os.PathLike | None
) -> tuple[Path, Path]:
    """The given (config, model) paths, or the packaged model's when neither is given."""
    if config_path is None and model_path is None:
        return default_paths()
    if config_path is None or model_path is None:
        raise HumanSegError("give both --config and --model_path, or neither (packaged model)")
    return Path(config_path), Path(model_path)


def packaged_onnx(config_path: Path, model_path: Path) -> Path | None:
    """The shipped ONNX export when (config, model) are the packaged pair and it is present."""
    packaged = (DEFAULT_CONFIG.resolve(), DEFAULT_MODEL.resolve())
    given = (Path(config_path).resolve(), Path(model_path).resolve())
    if DEFAULT_ONNX.is_file() and given == packaged:
        return DEFAULT_ONNX
    return None
