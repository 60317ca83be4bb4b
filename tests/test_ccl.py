"""Batched multi-class connected components (humanseg.ops) against hand counts and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from humanseg.errors import HumanSegError
from humanseg.ops import label_components


def test_hand_counted_batch() -> None:
    first = np.array(
        [
            [1, 1, 0, 2],
            [0, 0, 1, 2],
            [2, 0, 0, 0],
        ]
    )
    second = np.zeros((3, 4), dtype=np.int64)  # one background component only
    components = label_components(np.stack([first, second]), connectivity=8)
    # image 0, 8-connected: class 0 = {(0,2),(1,0),(1,1),(2,1),(2,2),(2,3)} one component;
    # class 1 = {(0,0),(0,1),(1,2)} one (diagonal join); class 2 = {(0,3),(1,3)} and {(2,0)}
    assert components.counts(3).tolist() == [[1, 1, 2], [1, 0, 0]]
    assert components.count == 5
    four = label_components(np.stack([first, second]), connectivity=4)
    # 4-connected: class 0 splits at (0,2) (its neighbours (0,1),(0,3),(1,2) are not 0);
    # class 1 splits into {(0,0),(0,1)} and {(1,2)}
    assert four.counts(3).tolist() == [[2, 2, 2], [1, 0, 0]]


def test_component_attributes_and_ids() -> None:
    maps = np.array([[[0, 1, 1], [0, 0, 1]], [[2, 2, 0], [2, 0, 0]]])
    components = label_components(torch.from_numpy(maps))
    ids = components.ids
    # every pixel of a component shares one id, and ids never repeat across images or classes
    assert components.count == 4
    assert len(np.unique(ids)) == 4 and ids.min() == 1
    by_id = {
        int(ids[n, r, c]): (n, maps[n, r, c])
        for n in range(2)
        for r in range(2)
        for c in range(3)
    }
    for component_id, (image, klass) in by_id.items():
        assert components.image[component_id] == image
        assert components.klass[component_id] == klass
    area = {component_id: int((ids == component_id).sum()) for component_id in by_id}
    assert sorted(area.values()) == [3, 3, 3, 3]
    assert all(components.area[k] == v for k, v in area.items())
    # first pixel in raster order: image 0 class 0 starts at (0,0,0) -> flat 0; class 1 at 1
    assert components.first_pixel[ids[0, 0, 0]] == 0
    assert components.first_pixel[ids[0, 0, 1]] == 1
    assert components.first_pixel[ids[1, 0, 2]] == 6 + 2


def test_excluded_pixels_separate_components() -> None:
    maps = np.ones((1, 3, 5), dtype=np.int64)
    valid = np.ones_like(maps, dtype=bool)
    valid[0, :, 2] = False  # an excluded column cuts the single class-1 region in two
    components = label_components(maps, valid)
    assert components.count == 2
    assert (components.ids[0, :, 2] == 0).all()
    assert components.area[1:].tolist() == [6, 6]
    assert components.counts(2).tolist() == [[0, 2]]


@pytest.mark.parametrize("num_images", [3, 300])  # 300 images: codes beyond uint8
def test_neighbouring_images_never_join(num_images: int) -> None:
    maps = np.ones((num_images, 2, 2), dtype=np.int64)  # one class, stacked in one cc3d call
    components = label_components(maps)
    assert components.codes.dtype == (np.uint8 if num_images < 255 else np.uint16)
    assert components.count == num_images
    assert set(components.image[1:].tolist()) == set(range(num_images))


@pytest.mark.parametrize("blocky", [False, True], ids=["speckled", "blocky"])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_matches_scipy_per_class_on_random_maps(connectivity: int, blocky: bool) -> None:
    # Speckled maps (short runs) and blocky ones (4x4 blocks: long runs).
    rng = np.random.default_rng(11)
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    if blocky:
        maps = np.kron(rng.integers(0, 3, size=(4, 5, 4)), np.ones((1, 4, 4), dtype=np.int64))
        valid = np.ones(maps.shape, dtype=bool)
        valid[:, 7, 3:9] = False
    else:
        maps = rng.integers(0, 3, size=(4, 17, 13))
        valid = rng.random(maps.shape) > 0.1
    components = label_components(maps, valid, connectivity)
    assert np.unique(components.ids[valid]).size == components.count
    assert (components.ids[~valid] == 0).all()
    ids, pixel_counts = np.unique(components.ids, return_counts=True)
    assert components.area[ids].tolist() == pixel_counts.tolist()
    counts = components.counts(3)
    for image in range(4):
        for klass in range(3):
            mask = (maps[image] == klass) & valid[image]
            scipy_ids, scipy_count = ndimage.label(mask, structure)
            assert counts[image, klass] == scipy_count
            ours = components.ids[image][mask]
            # the two labellings are the same partition: a bijection between their ids
            pairs = set(zip(ours.tolist(), scipy_ids[mask].tolist(), strict=True))
            assert len(pairs) == scipy_count == len({a for a, _ in pairs})


@pytest.mark.parametrize(
    ("maps", "kwargs", "message"),
    [
        (np.zeros((2, 3)), {}, r"\[N, H, W\]"),
        (np.zeros((1, 2, 3), dtype=np.float32), {}, "integer class ids"),
        (-np.ones((1, 2, 3), dtype=np.int64), {}, ">= 0"),
        (np.zeros((1, 2, 3), dtype=np.int64), {"connectivity": 6}, "4 or 8"),
        (np.zeros((1, 2, 3), dtype=np.int64), {"valid": np.ones((1, 3, 2), bool)}, "valid mask"),
    ],
)
def test_bad_inputs(maps: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(HumanSegError, match=message):
        label_components(maps, **kwargs)


def test_component_values_reads_an_enclosing_labelling() -> None:
    maps = np.array([[[1, 1, 0, 1], [1, 0, 0, 1]]])
    coarse = label_components(maps)  # class 1: {(0,0),(0,1),(1,0)} and {(0,3),(1,3)}
    valid = np.ones_like(maps, dtype=bool)
    valid[0, 0, 1] = False
    fine = label_components(maps, valid)  # (0,1) excluded: the left piece shrinks to 2 pixels
    enclosing = fine.component_values(coarse.ids)
    assert enclosing[0] == 0
    for piece in range(1, fine.count + 1):
        pixels = fine.ids == piece
        assert (coarse.ids[pixels] == enclosing[piece]).all()
    assert sorted(fine.area[1:].tolist()) == [2, 2, 3]
