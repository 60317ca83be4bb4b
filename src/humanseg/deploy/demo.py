"""`humanseg demo`: segment a bundled photo of a person and write every kind of output.

The photo is scikit-image's `data.astronaut()` (shipped inside the scikit-image wheel, so nothing
is downloaded); the astronaut is put into space, `data.hubble_deep_field()`. With no options the
packaged default model is used, so `make demo` works straight after `make install`.
"""

from __future__ import annotations

import numpy as np
from skimage import data

from humanseg.deploy.compose import (
    Background,
    compose,
    overlay,
    rgba_cutout,
)

OUTPUT_FILES = (
    "input.png",
    "mask.png",
    "overlay.png",
    "cutout.png",
    "background_replaced.png",
    "background_blurred.png",
)


def demo_outputs(image: np.ndarray, person: np.ndarray) -> dict[str, np.ndarray]:
    """Every demo image for one photo and its person probability, keyed by file name."""
    mask = person > 0.5
    space = data.hubble_deep_field()
    return {
        "input.png": image,
        "mask.png": mask.astype(np.uint8) * 255,
        "overlay.png": overlay(image, mask),
        "cutout.png": rgba_cutout(image, person),
        "background_replaced.png": compose(image, person, Background(image=space)),
        "background_blurred.png": compose(image, person, Background(blur=True)),
    }
