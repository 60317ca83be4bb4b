"""What `humanseg predict` writes per photo, in PaddleSeg's folders: `label/` (class indices),
`pseudo_color_prediction/`, `added_prediction/` (the overlay) and `cutout/` (RGBA, alpha = person
probability); and which photos a source names and under which output names."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from humanseg.data.inference import Placement
from humanseg.deploy.compose import rgba_cutout
from humanseg.engine.predict import Prediction
from humanseg.errors import HumanSegError
from humanseg.io import list_images, write_image

ADDED_IMAGE_WEIGHT = 0.6  # PaddleSeg's visualize(): 0.6 * image + 0.4 * pseudo-colour
OUTPUT_DIRS = ("label", "pseudo_color_prediction", "added_prediction", "cutout")


def color_map(num_classes: int) -> np.ndarray:
    """PaddleSeg's (PASCAL VOC) palette: class bits spread over R, G, B from the top bit down."""
    palette = np.zeros((max(num_classes, 1), 3), np.uint8)
    for label in range(len(palette)):
        code = label
        for bit in range(8):
            for channel in range(3):
                palette[label, channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
    return palette


def render_outputs(image: np.ndarray, prediction: Prediction | np.ndarray) -> dict[str, np.ndarray]:
    """The four output images of one prediction (or of full-size probabilities [C, H, W]), keyed
    by output folder."""
    if isinstance(prediction, np.ndarray):
        prediction = Prediction(prediction, Placement(), prediction.shape[1:])
    label = prediction.label()
    pseudo = color_map(len(prediction.probabilities))[label]
    # One fixed weight: blended in uint8 by OpenCV, without float copies of a large photo.
    added = cv2.addWeighted(image, ADDED_IMAGE_WEIGHT, pseudo, 1 - ADDED_IMAGE_WEIGHT, 0.0)
    return {
        "label": label,
        "pseudo_color_prediction": pseudo,
        "added_prediction": added,
        "cutout": rgba_cutout(image, prediction.alpha()),
    }


def image_paths(source: str | Path) -> list[Path]:
    """An image, a folder of images, or (as in PaddleSeg) a `.txt` list whose lines start with
    an image path relative to the list's folder (a label path after it is ignored)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".txt":
        entries = [(number, line.split()[0]) for number, line
                   in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
        if not entries:
            raise HumanSegError(f"{path}: image list is empty")
        first_line: dict[str, int] = {}
        for number, entry in entries:
            where = os.path.realpath(path.parent / entry)
            if where in first_line:
                raise HumanSegError(f"{path}: line {number} lists {entry} again (first on line "
                                    f"{first_line[where]}); list each image once")
            first_line[where] = number
        return [path.parent / entry for _, entry in entries]
    return list_images(path)


def output_names(paths: list[Path]) -> list[str]:
    """One distinct output name per input: its stem, or where stems clash its path below the
    inputs' common folder (outputs mirror the folders), with the suffix kept where that clashes."""
    stems = [path.stem for path in paths]
    if len(set(stems)) == len(stems):
        return stems
    absolute = [Path(os.path.abspath(path)) for path in paths]
    root = os.path.commonpath([path.parent for path in absolute])
    relative = [path.relative_to(root) for path in absolute]
    names = [rel.with_suffix("").as_posix() for rel in relative]
    return [name if names.count(name) == 1 else (rel.parent / rel.name.replace(".", "_")).as_posix()
            for name, rel in zip(names, relative, strict=True)]


def write_outputs(save_dir: Path, name: str, outputs: dict[str, np.ndarray]) -> None:
    """Write each output image atomically (`added_prediction` as JPEG, the others as PNG)."""
    for folder, array in outputs.items():
        suffix = ".jpg" if folder == "added_prediction" else ".png"
        write_image(save_dir / folder / f"{name}{suffix}", array)
