"""Evaluation scores what `humanseg predict` writes: one way from network output back to the photo.

For each geometric transform PaddleSeg's configs use in val, `humanseg val` on some real portraits
must report the mIoU that `humanseg predict`'s label PNGs of the same photos score against their
labels; and a tall photo padded to 16:9 (most of the network input is padding) must score as well
as its content allows, where the old alignment (padded output stretched onto the label) fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humanseg.cli import main
from humanseg.data import build_dataset
from humanseg.engine.evaluate import evaluate
from humanseg.io import read_mask
from humanseg.metrics import SegMetrics

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO.parent / "shared" / "data" / "portraits"
PORTRAIT_CONFIG = REPO / "configs" / "pp_humanseg" / "pp_humanseg_lite_portrait_398x224.yml"
PACKAGED_MODEL = REPO / "src" / "humanseg" / "weights" / "default.pt"
NORMALIZE = {"type": "Normalize"}
GEOMETRIES = {  # PPHumanSegLite takes any input size (size_divisor 1)
    "Resize": [{"type": "Resize", "target_size": [192, 192]}],
    "Resize keep_ratio": [{"type": "Resize", "target_size": [256, 160], "keep_ratio": True,
                           "size_divisor": 32}],
    "ResizeByLong + Padding": [{"type": "ResizeByLong", "long_size": 256},
                               {"type": "Padding", "target_size": [256, 256]}],
    "ResizeByShort": [{"type": "ResizeByShort", "short_size": 160, "max_size": 320}],
    "LimitLong": [{"type": "LimitLong", "max_long": 300}],
    "PaddingByAspectRatio + Resize": None,  # the 398x224 portrait config's own val transforms
}
needs_portraits = pytest.mark.skipif(not (PORTRAITS / "images").is_dir(),
                                     reason="../shared/data/portraits absent")


def predicted_miou(labels_dir: Path, pairs: list[tuple[Path, Path]]) -> float:
    """mIoU of predict's label PNGs against the stored labels (an independent count)."""
    metrics = SegMetrics(num_classes=2)
    for image_path, mask_path in pairs:
        prediction = read_mask(labels_dir / f"{image_path.stem}.png")
        metrics.update(prediction[None], read_mask(mask_path)[None])
    return float(metrics.compute()["miou"])


def write_child_config(path: Path, val_dataset: dict, transforms: list | None) -> Path:
    """The 398x224 portrait config with another val dataset (and val transforms, if given)."""
    spec = dict(val_dataset)
    if transforms is not None:
        spec["transforms"] = [*transforms, NORMALIZE]
    path.write_text(json.dumps({"_base_": str(PORTRAIT_CONFIG),
                                "val_dataset": {"_inherited_": False, **spec}}))
    return path


def val_and_predict(tmp_path: Path, config: Path, pairs: list[tuple[Path, Path]]) -> tuple:
    """(mIoU from `humanseg val`, mIoU of `humanseg predict`'s label PNGs) on the same photos.
    `val` scores the model itself, so predict runs without its default mask cleaning and edge
    refinement."""
    model = ["--config", str(config), "--model_path", str(PACKAGED_MODEL)]
    assert main(["val", *model, "--save_dir", str(tmp_path / "val")]) == 0
    evaluated = json.loads((tmp_path / "val" / "val_metrics.json").read_text())
    listing = tmp_path / "photos.txt"
    listing.write_text("".join(f"{image}\n" for image, _ in pairs))
    assert main(["predict", "--image_path", str(listing), *model, "--min_region_frac", "0",
                 "--no_edge_refine", "--save_dir", str(tmp_path / "predict")]) == 0
    assert evaluated["images"] == len(pairs)
    return evaluated["miou"], predicted_miou(tmp_path / "predict" / "label", pairs)


@needs_portraits
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_val_miou_equals_predicts_label_pngs_for_each_val_transform(
    tmp_path: Path, geometry: str
) -> None:
    stems = [path.stem for path in sorted((PORTRAITS / "images").glob("*.jpg"))[:6]]
    dataset = {"type": "FolderDataset", "dataset_root": str(PORTRAITS), "num_classes": 2,
               "mode": "val", "stems": stems}
    if GEOMETRIES[geometry] is None:  # the portrait config's own transforms, inherited as written
        from humanseg.builder import load_config

        dataset["transforms"] = load_config(PORTRAIT_CONFIG)["val_dataset"]["transforms"]
    config = write_child_config(tmp_path / "child.yml", dataset, GEOMETRIES[geometry])
    pairs = [(PORTRAITS / "images" / f"{stem}.jpg", PORTRAITS / "masks" / f"{stem}.png")
             for stem in stems]
    evaluated, predicted = val_and_predict(tmp_path, config, pairs)
    assert evaluated == pytest.approx(predicted, abs=1e-4)
    assert evaluated > 0.7  # a real model on real photos: the comparison is not between zeros


@needs_portraits
def test_portrait_composite_validation_scores_what_predict_writes(tmp_path: Path) -> None:
    sources = [{"images": str(PORTRAITS / "images"), "masks": str(PORTRAITS / "masks")}]
    from humanseg.builder import load_config

    dataset = {"type": "PortraitComposite", "mode": "val", "num_classes": 2, "sources": sources,
               "transforms": load_config(PORTRAIT_CONFIG)["val_dataset"]["transforms"]}
    config = write_child_config(tmp_path / "child.yml", dataset, None)
    samples = build_dataset(load_config(config)["val_dataset"]).samples
    pairs = [(sample.image, sample.mask) for sample in samples]
    evaluated, predicted = val_and_predict(tmp_path, config, pairs)
    assert evaluated == pytest.approx(predicted, abs=1e-4)
    assert evaluated > 0.8


class RedIsPerson(torch.nn.Module):
    """A pixelwise 'model': person where the normalised photo is red rather than green."""

    num_classes = 2
    size_divisor = 1

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # evaluate() reads the device from it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        person = 20 * (images[:, 0] - images[:, 1]) - 1  # padding grey (0, 0) -> background
        return torch.stack([torch.zeros_like(person), person], dim=1)


def test_tall_photo_padded_to_16_9_is_scored_where_it_lies(tmp_path: Path) -> None:
    # A 600 x 120 (H x W) photo: padded to 600 x 1066, it fills 45 of the input's 398 columns.
    image = np.zeros((600, 120, 3), np.uint8)
    image[..., 1] = 255  # green background
    label = np.zeros((600, 120), np.uint8)
    label[100:400, 10:70] = 1
    image[label == 1] = (255, 0, 0)
    for folder, array in (("images", image[..., ::-1]), ("masks", label)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "tall.png"), array)
    transforms = [{"type": "PaddingByAspectRatio", "aspect_ratio": 1.77777778},
                  {"type": "Resize", "target_size": [398, 224]}, NORMALIZE]
    dataset = build_dataset({"type": "FolderDataset", "dataset_root": str(tmp_path),
                             "num_classes": 2, "mode": "val", "transforms": transforms})
    model = RedIsPerson()
    metrics = evaluate(model, dataset, num_classes=2)
    assert metrics["miou"] > 0.97  # only the person's edges, blurred by the resize, can differ

    # The old alignment: the padded network output stretched onto the full-size label.
    inputs, _ = dataset[0]
    with torch.no_grad():
        logits = model(inputs[None])[0].numpy()
    stretched = cv2.resize(logits.transpose(1, 2, 0), (120, 600)).argmax(axis=2)
    wrong = SegMetrics(num_classes=2)
    wrong.update(stretched[None].astype(np.uint8), label[None])
    assert float(wrong.compute()["miou"]) < 0.6 < metrics["miou"] - 0.35
