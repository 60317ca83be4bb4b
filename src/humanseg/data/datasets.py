"""Segmentation datasets: PaddleSeg list files and image/mask folders, with checked pairs.

Both give samples `(image float32 [3, H, W], label int64 [H, W])` after the transforms. A pair is
checked when it is loaded (decoding every image at start-up would cost minutes on a large set):
the image and label must be readable, the same size, and the label values must lie in
{0 .. num_classes - 1, ignore_index}. Missing files are found at start-up (a cheap stat). A bad
pair raises HumanSegError naming the file, or, with `skip_bad: true`, is reported once as a warning
and replaced by the next good index (deterministically, so runs stay reproducible). At start-up
16 labels spread over the set are read, and a warning is given when none holds a class other
than 0 (typically 0/255 masks, whose 255 is the ignore index).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import IMAGE_SUFFIXES, read_image, read_mask
from humanseg.registry import Registry

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
Pair = tuple[Path, Path]
MODES = ("train", "val", "test")
MASK_SUFFIX = ".png"
LABELS_SAMPLED = 16  # labels read at start-up, evenly spaced, to catch 0/255 masks early

# Dataset classes by config `type`; a class receives its `transforms` already built.
DATASETS = Registry("dataset type")


def check_label(label: np.ndarray, num_classes: int, ignore_index: int, path: Path) -> None:
    """Every label value must be a class index or the ignore index."""
    bad = (label >= num_classes) & (label != ignore_index)
    if bad.any():
        values = np.unique(label[bad]).tolist()[:5]
        raise HumanSegError(
            f"{path}: label values {values} outside 0..{num_classes - 1} "
            f"and ignore_index {ignore_index}"
        )


def load_pair(
    image_path: Path, label_path: Path, num_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one image (RGB uint8) and its label (uint8), naming the file on failure."""
    image = read_image(image_path)
    label = read_mask(label_path)
    if image.shape[:2] != label.shape:
        raise HumanSegError(
            f"{label_path}: label is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{image_path} is {image.shape[1]}x{image.shape[0]}"
        )
    check_label(label, num_classes, ignore_index, label_path)
    return image, label


