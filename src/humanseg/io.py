"""Image and mask reading with clear errors, and atomic file writes (no half-written outputs)."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from humanseg.errors import HumanSegError, HumanSegWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"


def _jpeg_is_truncated(path: Path) -> bool:
    """True for a JPEG file with no end-of-image marker after its first scan: it was cut short,
    and decoders fill the missing rows with flat grey instead of failing."""
    with path.open("rb") as file:
        if file.read(2) != JPEG_START:
            return False
        file.seek(-2, os.SEEK_END)
        if file.read(2) == JPEG_END:
            return False  # the common case, told from two bytes
        file.seek(0)
        data = file.read()  # data after the end marker (a phone's trailer) or a truncated file
    position = 2  # after the start-of-image marker
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False  # not a marker layout we know; leave the verdict to the decoder
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0xDA:  # start of scan: entropy-coded data (0xFF always escaped) to EOI
            return data.find(JPEG_END, position) < 0
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
        else:  # a segment with a length (EXIF, tables, frame header...): skip it whole
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return True


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image as RGB uint8 [H, W, 3] the way viewers show it: the EXIF orientation
    is applied (phone photos store pixels sideways); grey and RGBA inputs are converted. A
    truncated JPEG still decodes but gives a HumanSegWarning naming the file."""
    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: image file not found")
    # IMREAD_COLOR applies the EXIF orientation, which IMREAD_UNCHANGED ignores; ANYDEPTH keeps
    # 16-bit images 16-bit until they are scaled below.
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise HumanSegError(f"{path}: not a readable image (corrupt or unsupported format)")
    if _jpeg_is_truncated(path):
        warnings.warn(
            f"{path}: truncated JPEG (the data stops before the image's end); the missing "
            "lower part decodes as flat grey, so results there are meaningless",
            HumanSegWarning,
            stacklevel=2,
        )
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
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


def check_output_path(path: str | os.PathLike, folder: bool = False) -> None:
    """Refuse, before any work is done, an output `path` (a file, or a folder with `folder`) that
    cannot be written: a path of the other kind, one inside a file, or one without write access."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kinds = ("a folder", "a file") if path.is_dir() else ("a file", "a folder")
        raise HumanSegError(f"{path}: is {kinds[0]}, expected {kinds[1]} to write into")
    ancestor = path if folder else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HumanSegError(f"{path}: cannot be written, {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise HumanSegError(f"{path}: cannot be written, no write permission in {ancestor}")


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
