"""Device, precision and model loading shared by train, val and predict.

torch is imported inside the functions that use it, so that prediction with onnxruntime, which
imports this module for `softmax`, never loads it."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from humanseg.errors import HumanSegError, HumanSegWarning

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
# "auto" (the default) picks onnxruntime where it can run the model, else PyTorch
# (humanseg.deploy.api.resolve_backend)
BACKENDS = ("auto", "torch", "onnxruntime")
MODEL_FILE = "model.pt"  # the weights file of a model folder (checkpoints, best_model)


def softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    """Class probabilities of NumPy logits along the class `axis` (max-shifted for stability)."""
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def resolve_device(name: str) -> torch.device:
    """`cpu` or `cuda`, with a clear error when CUDA is asked for and absent."""
    import torch

    if name not in DEVICES:
        raise HumanSegError(f"--device: expected {' or '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise HumanSegError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (autocast + GradScaler); bf16 and fp32 run anywhere."""
    if precision not in PRECISIONS:
        raise HumanSegError(f"--precision: expected one of {', '.join(PRECISIONS)}, "
                            f"got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise HumanSegError("--precision fp16 needs --device cuda; use bf16 on the CPU")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed-precision autocast for fp16/bf16, nothing for fp32."""
    if precision == "fp32":
        yield
        return
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


class CompiledModel:
    """`model` run through `torch.compile` (inductor), or eager once compiling has failed.

    torch.compile compiles on the first call (and again for a new input shape), so a missing
    C++ compiler or an operation inductor cannot handle shows up there: then one warning line
    says why and every call from then on runs the eager `model`. `freeze=True` (inference only:
    weights become constants) lets inductor prepack the convolution weights for oneDNN. Pays
    where a long-running process amortises the compile (tens of seconds on 2 cores); see
    docs/benchmarks.md for the measured gain.
    """

    def __init__(self, model: torch.nn.Module, freeze: bool = False,
                 backend: str | Callable[..., Any] = "inductor") -> None:
        """Wrap `model` (compiled lazily, on the first call); `backend` as torch.compile's."""
        import torch

        self.model = model
        options = {"freezing": True} if freeze and backend == "inductor" else None
        # Static shapes: a new input shape compiles a new graph (the predictor's is fixed).
        # Dynamic ones, which dynamo turns on for a second shape, fail in inductor on these
        # models (torch 2.13: "cannot determine truth value of Relational").
        self.compiled: Callable[..., Any] | None = torch.compile(
            model, backend=backend, options=options, dynamic=False)

    def __call__(self, *inputs: Any) -> Any:
        """The model's output: compiled, or eager after a failed compile."""
        if self.compiled is None:
            return self.model(*inputs)
        import torch._dynamo.exc
        import torch._inductor.exc

        try:
            return self.compiled(*inputs)
        except (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.InvalidCxxCompiler,
                torch._inductor.exc.CppCompileError) as error:
            cause = getattr(error, "inner_exception", None) or error  # the backend's own error
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:200]
            warnings.warn(f"torch.compile failed, running eager instead: {reason}",
                          HumanSegWarning, stacklevel=2)
            self.compiled = None
            return self.model(*inputs)


def model_file(path: str | os.PathLike) -> Path:
    """A model file, or the `MODEL_FILE` inside a model folder (a checkpoint, `best_model`)."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def load_inference_model(
    config_path: str | os.PathLike, model_path: str | os.PathLike, device: torch.device,
    inference: bool = True,
) -> tuple[dict[str, Any], torch.nn.Module]:
    """Load a config and its trained weights; the model is in eval mode on `device`. The config
    is checked as `load_config(path, inference)` does (only what prediction reads, by default)."""
    from humanseg.builder import load_config
    from humanseg.models import build_model, load_model_file

    cfg = load_config(config_path, inference)
    if "model" not in cfg:
        raise HumanSegError(f"{config_path}: config has no model section")
    model = build_model(cfg["model"])
    load_model_file(model, model_file(model_path))
    return cfg, model.to(device).eval()
