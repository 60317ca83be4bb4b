"""Batched multi-class connected-component labelling: one cc3d call labels a whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import cc3d
import numpy as np

from humanseg.errors import HumanSegError

if TYPE_CHECKING:  # torch is not imported at run time: mask cleaning on the predict path uses ops
    import torch

CONNECTIVITIES = (4, 8)


@dataclass(frozen=True)
class ComponentLabels:
    """Components of a batch of class maps; component ids run 1..count over the whole batch.

    `image`, `klass`, `area` and `first_pixel` are [count + 1] int64 arrays indexed by component
    id (entry 0 stands for the excluded pixels: image and class -1), computed on first use.
    They are read from the runs of equal ids along raster order rather than from every pixel:
    a component is a union of whole runs, and portrait maps have tens of times fewer runs than
    pixels. (cc3d's ids themselves are not in raster order.)
    """

    ids: np.ndarray
    """[N, H, W] unsigned ints: component id of each pixel, 0 where the pixel was excluded."""
    count: int
    """Number of components in the whole batch."""
    codes: np.ndarray
    """[N, H, W] the labelled codes: image * num_classes + class + 1, 0 where excluded."""
    num_classes: int
    """Classes in the code (max class id + 1)."""

    @cached_property
    def run_starts(self) -> np.ndarray:
        """Flat indices (raster order over [N, H, W]) where a run of equal ids begins."""
        flat = self.ids.ravel()
        if flat.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))

    @cached_property
    def run_ids(self) -> np.ndarray:
        """The component id of each run, as an index array."""
        return self.ids.ravel()[self.run_starts].astype(np.intp)

    def component_values(self, per_pixel: np.ndarray) -> np.ndarray:
        """[count + 1] values of a per-pixel array that is constant on every component (such as
        the id of an enclosing component in another labelling), read at one pixel per run."""
        values = np.zeros(self.count + 1, dtype=per_pixel.dtype)
        values[self.run_ids] = per_pixel.ravel()[self.run_starts]
        values[0] = 0
        return values

    @cached_property
    def _code_of(self) -> np.ndarray:
        """The code of each component (0 for entry 0)."""
        return self.component_values(self.codes).astype(np.int64)

    @cached_property
    def image(self) -> np.ndarray:
        """Image index of each component."""
        return np.where(self._code_of > 0, (self._code_of - 1) // self.num_classes, -1)

    @cached_property
    def klass(self) -> np.ndarray:
        """Class of each component."""
        return np.where(self._code_of > 0, (self._code_of - 1) % self.num_classes, -1)

    @cached_property
    def area(self) -> np.ndarray:
        """Pixel count of each component (entry 0 counts the excluded pixels)."""
        run_lengths = np.diff(self.run_starts, append=self.ids.size)
        area = np.bincount(self.run_ids, weights=run_lengths, minlength=self.count + 1)
        return area.astype(np.int64)

    @cached_property
    def first_pixel(self) -> np.ndarray:
        """Flat index into [N, H, W] of each component's first pixel in raster order."""
        first = np.full(self.count + 1, self.ids.size, dtype=np.int64)
        np.minimum.at(first, self.run_ids, self.run_starts)
        return first

    def counts(self, num_classes: int | None = None) -> np.ndarray:
        """Components per (image, class) as an int64 array [N, num_classes]."""
        num_classes = self.num_classes if num_classes is None else num_classes
        if num_classes < self.num_classes:
            raise HumanSegError(
                f"counts: num_classes {num_classes} is below the maps' {self.num_classes} classes"
            )
        num_images = self.ids.shape[0]
        flat = self.image[1:] * num_classes + self.klass[1:]
        per_group = np.bincount(flat, minlength=num_images * num_classes)
        return per_group.reshape(num_images, num_classes)


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU array or tensor (a device tensor is copied to the CPU)."""
    if hasattr(array, "detach"):  # a torch.Tensor, without importing torch to ask
        return array.detach().cpu().numpy()
    return np.asarray(array)


def label_components(
    class_maps: np.ndarray | torch.Tensor,
    valid: np.ndarray | torch.Tensor | None = None,
    connectivity: int = 8,
) -> ComponentLabels:
    """Label the connected components of every class of every image of [N, H, W] in one call.

    Pixels where `valid` is False belong to no component and separate the ones around them.
    Each pixel is encoded as image * C + class + 1 so that neighbouring images (stacked into one
    tall 2-D array for a single cc3d call) and different classes never join. (cc3d holds the
    GIL, so labelling chunks on threads gains nothing.)
    """
    if connectivity not in CONNECTIVITIES:
        raise HumanSegError(f"connectivity must be 4 or 8, got {connectivity!r}")
    maps = _as_numpy(class_maps)
    if maps.ndim != 3:
        raise HumanSegError(f"class maps must have shape [N, H, W], got {tuple(maps.shape)}")
    if not np.issubdtype(maps.dtype, np.integer):
        raise HumanSegError(f"class maps must hold integer class ids, got dtype {maps.dtype}")
    num_images, height, width = maps.shape
    is_signed = np.issubdtype(maps.dtype, np.signedinteger)
    if maps.size and is_signed and maps.min() < 0:
        raise HumanSegError("class maps must hold class ids >= 0, found a negative value")
    num_classes = int(maps.max()) + 1 if maps.size else 1
    codes_needed = num_images * num_classes + 1
    # the narrowest code type: cc3d labels uint8 codes 5-10% faster than uint16 ones
    code_dtype = next(
        dtype for dtype in (np.uint8, np.uint16, np.uint64)
        if codes_needed <= np.iinfo(dtype).max
    )
    image_offset = (np.arange(num_images, dtype=code_dtype) * num_classes + 1)[:, None, None]
    codes = np.add(maps, image_offset, dtype=code_dtype, casting="unsafe")
    if valid is not None:
        valid_np = _as_numpy(valid)
        if valid_np.shape != maps.shape:
            raise HumanSegError(
                f"valid mask shape {tuple(valid_np.shape)} differs from maps {tuple(maps.shape)}"
            )
        codes *= valid_np
    ids, count = _label_stack(codes, connectivity)
    return ComponentLabels(ids=ids, count=int(count), codes=codes, num_classes=num_classes)


def _label_stack(codes: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """cc3d on [n, H, W] codes stacked into one tall 2-D image; ids [n, H, W] and their count."""
    num_images, height, width = codes.shape
    ids, count = cc3d.connected_components(
        codes.reshape(num_images * height, width), connectivity=connectivity, return_N=True
    )
    return ids.reshape(num_images, height, width), int(count)

