"""Image/mask reading errors and atomic writes (humanseg.io)."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import (
    atomic_path,
    check_output_path,
    list_images,
    read_image,
    read_mask,
    write_image,
)

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits"
PHOTO = PORTRAITS / "images" / "vs_1.jpg"
needs_photo = pytest.mark.skipif(not PHOTO.is_file(), reason="../shared/data/portraits absent")
EXIF_ORIENTATION = 0x0112
# How a viewer turns the stored pixels for display, per EXIF orientation tag (by hand: 3 = upside
# down, 6 = turn 90 degrees clockwise, 8 = turn 90 degrees counter-clockwise).
DISPLAY = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, k=-1), 8: lambda a: np.rot90(a)}


def save_with_orientation(source: Path, target: Path, tag: int | None) -> None:
    """Re-save a photo's pixels unchanged, with an EXIF orientation tag (None: no EXIF at all)."""
    with Image.open(source) as photo:
        exif = photo.getexif()
        if tag is not None:
            exif[EXIF_ORIENTATION] = tag
        photo.save(target, quality=95, exif=exif)


def test_read_image_converts_bgr_grey_and_rgba_to_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 10  # blue channel in OpenCV's order
    bgr[..., 2] = 200  # red
    cv2.imwrite(str(tmp_path / "colour.png"), bgr)
    rgb = read_image(tmp_path / "colour.png")
    assert rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [200, 0, 10]

    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 5), 77, np.uint8))
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (4, 5, 3) and (grey == 77).all()

    bgra = np.dstack([bgr, np.full((2, 3), 9, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    assert read_image(tmp_path / "alpha.png")[0, 0].tolist() == [200, 0, 10]


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match=r"missing\.jpg: image file not found"):
        read_image(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(HumanSegError, match=r"corrupt\.jpg: not a readable image"):
        read_image(corrupt)


def test_read_mask_rejects_colour_and_reads_palette_indices(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "colour.png"), np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(HumanSegError, match=r"colour\.png: label must have 1 channel, found 3"):
        read_mask(tmp_path / "colour.png")

    indices = np.array([[0, 1], [255, 1]], np.uint8)
    palette_image = Image.fromarray(indices, mode="P")
    palette_image.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    palette_image.save(tmp_path / "palette.png")
    assert read_mask(tmp_path / "palette.png").tolist() == [[0, 1], [255, 1]]

    cv2.imwrite(str(tmp_path / "plain.png"), indices)
    assert read_mask(tmp_path / "plain.png").tolist() == [[0, 1], [255, 1]]
    with pytest.raises(HumanSegError, match=r"nope\.png: label file not found"):
        read_mask(tmp_path / "nope.png")


def test_list_images_sorted_and_empty_folder_error(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HumanSegError, match="folder holds no images"):
        list_images(empty)
    with pytest.raises(HumanSegError, match="no such image file or folder"):
        list_images(tmp_path / "absent")


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half writ")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_write_gives_umask_permissions_not_owner_only(tmp_path: Path) -> None:
    old_mask = os.umask(0o022)
    try:
        write_image(tmp_path / "out.png", np.zeros((2, 2, 3), np.uint8))
    finally:
        os.umask(old_mask)
    mode = stat.S_IMODE((tmp_path / "out.png").stat().st_mode)
    assert mode == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@needs_photo
@pytest.mark.parametrize("tag", [3, 6, 8])
def test_read_image_applies_the_exif_orientation_of_a_real_photo(tmp_path: Path, tag: int) -> None:
    save_with_orientation(PHOTO, tmp_path / "stored.jpg", None)
    save_with_orientation(PHOTO, tmp_path / "phone.jpg", tag)  # same JPEG data, tag added
    stored = read_image(tmp_path / "stored.jpg")
    shown = read_image(tmp_path / "phone.jpg")
    assert np.array_equal(shown, DISPLAY[tag](stored))
    if tag != 3:
        assert shown.shape == (stored.shape[1], stored.shape[0], 3)


@needs_photo
@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_warns_with_the_file_name(tmp_path: Path, progressive: bool) -> None:
    whole = tmp_path / "whole.jpg"
    with Image.open(PHOTO) as photo:
        photo.save(whole, quality=95, progressive=progressive, exif=photo.getexif())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete photo reads without a warning
        complete = read_image(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.warns(HumanSegWarning, match=r"cut\.jpg: truncated JPEG"):
        partial = read_image(cut)
    assert partial.shape == complete.shape  # it still decodes: the warning is all that tells


def test_check_output_path_refuses_wrong_kinds_and_paths_inside_files(tmp_path: Path) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("x")
    check_output_path(existing)  # an existing file may be replaced
    check_output_path(tmp_path / "new" / "deeper" / "out.png")  # folders get created
    check_output_path(tmp_path / "new" / "folder", folder=True)
    with pytest.raises(HumanSegError, match=r"notes\.txt: is a file, expected a folder"):
        check_output_path(existing, folder=True)
    with pytest.raises(HumanSegError, match=r"out\.onnx: is a folder, expected a file"):
        (tmp_path / "out.onnx").mkdir()
        check_output_path(tmp_path / "out.onnx")
    with pytest.raises(HumanSegError, match=r"notes\.txt is a file, not a folder"):
        check_output_path(existing / "sub" / "out.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_check_output_path_refuses_a_folder_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(HumanSegError, match=f"no write permission in {locked}"):
            check_output_path(locked / "sub" / "out.png")
    finally:
        locked.chmod(0o755)


@needs_photo
def test_data_after_the_end_of_a_jpeg_is_not_truncation(tmp_path: Path) -> None:
    # phones append data after the end marker (e.g. a motion photo's video); the photo is whole
    whole = read_image(PHOTO)
    trailer = tmp_path / "motion.jpg"
    trailer.write_bytes(PHOTO.read_bytes() + b"ftypmp42" + bytes(range(256)) * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(read_image(trailer), whole)
