"""The `predict` verb and `Predictor`: per image, a label PNG, pseudo-colour, overlay and cut-out.

`Predictor(forward, transforms, num_classes)` is backend-neutral: `forward` maps a normalised
float32 batch [N, 3, h, w] to logits (NumPy in, NumPy out). `TorchForward` wraps a PyTorch
model; `humanseg.deploy.onnx_runtime.OnnxRuntimeForward` wraps an exported ONNX model.
Outputs follow PaddleSeg's folders (`pseudo_color_prediction/`, `added_prediction/`) plus
`label/` (class indices) and `cutout/` (RGBA, alpha = person probability).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from humanseg.engine.runtime import (
    autocast,
    check_precision,
    load_inference_model,
    resolve_device,
    softmax,
)
from humanseg.errors import HumanSegError
from humanseg.io import list_images, read_image, write_image
from humanseg.ops import DEFAULT_MIN_REGION_FRAC, RegionFilter
from humanseg.weights import resolve_paths

Forward = Callable[[np.ndarray], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]
PairedTransform = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]
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
        """Keep the model (put in eval mode), its device and the autocast precision."""
        self.model = model.eval()
        self.device = device
        self.precision = precision

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits float32 [N, C, h, w] for a normalised float32 batch [N, 3, h, w]."""
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with autocast(self.device, self.precision):
            logits = self.model(inputs)
        return logits.float().cpu().numpy()


class Predictor:
    """Preprocess with the config's val transforms, run `forward`, return full-size scores."""

    def __init__(self, forward: Forward, transforms: Transform, num_classes: int,
                 region_filter: RegionFilter | None = None) -> None:
        """`transforms` maps an RGB uint8 image to a normalised float32 [3, h, w] array;
        `region_filter` (optional) cleans the full-size probabilities (small / secondary
        person regions)."""
        self.forward = forward
        self.transforms = transforms
        self.num_classes = int(num_classes)
        self.pipeline: PairedTransform | None = None
        self.region_filter = region_filter

    @classmethod
    def from_pipeline(cls, forward: Forward, pipeline: PairedTransform,
                      num_classes: int, region_filter: RegionFilter | None = None) -> Predictor:
        """A Predictor whose paired pipeline `(image, label) -> (chw, label)` also tells where
        the photo lies in the network input, so padding (e.g. PaddingByAspectRatio) is cropped
        off before the probabilities are resized back to the photo."""
        predictor = cls(forward, lambda image: pipeline(image, None)[0], num_classes,
                        region_filter)
        predictor.pipeline = pipeline
        return predictor

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice] | None]:
        """The network input and, with a paired pipeline, the box the photo covers in it."""
        if self.pipeline is None:
            return np.asarray(self.transforms(image), dtype=np.float32), None
        inputs, footprint = self.pipeline(image, np.ones(image.shape[:2], np.uint8))
        rows = np.flatnonzero((footprint == 1).any(axis=1))
        cols = np.flatnonzero((footprint == 1).any(axis=0))
        if rows.size == 0 or cols.size == 0:
            return np.asarray(inputs, dtype=np.float32), None
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        return np.asarray(inputs, dtype=np.float32), box

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [C, H, W] at the size of `image` (RGB uint8 [H, W, 3])."""
        height, width = image.shape[:2]
        inputs, box = self._prepare(image)
        logits = np.asarray(self.forward(inputs[None]))
        if logits.ndim != 4 or logits.shape[:2] != (1, self.num_classes):
            raise HumanSegError(f"model output has shape {logits.shape}, expected "
                                f"[1, {self.num_classes}, h, w]")
        scores = logits[0] if box is None else logits[0][:, box[0], box[1]]
        # Softmax at model resolution, then resize the probabilities: a convex (bilinear) blend
        # of distributions still sums to 1, and the full-size exp/sum (most of the time) is gone.
        probabilities = softmax(scores, axis=0).astype(np.float32)
        resized = cv2.resize(np.ascontiguousarray(probabilities.transpose(1, 2, 0)),
                             (width, height), interpolation=cv2.INTER_LINEAR)
        resized = resized.reshape(height, width, -1).transpose(2, 0, 1)
        return resized if self.region_filter is None else self.region_filter(resized)

    __call__ = predict


def render_outputs(image: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """The four output images of one prediction, keyed by output folder."""
    from humanseg.deploy.compose import alpha_blend, rgba_cutout

    label = probabilities.argmax(axis=0).astype(np.uint8)
    pseudo = color_map(len(probabilities))[label]
    weight = np.full(label.shape, ADDED_IMAGE_WEIGHT, np.float32)
    person = 1.0 - probabilities[0]  # every class but the background
    return {
        "label": label,
        "pseudo_color_prediction": pseudo,
        "added_prediction": alpha_blend(image, pseudo.astype(np.float32), weight),
        "cutout": rgba_cutout(image, person),
    }


def image_paths(source: str | Path) -> list[Path]:
    """An image, a folder of images, or (as in PaddleSeg) a `.txt` list whose lines start with
    an image path relative to the list's folder (a label path after it is ignored)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".txt":
        entries = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        if not entries:
            raise HumanSegError(f"{path}: image list is empty")
        return [path.parent / entry for entry in entries]
    return list_images(path)


