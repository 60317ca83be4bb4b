"""The `predict` verb and `Predictor`: per image, a label PNG, pseudo-colour, overlay and cut-out.

`Predictor(forward, transforms, num_classes)` is backend-neutral: `forward` maps a normalised
float32 batch [N, 3, h, w] to logits (NumPy in, NumPy out). `TorchForward` wraps a PyTorch
model; `humanseg.deploy.onnx_runtime.OnnxRuntimeForward` wraps an exported ONNX model.
Outputs follow PaddleSeg's folders (`pseudo_color_prediction/`, `added_prediction/`) plus
`label/` (class indices) and `cutout/` (RGBA, alpha = person probability).

Nothing here imports torch or albumentations at module level: with onnxruntime a prediction
starts in a fraction of a second (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from humanseg.data.inference import (
    InferencePipeline,
    Placement,
    build_inference_transforms,
    photo_label,
    photo_map,
)
from humanseg.engine.runtime import (
    autocast,
    check_precision,
    load_inference_model,
    resolve_device,
    softmax,
)
from humanseg.errors import HumanSegError
from humanseg.io import check_output_path, list_images, read_image, write_image
from humanseg.ops.regions import (
    DEFAULT_CONFIDENT_PEAK,
    DEFAULT_MIN_REGION_AREA,
    DEFAULT_MIN_REGION_FRAC,
    RegionFilter,
)
from humanseg.weights import resolve_paths

if TYPE_CHECKING:
    import torch

Forward = Callable[[np.ndarray], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]
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


class TorchForward:
    """A PyTorch model as a NumPy-in, NumPy-out `forward` for `Predictor`."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32"):
        """Keep an eval-mode copy of the model with BN folded into its convolutions (faster, same
        logits), its device and the autocast precision."""
        from humanseg.models import fuse  # torch-only: the onnxruntime path never imports it

        self.model = fuse(model)
        self.device = device
        self.precision = precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits float32 [N, C, h, w] for a normalised float32 batch [N, 3, h, w]."""
        import torch

        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = self.model(inputs)
        return logits.float().cpu().numpy()


@dataclass(frozen=True)
class Prediction:
    """Class probabilities at the network's resolution and where the photo lies in them.

    Full-size maps are made only on request and only as large as asked: `label()` and `alpha()`
    cost one byte / four bytes per photo pixel, `probabilities_full()` four bytes per pixel per
    class (an 8000x6000 photo: 48 MB, 192 MB and 384 MB for two classes)."""

    probabilities: np.ndarray  # float32 [C, h, w], softmax over C
    placement: Placement  # photo pixel centres -> `probabilities` pixel centres
    size: tuple[int, int]  # the photo's (H, W)

    def label(self) -> np.ndarray:
        """Class indices uint8 [H, W] at the photo's size."""
        return photo_label(self.probabilities, self.placement, self.size)

    def alpha(self) -> np.ndarray:
        """Person probability float32 [H, W] (every class but the background class 0)."""
        return photo_map(1.0 - self.probabilities[0], self.placement, self.size)

    def probabilities_full(self) -> np.ndarray:
        """Class probabilities float32 [C, H, W] at the photo's size."""
        return photo_map(self.probabilities, self.placement, self.size)