class PairDataset(Dataset):
    """Shared loading, checking, skipping and transforming of (image, label) file pairs."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        num_classes: int,
        transforms: Transform | None,
        ignore_index: int,
        skip_bad: bool,
        mode: str,
        origin: str,
    ) -> None:
        """Keep the pairs whose files exist (others fail now, or are skipped with a warning)."""
        if mode not in MODES:
            raise HumanSegError(f"{origin}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise HumanSegError(f"{origin}: num_classes must be an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transforms = transforms
        self.skip_bad = skip_bad
        self.mode = mode
        self.pairs: list[Pair] = []
        for image_path, label_path in pairs:
            missing = next((p for p in (image_path, label_path) if not p.is_file()), None)
            if missing is None:
                self.pairs.append((image_path, label_path))
            elif skip_bad:
                warnings.warn(f"{missing}: file not found; pair skipped", HumanSegWarning,
                              stacklevel=2)
            else:
                raise HumanSegError(f"{missing}: file not found (listed in {origin})")
        if not self.pairs:
            raise HumanSegError(f"{origin}: no usable image/label pairs")
        self.bad: set[int] = set()
        self._warn_if_labels_teach_nothing(origin)

    def _warn_if_labels_teach_nothing(self, origin: str) -> None:
        """Warn once when a sample of the labels holds no pixel of a class besides 0: mostly
        masks saved as 0/255, whose 255 is the ignore index, so no person is ever learnt."""
        if self.num_classes < 2:
            return
        step = max(1, len(self.pairs) // LABELS_SAMPLED)
        seen = np.zeros(256, bool)
        checked = 0
        for _, label_path in self.pairs[::step][:LABELS_SAMPLED]:
            try:
                seen[np.unique(read_mask(label_path))] = True
            except HumanSegError:
                continue  # reported when the pair is loaded
            checked += 1
        if checked == 0 or seen[1:self.num_classes].any():
            return
        ignore_seen = 0 <= self.ignore_index < len(seen) and seen[self.ignore_index]
        ignored = f" and {self.ignore_index} (ignore_index)" if ignore_seen else ""
        hint = ("; masks saved as 0/255 need 255 mapped to 1 (e.g. mask // 255)" if ignored
                else "")
        warnings.warn(
            f"{origin}: the {checked} labels checked hold only 0 (background){ignored}, no "
            f"class 1..{self.num_classes - 1}, so the model never sees a person{hint}",
            HumanSegWarning, stacklevel=4)

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.pairs)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The checked pair at `index` as stored (what evaluation scores against); with
        skip_bad, the next good one after a bad one."""
        for offset in range(len(self.pairs)):
            candidate = (index + offset) % len(self.pairs)
            if candidate in self.bad:
                continue
            try:
                return load_pair(*self.pairs[candidate], self.num_classes, self.ignore_index)
            except HumanSegError as error:
                if not self.skip_bad:
                    raise
                self.bad.add(candidate)
                warnings.warn(f"{error}; skipped (skip_bad)", HumanSegWarning, stacklevel=2)
        raise HumanSegError(f"every one of the {len(self.pairs)} pairs is bad")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(image float32 [3, H, W], label int64 [H, W])` after the transforms."""
        return as_sample(*self.raw(index), self.transforms)


def as_sample(
    image: np.ndarray, label: np.ndarray, transforms: Transform | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one way a dataset makes a sample from a photo and its label: `(image float32
    [3, H, W], label int64 [H, W])`, transformed together when there are transforms, else at
    the photo's own resolution."""
    if transforms is None:
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        return torch.from_numpy(chw), torch.from_numpy(label.astype(np.int64))
    chw, out_label = transforms(image, label)
    return torch.from_numpy(chw), torch.from_numpy(np.asarray(out_label, dtype=np.int64))


def find_listing(list_path: str, dataset_root: Path, what: str = "list file") -> Path:
    """A list path as written (relative to the working directory, as PaddleSeg), else under root."""
    for candidate in (Path(list_path), dataset_root / list_path):
        if candidate.is_file():
            return candidate
    raise HumanSegError(f"{list_path}: {what} not found (also looked in {dataset_root})")


def read_list_file(list_file: Path, dataset_root: Path, separator: str) -> list[Pair]:
    """PaddleSeg list lines `image_path<sep>label_path`, relative to dataset_root."""
    pairs = []
    lines = list_file.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        items = line.strip().split(separator)
        if len(items) != 2:
            raise HumanSegError(
                f"{list_file}:{number}: expected 'image_path{separator}label_path', got {line!r}"
            )
        pairs.append((dataset_root / items[0], dataset_root / items[1]))
    return pairs


@DATASETS.register(name="Dataset")
class ListDataset(PairDataset):
    """PaddleSeg `Dataset` (config type `Dataset`): pairs listed in a PaddleSeg list file.

    Args:
        dataset_root: folder the listed paths are relative to.
        num_classes: classes of the labels (values 0..num_classes - 1, or ignore_index).
        mode: `train`, `val` or `test`: which list file is read, and which transforms (val /
            test: the inference pipeline).
        transforms: the PaddleSeg transforms list (built before the class sees it).
        train_path, val_path, test_path: list files, `image<separator>label` per line (as
            written, else under dataset_root); the one of `mode` is needed.
        separator: between the two paths of a line.
        ignore_index: label value left out of losses and metrics.
        edge: PaddleSeg's edge labels; not supported (only false).
        img_channels: only 3 (RGB).
        skip_bad: warn about and skip unreadable or mismatched pairs instead of failing.
    """

    def __init__(
        self,
        dataset_root: str,
        num_classes: int,
        mode: str = "train",
        transforms: Transform | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        separator: str = " ",
        ignore_index: int = 255,
        edge: bool = False,
        img_channels: int = 3,
        skip_bad: bool = False,
    ) -> None:
        """Read the list file of `mode`; paths inside it are relative to `dataset_root`."""
        if edge:
            raise HumanSegError("edge: true (edge labels for edge losses) is not supported")
        if img_channels != 3:
            raise HumanSegError(f"img_channels: only 3 (RGB) is supported, got {img_channels}")
        list_path = {"train": train_path, "val": val_path, "test": test_path}.get(mode)
        if list_path is None:
            raise HumanSegError(f"{mode}_path: needed for a Dataset in mode {mode!r}")
        root = Path(dataset_root)
        list_file = find_listing(list_path, root)
        pairs = read_list_file(list_file, root, separator)
        super().__init__(
            pairs, num_classes, transforms, ignore_index, skip_bad, mode, str(list_file)
        )


def read_stems_file(path: Path) -> list[str]:
    """One stem per non-empty line."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@DATASETS.register
class FolderDataset(PairDataset):
    """`images/` + `masks/` folders matched by stem (mask = stem + .png), optionally a subset.

    Args:
        dataset_root: folder holding the two folders.
        num_classes, mode, transforms, ignore_index, skip_bad: as for `Dataset`.
        images_dir, masks_dir: the folders' names under dataset_root.
        stems: only these file stems (in this order).
        stems_file: only the stems listed in this file, one a line (not with `stems`).
    """

    def __init__(
        self,
        dataset_root: str,
        num_classes: int,
        mode: str = "train",
        transforms: Transform | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        stems: list[str] | None = None,
        stems_file: str | None = None,
        ignore_index: int = 255,
        skip_bad: bool = False,
    ) -> None:
        """Pair every image with its same-stem mask, or only `stems` / the stems in `stems_file`."""
        root = Path(dataset_root)
        images, masks = root / images_dir, root / masks_dir
        for folder in (images, masks):
            if not folder.is_dir():
                raise HumanSegError(f"{folder}: folder not found")
        if stems is not None and stems_file is not None:
            raise HumanSegError(f"{root}: give stems or stems_file, not both")
        if stems_file is not None:
            stems = read_stems_file(find_listing(stems_file, root, "stems file"))
        by_stem = {
            p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        if stems is None:
            stems = sorted(by_stem)
        pairs = []
        for stem in stems:
            image = by_stem.get(str(stem), images / f"{stem}.jpg")
            pairs.append((image, masks / f"{stem}{MASK_SUFFIX}"))
        super().__init__(pairs, num_classes, transforms, ignore_index, skip_bad, mode, str(root))

