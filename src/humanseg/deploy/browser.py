"""Headless Chromium for checking and timing the segmentation page (tests and benchmarks).

Debian's Chromium and chromedriver (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `make browser`
installs them), driven by Selenium (a dev dependency): never a downloaded browser. The fake
camera plays a y4m video, which `write_y4m` makes from a still photo.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from humanseg.errors import HumanSegError

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1000,1000",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


def chromium_available() -> bool:
    """Whether Debian's Chromium and its driver are installed."""
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def write_y4m(path: Path, image_bgr: np.ndarray, frames: int = 30, fps: int = 15) -> None:
    """A still y4m video (4:2:0) of `image_bgr` (even sides), Chromium's fake-camera format."""
    height, width = image_bgr.shape[:2]
    if height % 2 or width % 2:
        raise HumanSegError(f"y4m 4:2:0 needs even sides, got {width}x{height}")
    planes = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420).tobytes()
    with path.open("wb") as video:
        video.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            video.write(b"FRAME\n" + planes)


@contextmanager
def chromium(profile_dir: Path, camera_y4m: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile in `profile_dir` and the fake camera playing
    `camera_y4m`; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
                 f"--use-file-for-fake-video-capture={camera_y4m}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_script_timeout(60)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, script: str, timeout: float = 90.0) -> None:
    """Poll a JavaScript condition until it is true; on timeout, an error with the page's
    `#status` text."""
    deadline = time.monotonic() + timeout
    while not driver.execute_script(f"return Boolean({script});"):
        if time.monotonic() > deadline:
            status = driver.execute_script(
                "const s = document.getElementById('status'); return s ? s.textContent : ''")
            raise HumanSegError(f"timed out waiting for {script!r}; page status: {status!r}")
        time.sleep(0.2)


def canvas_pixels(driver: WebDriver, canvas_id: str = "output") -> np.ndarray:
    """A canvas of the page, read back as RGB uint8."""
    url = driver.execute_script(
        f"return document.getElementById('{canvas_id}').toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def person_region(composite: np.ndarray, original_rgb: np.ndarray, backdrop: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Invert the blend `c = a * photo + (1 - a) * backdrop` for a per pixel (a flat backdrop
    colour), and return (a > 0.5, pixels where that is decidable: the photo far from it)."""
    offset = original_rgb.astype(np.float32) - backdrop
    seen = composite.astype(np.float32) - backdrop
    norm = (offset**2).sum(axis=2)
    alpha = (seen * offset).sum(axis=2) / np.maximum(norm, 1.0)
    return alpha > 0.5, norm > 40.0**2


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    return float((a & b).sum() / max((a | b).sum(), 1))
