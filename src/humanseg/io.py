"""Image and mask reading with clear errors, and atomic file writes (no half-written outputs)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from humanseg.errors import HumanSegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image as RGB uint8 [H, W, 3]; grey and RGBA inputs are converted."""
    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise HumanSegError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] != 3:
        raise HumanSegError(f"{path}: expected 1, 3 or 4 channels, found {image.shape[2]}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_palette_indices(path: Path) -> np.ndarray | None:
    """The class indices of a palette ("P" mode) PNG, PaddleSeg's pseudo-colour label format
    (OpenCV would expand it to colours); None for any other file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.uint8) if image.mode == "P" else None
    except (UnidentifiedImageError, OSError):
        return None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel or palette label PNG as uint8 [H, W]; a colour file is an error."""
    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: label file not found")
    palette_indices = _read_palette_indices(path)
    if palette_indices is not None:
        return palette_indices
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise HumanSegError(f"{path}: not a readable label image (corrupt or unsupported format)")
    if mask.ndim == 3:
        raise HumanSegError(
            f"{path}: label must have 1 channel, found {mask.shape[2]} (expected a class-index PNG)"
        )
    if mask.dtype != np.uint8:
        raise HumanSegError(f"{path}: label must be 8-bit, found {mask.dtype}")
    return mask


def list_images(path: str | os.PathLike) -> list[Path]:
    """One image file, or every image file (sorted) directly inside a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HumanSegError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    raise HumanSegError(f"{path}: no such image file or folder")


def _current_umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes owner-only files; give the result the permissions a plain open() would.
        tmp_path.chmod(0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> None:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB/RGBA/grey uint8 image atomically (format from the suffix)."""
    path = Path(path)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)

    def _write(tmp: Path) -> None:
        ok, buffer = cv2.imencode(path.suffix or ".png", image)
        if not ok:
            raise HumanSegError(f"{path}: could not encode image as {path.suffix}")
        tmp.write_bytes(buffer.tobytes())

    atomic_write(path, _write)
