"""The `humanseg serve` page in a real headless Chromium (Debian's package, driven by Selenium):
a real photo uploaded and composited onto a flat colour must show `humanseg predict`'s person
region (IoU > 0.95), and the camera (Chromium's fake capture device playing a y4m video made from
a real photo) must give a stream of composited frames. Screenshots go to $HUMANSEG_FIGURES_DIR
when it is set (docs/figures/ holds the committed ones)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanseg.deploy.browser import (
    canvas_pixels,
    chromium,
    chromium_available,
    mask_iou,
    person_region,
    wait_for,
    write_y4m,
)
from humanseg.deploy.serve import running_server

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTO = DATA / "portraits" / "images" / "vs_1.jpg"
CAMERA_PHOTO = DATA / "eg1800" / "images" / "eg_00001.jpg"
GREEN = np.array([0, 255, 0], np.float32)
ONNXRUNTIME_WEB = Path(__file__).resolve().parents[1] / "node_modules" / "onnxruntime-web" / "dist"
needs_onnxruntime_web = pytest.mark.skipif(
    not ONNXRUNTIME_WEB.is_dir(),
    reason="onnxruntime-web not installed (make test installs it from npm where npm exists)")

pytestmark = [
    pytest.mark.skipif(not chromium_available(),
                       reason="Chromium and chromedriver not installed (make test installs "
                              "Debian's chromium and chromium-driver with apt-get where it can)"),
    pytest.mark.skipif(not (PHOTO.is_file() and CAMERA_PHOTO.is_file()),
                       reason="real photos in ../shared/data absent"),
]


@pytest.fixture(scope="module")
def camera_frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real photo the fake camera shows (PNG, even sides) and its y4m video."""
    folder = tmp_path_factory.mktemp("camera")
    image = cv2.imread(str(CAMERA_PHOTO))
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
    cv2.imwrite(str(folder / "frame.png"), image)
    write_y4m(folder / "camera.y4m", image)
    return folder / "frame.png", folder / "camera.y4m"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The service with the packaged model (and onnxruntime-web for the page, where present)."""
    with running_server(["--onnxruntime_web", str(ONNXRUNTIME_WEB)]) as (base, _process):
        yield base


@pytest.fixture()
def browser(tmp_path: Path, camera_frame: tuple[Path, Path]):
    """Headless Chromium with a fresh profile and the fake camera playing the y4m video."""
    with chromium(tmp_path / "profile", camera_frame[1]) as driver:
        yield driver


def predicted_label(image: Path, save_dir: Path) -> np.ndarray:
    """`humanseg predict`'s label map of `image`, from the CLI."""
    subprocess.run([sys.executable, "-m", "humanseg.cli", "predict", str(image),
                    "--save_dir", str(save_dir)], check=True, capture_output=True)
    return cv2.imread(str(save_dir / "label" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)


def choose_green_background(driver) -> None:
    """Pick the colour background and set it to pure green, as a user would."""
    driver.execute_script("""
        const colour = document.getElementById('colour');
        colour.value = '#00ff00';
        colour.dispatchEvent(new Event('input'));
        document.querySelector('input[name=background][value=colour]').click();""")


def save_figure(driver, tmp_path: Path, name: str) -> None:
    """Screenshot the page; copied to $HUMANSEG_FIGURES_DIR when set."""
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    target = os.environ.get("HUMANSEG_FIGURES_DIR")
    if target:
        shutil.copyfile(shot, Path(target) / name)


def test_uploaded_photo_shows_the_predicted_person(server: str, browser, tmp_path: Path) -> None:
    browser.get(server + "/")
    choose_green_background(browser)
    browser.find_element("id", "photo").send_keys(str(PHOTO))
    wait_for(browser, "document.getElementById('output').dataset.source === 'photo' && "
                      "document.getElementById('output').dataset.state === 'done'")
    composite = canvas_pixels(browser)
    save_figure(browser, tmp_path, "web_page_photo.png")
    original = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    assert composite.shape == original.shape
    person, decidable = person_region(composite, original, GREEN)
    label = predicted_label(PHOTO, tmp_path / "predict") > 0
    assert decidable.mean() > 0.9
    overlap = mask_iou(person & decidable, label & decidable)
    print(f"\n[browser photo] person IoU vs humanseg predict {overlap:.4f}")
    assert overlap > 0.95
    assert browser.find_element("id", "fps").text.startswith("FPS: ")


def test_picture_and_blurred_backgrounds_of_a_photo(server: str, browser, tmp_path: Path) -> None:
    """The same photo onto an uploaded picture (flat magenta, so the blend can be inverted),
    then with the background blurred: the person stays where predict puts them."""
    picture, magenta = tmp_path / "magenta.png", np.array([255, 0, 255], np.float32)
    cv2.imwrite(str(picture), np.full((40, 60, 3), (255, 0, 255), np.uint8))
    original = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    label = predicted_label(PHOTO, tmp_path / "predict") > 0
    browser.get(server + "/")
    browser.find_element("id", "photo").send_keys(str(PHOTO))
    output = "document.getElementById('output')"
    wait_for(browser, f"{output}.dataset.state === 'done' && {output}.dataset.frames === '1'")
    browser.find_element("id", "background-file").send_keys(str(picture))
    wait_for(browser, f"{output}.dataset.state === 'done' && {output}.dataset.frames === '2'")
    person, decidable = person_region(canvas_pixels(browser), original, magenta)
    assert decidable.mean() > 0.9
    assert mask_iou(person & decidable, label & decidable) > 0.95
    browser.find_element("css selector", "input[name=background][value=blur]").click()
    wait_for(browser, f"{output}.dataset.state === 'done' && {output}.dataset.frames === '3'")
    blurred = canvas_pixels(browser).astype(np.float32)
    difference = np.abs(blurred - original).max(axis=2)
    # the person keeps the photo's pixels (up to their soft edge), the background is blurred
    core = cv2.erode(label.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    outside = cv2.dilate(label.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    assert np.median(difference[core]) <= 2 and np.mean(difference[outside]) > 5


@pytest.mark.parametrize(("path", "query"), [
    pytest.param("browser", "", marks=needs_onnxruntime_web),  # the default where offered
    ("server-ws", "?inference=server"),
    ("server-http", "?inference=server&transport=http"),
])
def test_fake_camera_gives_composited_frames(server: str, browser, tmp_path: Path,
                                             camera_frame: tuple[Path, Path], path: str,
                                             query: str) -> None:
    browser.get(f"{server}/{query}")
    choose_green_background(browser)
    browser.find_element("id", "camera").click()
    output = "document.getElementById('output')"
    # the first in-page run exports the model to ONNX on the server: allow for it
    wait_for(browser, f"{output}.dataset.source === 'camera' && {output}.dataset.fps && "
                      f"Number({output}.dataset.frames) >= 20", timeout=240)
    assert browser.execute_script(f"return {output}.dataset.inference") == path
    frames_before = int(browser.execute_script(f"return {output}.dataset.frames"))
    time.sleep(2.0)
    frames_after = int(browser.execute_script(f"return {output}.dataset.frames"))
    fps = float(browser.execute_script(f"return {output}.dataset.fps"))
    assert frames_after > frames_before and fps > 0  # frames keep coming
    composite = canvas_pixels(browser)
    save_figure(browser, tmp_path, f"web_page_camera_{path}.png")
    browser.find_element("id", "stop").click()
    frame_path, _ = camera_frame
    original = cv2.cvtColor(cv2.imread(str(frame_path)), cv2.COLOR_BGR2RGB)
    assert composite.shape == original.shape
    person, decidable = person_region(composite, original, GREEN)
    label = predicted_label(frame_path, tmp_path / "predict") > 0
    # The camera frame is not predict's photo (y4m 4:2:0; then JPEG frames to the server, or
    # the canvas's own resize in the page), so the bound is looser than the photo's.
    overlap = mask_iou(person & decidable, label & decidable)
    print(f"\n[browser camera, {path}] {fps:.1f} FPS, person IoU {overlap:.4f}")
    assert overlap > 0.9
    assert browser.find_element("id", "fps").text.startswith("FPS: ")
