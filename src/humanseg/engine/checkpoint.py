"""Checkpoints: `iter_N/model.pt` (plain state_dict) + `iter_N/train_state.pt`, written atomically.

A checkpoint directory is assembled under a temporary name and renamed into place, so a crash
never leaves a half-written checkpoint, and only the last `keep` ones are kept. While a run
writes into a save_dir it holds `train.lock` there (its PID and host; an OS lock on the file
tells a live run from one that died), so two runs never mix their checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humanseg.engine.runtime import MODEL_FILE as MODEL_FILE  # a checkpoint's weights file
from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import atomic_path, check_output_path

STATE_FILE = "train_state.pt"
BEST_DIR = "best_model"
ITER_DIR = re.compile(r"^iter_(\d+)$")
LOCK_FILE = "train.lock"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in a weights_only-safe form."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states captured by `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_torch(path: Path, obj: Any) -> None:
    """`torch.save` through a temporary file beside `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_model_file(path: str | Path, model_state: dict[str, torch.Tensor]) -> None:
    """Write a plain state_dict model file atomically."""
    _save_torch(Path(path), model_state)


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of models with one architecture (a "model soup" of fine-tuned runs).

    Floating-point tensors (weights, BN running statistics) are averaged in float64 and cast back;
    integer buffers (BN's `num_batches_tracked`) are taken from the first model.
    """
    if not states:
        raise HumanSegError("average_state_dicts: no models given")
    first = states[0]
    for index, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys() or any(
            state[key].shape != first[key].shape for key in first
        ):
            raise HumanSegError(
                f"average_state_dicts: model {index} has other keys or shapes than model 1"
            )
    averaged = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = sum(state[key].to(torch.float64) for state in states)
            averaged[key] = (total / len(states)).to(tensor.dtype)
        else:
            averaged[key] = tensor.clone()
    return averaged


def save_checkpoint(
    save_dir: str | Path, iteration: int, model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any], keep: int,
) -> Path:
    """Write `save_dir/iter_N/` as a whole (temp dir + rename) and prune to the last `keep`."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    target = save_dir / f"iter_{iteration}"
    staging = Path(tempfile.mkdtemp(prefix=f".iter_{iteration}.", dir=save_dir))
    try:
        save_model_file(staging / MODEL_FILE, model_state)
        _save_torch(staging / STATE_FILE, train_state)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".old_iter_{iteration}.", dir=save_dir))
            target.replace(retired / target.name)
            staging.replace(target)
            shutil.rmtree(retired)
        else:
            staging.replace(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    prune_checkpoints(save_dir, keep)
    return target


def list_checkpoints(save_dir: str | Path) -> list[tuple[int, Path]]:
    """The complete `iter_N` checkpoints in `save_dir`, oldest first."""
    found = []
    for child in Path(save_dir).iterdir() if Path(save_dir).is_dir() else []:
        match = ITER_DIR.match(child.name)
        if match and (child / MODEL_FILE).is_file() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def prune_checkpoints(save_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(save_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def save_best_model(
    save_dir: str | Path, model_state: dict[str, torch.Tensor], summary: dict[str, Any]
) -> Path:
    """Write `best_model/model.pt` and its `metrics.json` (the evaluation that made it best)."""
    best_dir = Path(save_dir) / BEST_DIR
    save_model_file(best_dir / MODEL_FILE, model_state)
    with atomic_path(best_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return best_dir / MODEL_FILE


def resolve_resume_dir(resume_model: str | Path) -> Path:
    """The checkpoint directory named by `--resume_model` (the `iter_N` folder or a file in it)."""
    path = Path(resume_model)
    directory = path.parent if path.is_file() else path
    if not directory.is_dir():
        raise HumanSegError(f"--resume_model {path}: no such checkpoint directory")
    for name in (MODEL_FILE, STATE_FILE):
        if not (directory / name).is_file():
            raise HumanSegError(f"--resume_model {directory}: {name} is missing "
                                "(expected a save_dir/iter_N checkpoint folder)")
    return directory


def load_train_state(checkpoint_dir: Path) -> dict[str, Any]:
    """Read `train_state.pt` with a clear error for a corrupt or foreign file."""
    path = checkpoint_dir / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle or zip
        raise HumanSegError(f"{path}: not a readable training state ({error})") from None
    required = {"iteration", "optimizer", "scheduler", "rng"}
    if not isinstance(state, dict) or not required <= set(state):
        raise HumanSegError(f"{path}: not a humanseg training state (missing "
                            f"{', '.join(sorted(required - set(state or {})))})")
    return state


def _take_lock_file(lock: Path) -> int | None:
    """Open `lock` and hold an exclusive OS lock on it: the descriptor, or None while another
    process holds it. The kernel drops the OS lock when its holder dies, however it dies."""
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        try:
            if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the holder removed the file as we opened it: take the new one


@contextlib.contextmanager
def locked_save_dir(save_dir: str | Path) -> Iterator[Path]:
    """Hold `save_dir/train.lock` (PID and host inside) while a run writes there; refuse a
    save_dir a live run holds, take over (with a warning) the lock of a run that died."""
    save_dir = Path(save_dir)
    check_output_path(save_dir, folder=True)
    created = not save_dir.exists()
    save_dir.mkdir(parents=True, exist_ok=True)
    lock = save_dir / LOCK_FILE
    descriptor = _take_lock_file(lock)
    if descriptor is None:
        holder = lock.read_text(errors="replace").strip() or "unknown"
        raise HumanSegError(f"{save_dir}: another training run (PID and host: {holder}) is "
                            "writing there; wait for it to end or choose another --save_dir")
    try:
        previous = os.read(descriptor, 256).decode(errors="replace").strip()
        if previous:
            warnings.warn(f"{lock}: left by a run that ended without removing it ({previous}); "
                          "taken over", HumanSegWarning, stacklevel=3)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):  # only an empty folder this run made
                save_dir.rmdir()