class Predictor:
    """Preprocess with the config's val transforms, run `forward`, map scores back to the photo."""

    def __init__(self, forward: Forward, transforms: InferencePipeline | Transform,
                 num_classes: int, region_filter: RegionFilter | None = None) -> None:
        """`transforms`: an `InferencePipeline` (which knows where each photo lands in the network
        input: padding, resizing), or any image -> normalised float32 [3, h, w] callable, taken
        to stretch the whole photo onto the network input. `region_filter` (optional) cleans
        the probabilities of small or secondary person regions, at the network's resolution
        (cheap, and every map made from the prediction agrees)."""
        self.forward = forward
        self.transforms = transforms
        self.num_classes = int(num_classes)
        self.region_filter = region_filter

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The network input and where the photo's pixels lie in it."""
        if isinstance(self.transforms, InferencePipeline):
            return self.transforms.prepare(image)
        inputs = np.asarray(self.transforms(image), dtype=np.float32)
        return inputs, Placement.resize(image.shape[:2], inputs.shape[-2:])

    def infer(self, image: np.ndarray) -> Prediction:
        """Probabilities at the network's resolution for an RGB uint8 [H, W, 3] photo."""
        inputs, placement = self._prepare(image)
        logits = np.asarray(self.forward(inputs[None]))
        if logits.ndim != 4 or logits.shape[:2] != (1, self.num_classes):
            raise HumanSegError(f"model output has shape {logits.shape}, expected "
                                f"[1, {self.num_classes}, h, w]")
        if logits.shape[2:] != inputs.shape[1:]:  # a model whose output is smaller than its input
            placement = placement.then(Placement.resize(inputs.shape[1:], logits.shape[2:]))
        # Softmax at model resolution, then resample the probabilities: a convex (bilinear) blend
        # of distributions still sums to 1, and the full-size exp/sum is never computed.
        probabilities = softmax(logits[0], axis=0).astype(np.float32)
        if self.region_filter is not None:
            probabilities = self.region_filter(probabilities)
        return Prediction(probabilities, placement, image.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [C, H, W] at the size of `image` (RGB uint8 [H, W, 3])."""
        return self.infer(image).probabilities_full()

    __call__ = predict


def render_outputs(image: np.ndarray, prediction: Prediction | np.ndarray) -> dict[str, np.ndarray]:
    """The four output images of one prediction (or of full-size probabilities [C, H, W]), keyed
    by output folder."""
    from humanseg.deploy.compose import rgba_cutout

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


def build_predictor(args: argparse.Namespace) -> Predictor:
    """A Predictor for the chosen backend, config and model file. With onnxruntime, a PyTorch
    model file (a zip archive as torch.save writes, or the packaged model) is exported once into
    the cache (`humanseg.deploy.cache`) and the cached ONNX file is used from then on; any other
    file is loaded as ONNX."""
    config_path, model_path = resolve_paths(args.config or None, args.model_path or None)
    if args.backend == "onnxruntime":
        from humanseg.config import load_config
        from humanseg.deploy.onnx_runtime import OnnxRuntimeForward

        cfg = load_config(config_path, inference=True)
        if model_path.is_dir() or (model_path.suffix.lower() != ".onnx"
                                   and zipfile.is_zipfile(model_path)):
            from humanseg.deploy.cache import cached_onnx

            model_path = cached_onnx(config_path, model_path)
        onnx_forward = OnnxRuntimeForward(model_path)
        forward: Forward = onnx_forward
        classes = onnx_forward.num_classes or (cfg.get("model") or {}).get("num_classes")
        if classes is None:
            raise HumanSegError(f"{model_path}: class count unknown (dynamic output) and "
                                f"{config_path} has no model.num_classes")
        num_classes = int(classes)
    else:
        device = resolve_device(args.device)
        check_precision(args.precision, device)
        cfg, model = load_inference_model(config_path, model_path, device)
        forward = TorchForward(model, device, args.precision)
        num_classes = int(model.num_classes)
    if "val_dataset" not in cfg or "transforms" not in cfg["val_dataset"]:
        raise HumanSegError(f"{config_path}: val_dataset.transforms is needed for preprocessing")
    pipeline = build_inference_transforms(cfg["val_dataset"]["transforms"])
    region_filter = RegionFilter(
        getattr(args, "min_region_frac", DEFAULT_MIN_REGION_FRAC),
        getattr(args, "main_subject", False),
        track_subject=getattr(args, "track_subject", False),
        min_region_area=getattr(args, "min_region_area", DEFAULT_MIN_REGION_AREA),
        confident_peak=getattr(args, "confident_peak", DEFAULT_CONFIDENT_PEAK),
    )
    return Predictor(forward, pipeline, num_classes, region_filter)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg predict` / `python predict.py` (PaddleSeg's names)."""
    parser.add_argument("image", nargs="?", help="an image or folder (same as --image_path)")
    parser.add_argument("--image_path",
                        help="an image, a folder of images or a .txt list of image paths")
    parser.add_argument("--config", help="config file (default: the packaged model's)")
    parser.add_argument("--model_path",
                        help="model.pt, or model.onnx with --backend onnxruntime (a model.pt is "
                        "then exported once into ~/.cache/humanseg/onnx)")
    parser.add_argument("--save_dir", default="output/result",
                        help="where the outputs go (one subfolder per kind)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                        help="run the model with PyTorch, or an exported .onnx with onnxruntime")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the torch backend runs")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="autocast precision of the torch backend (fp16 needs --device cuda)")
    add_region_arguments(parser)


def add_region_arguments(parser: argparse.ArgumentParser) -> None:
    """The mask-cleaning options `predict` and `video` share (humanseg.ops.regions)."""
    parser.add_argument(
        "--min_region_frac", type=float, default=DEFAULT_MIN_REGION_FRAC,
        help="drop person regions smaller than this fraction of the largest "
        f"(default {DEFAULT_MIN_REGION_FRAC}; 0 keeps every region)",
    )
    parser.add_argument(
        "--min_region_area", type=float, default=DEFAULT_MIN_REGION_AREA,
        help="also drop person regions smaller than this fraction of the network's output map "
        f"(0.001: 37 of the packaged model's 192 x 192 pixels; default {DEFAULT_MIN_REGION_AREA:g}"
        ": off); with --min_region_frac 0 it spares the small people of a crowd",
    )
    parser.add_argument(
        "--confident_peak", type=float, default=DEFAULT_CONFIDENT_PEAK,
        help="keep a small region anyway when its peak person probability exceeds this "
        f"(default {DEFAULT_CONFIDENT_PEAK:g}: every small region is dropped)",
    )
    parser.add_argument("--main_subject", action="store_true",
                        help="keep only the main person region (in video: the one followed)")


def run(args: argparse.Namespace) -> int:
    """Segment every image and write its label, pseudo-colour, overlay and cut-out; a file that
    fails is reported in one line and the others still run (exit status 2 if any failed)."""
    if args.image and args.image_path and args.image != args.image_path:
        raise HumanSegError("give the image either positionally or with --image_path, not both")
    source = args.image_path or args.image
    if not source:
        raise HumanSegError("no image given: humanseg predict PHOTO.jpg (or --image_path DIR)")
    paths = image_paths(source)
    save_dir = Path(args.save_dir)
    for folder in (save_dir, *(save_dir / name for name in OUTPUT_DIRS)):
        check_output_path(folder, folder=True)  # before the model loads: fail at once
    predictor = build_predictor(args)
    failed = 0
    for path, name in tqdm(list(zip(paths, output_names(paths), strict=True)), desc="predict",
                           unit="img", disable=len(paths) < 2):
        try:  # a bad file is reported and skipped: the others still run
            image = read_image(path)
            write_outputs(save_dir, name, render_outputs(image, predictor.infer(image)))
        except HumanSegError as error:
            failed += 1
            tqdm.write(f"humanseg predict: error: {error}", file=sys.stderr)
    folders = ", ".join(f"{folder}/" for folder in OUTPUT_DIRS)
    print(f"[PREDICT] {len(paths) - failed} image(s) done, {failed} failed -> {save_dir} "
          f"({folders})")
    return 2 if failed else 0