def output_names(paths: list[Path]) -> list[str]:
    """One output stem per input; stems shared by two inputs keep their suffix to stay apart."""
    stems = [path.stem for path in paths]
    return [path.stem if stems.count(path.stem) == 1 else path.name.replace(".", "_")
            for path in paths]


def write_outputs(save_dir: Path, name: str, outputs: dict[str, np.ndarray]) -> None:
    """Write each output image atomically (`added_prediction` as JPEG, the others as PNG)."""
    for folder, array in outputs.items():
        suffix = ".jpg" if folder == "added_prediction" else ".png"
        write_image(save_dir / folder / f"{name}{suffix}", array)


def build_predictor(args: argparse.Namespace) -> Predictor:
    """A Predictor for the chosen backend, config and model file."""
    from humanseg.data import build_transforms

    if args.backend == "onnxruntime" and not (args.config or args.model_path):
        raise HumanSegError("--backend onnxruntime needs --config and --model_path MODEL.onnx")
    config_path, model_path = resolve_paths(args.config or None, args.model_path or None)
    if args.backend == "onnxruntime":
        from humanseg.config import load_config
        from humanseg.deploy.onnx_runtime import OnnxRuntimeForward

        cfg = load_config(config_path)
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
    pipeline = build_transforms(cfg["val_dataset"]["transforms"], ("val_dataset", "transforms"))
    region_filter = RegionFilter(
        getattr(args, "min_region_frac", DEFAULT_MIN_REGION_FRAC),
        getattr(args, "main_subject", False),
        track_subject=getattr(args, "track_subject", False),
    )
    return Predictor.from_pipeline(forward, pipeline, num_classes, region_filter)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg predict` / `python predict.py` (PaddleSeg's names)."""
    parser.add_argument("image", nargs="?", help="an image or folder (same as --image_path)")
    parser.add_argument("--image_path",
                        help="an image, a folder of images or a .txt list of image paths")
    parser.add_argument("--config", help="config file (default: the packaged model's)")
    parser.add_argument("--model_path", help="model.pt, or model.onnx with --backend onnxruntime")
    parser.add_argument("--save_dir", default="output/result", help="where the outputs go")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    add_region_arguments(parser)


def add_region_arguments(parser: argparse.ArgumentParser) -> None:
    """The mask-cleaning options `predict` and `video` share (humanseg.ops.regions)."""
    parser.add_argument(
        "--min_region_frac", type=float, default=DEFAULT_MIN_REGION_FRAC,
        help="drop person regions smaller than this fraction of the largest "
        f"(default {DEFAULT_MIN_REGION_FRAC}; 0 keeps every region)",
    )
    parser.add_argument("--main_subject", action="store_true",
                        help="keep only the main person region (in video: the one followed)")


def run(args: argparse.Namespace) -> int:
    """Segment every image and write its label, pseudo-colour, overlay and cut-out."""
    if args.image and args.image_path and args.image != args.image_path:
        raise HumanSegError("give the image either positionally or with --image_path, not both")
    source = args.image_path or args.image
    if not source:
        raise HumanSegError("no image given: humanseg predict PHOTO.jpg (or --image_path DIR)")
    paths = image_paths(source)
    predictor = build_predictor(args)
    save_dir = Path(args.save_dir)
    names = output_names(paths)
    for path, name in tqdm(list(zip(paths, names, strict=True)), desc="predict", unit="img",
                           disable=len(paths) < 2):
        image = read_image(path)
        write_outputs(save_dir, name, render_outputs(image, predictor(image)))
    folders = ", ".join(f"{folder}/" for folder in OUTPUT_DIRS)
    print(f"[PREDICT] {len(paths)} image(s) -> {save_dir} ({folders})")
    return 0

