"""`Predictor`: one photo in, class probabilities at the network's resolution out, mapped back to
the photo's pixels on request.

`Predictor(forward, transforms, num_classes)` is backend-neutral: `forward` maps a normalised
float32 batch [N, 3, h, w] to logits (NumPy in, NumPy out). `TorchForward` wraps a PyTorch
model here; the deploy layer adds the onnxruntime one and chooses between them
(`humanseg.deploy.api.load_predictor`).

Nothing here imports torch or albumentations at module level: with onnxruntime a prediction
starts in a fraction of a second (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np

from humanseg.data.inference import InferencePipeline, Placement, photo_label, photo_map
from humanseg.engine.runtime import CompiledModel, autocast, softmax
from humanseg.errors import HumanSegError
from humanseg.ops.edges import EdgeRefiner, grey_level, unsupported_regions
from humanseg.ops.regions import RegionFilter

if TYPE_CHECKING:
    import torch

Forward = Callable[[np.ndarray], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]


class TorchForward:
    """A PyTorch model as a NumPy-in, NumPy-out `forward` for `Predictor`."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 compile: bool = False) -> None:
        """Keep an eval-mode copy of the model with BN folded into its convolutions and their
        weights channels-last (faster, same logits), its device and the autocast precision;
        `compile`: run the copy through `torch.compile` (`CompiledModel`: the first call
        compiles, eager if that fails)."""
        # torch-only: the onnxruntime path never imports them
        from humanseg.models.layers import channels_last_weights, fuse

        self.model: Callable[[torch.Tensor], torch.Tensor] = channels_last_weights(fuse(model))
        if compile:
            self.model = CompiledModel(self.model, freeze=True)
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
    class (an 8000x6000 photo: 48 MB, 192 MB and 384 MB for two classes). With `edges` all three
    come from one refined person probability (four bytes a pixel), made on the first request and
    kept."""

    probabilities: np.ndarray  # float32 [C, h, w], softmax over C
    placement: Placement  # photo pixel centres -> `probabilities` pixel centres
    size: tuple[int, int]  # the photo's (H, W)
    photo: np.ndarray | None = None  # the RGB uint8 photo, kept when `edges` refines the mask
    edges: EdgeRefiner | None = None  # two classes: the person edges follow the photo's

    def label(self) -> np.ndarray:
        """Class indices uint8 [H, W] at the photo's size."""
        if self.edges is not None:
            return (self._refined_alpha > 0.5).view(np.uint8)
        return photo_label(self.probabilities, self.placement, self.size)

    def alpha(self) -> np.ndarray:
        """Person probability float32 [H, W] (every class but the background class 0)."""
        if self.edges is not None:
            return self._refined_alpha.copy()
        return photo_map(1.0 - self.probabilities[0], self.placement, self.size)

    def probabilities_full(self) -> np.ndarray:
        """Class probabilities float32 [C, H, W] at the photo's size."""
        if self.edges is not None:
            return np.stack([1.0 - self._refined_alpha, self._refined_alpha])
        return photo_map(self.probabilities, self.placement, self.size)

    @cached_property
    def _refined_alpha(self) -> np.ndarray:
        """The person probability with the photo's edges (`humanseg.ops.edges`): the linear fit
        against the grey photo on a small grid, its coefficients resampled to the photo; then
        person regions the network's mask does not support (`unsupported_regions`) are set to 0
        and background regions its background does not support to 1."""
        if self.photo is None or self.edges is None:
            raise HumanSegError("edge refinement needs the photo")
        grid = self.edges.grid(self.size)
        alpha = photo_map(1.0 - self.probabilities[0],
                          Placement.resize(grid, self.size).then(self.placement), grid)
        grey = grey_level(self.photo)
        small = cv2.resize(grey, grid[::-1], interpolation=cv2.INTER_AREA)
        slope, intercept = self.edges.coefficients(small.astype(np.float32) / 255, alpha)
        to_grid = Placement.resize(self.size, grid)
        refined = photo_map(slope / 255, to_grid, self.size)
        np.multiply(refined, grey, out=refined)  # grey is cast in buffered chunks
        refined += photo_map(intercept, to_grid, self.size)
        np.clip(refined, 0.0, 1.0, out=refined)
        person = refined > 0.5
        plain = photo_label(self.probabilities, self.placement, self.size).view(bool)
        refined[unsupported_regions(person, plain, self.edges.min_region_frac)] = 0.0
        background = refined <= 0.5
        refined[unsupported_regions(background, ~plain)] = 1.0
        return refined


class Predictor:
    """Preprocess with the config's val transforms, run `forward`, map scores back to the photo."""

    def __init__(self, forward: Forward, transforms: InferencePipeline | Transform,
                 num_classes: int, region_filter: RegionFilter | None = None,
                 edges: EdgeRefiner | None = None) -> None:
        """`transforms`: an `InferencePipeline` (which knows where each photo lands in the network
        input: padding, resizing), or any image -> normalised float32 [3, h, w] callable, taken
        to stretch the whole photo onto the network input. `region_filter` (optional) cleans
        the probabilities of small or secondary person regions, at the network's resolution
        (cheap, and every map made from the prediction agrees). `edges` (optional, two-class
        models) makes the person mask's edges follow the photo's."""
        self.forward = forward
        self.transforms = transforms
        self.num_classes = int(num_classes)
        self.region_filter = region_filter
        if edges is not None and self.num_classes != 2:
            raise HumanSegError(f"edge refinement needs a two-class (person) model, this one has "
                                f"{self.num_classes} classes")
        self.edges = edges

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
        photo = image if self.edges is not None else None
        return Prediction(probabilities, placement, image.shape[:2], photo, self.edges)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [C, H, W] at the size of `image` (RGB uint8 [H, W, 3])."""
        return self.infer(image).probabilities_full()

    __call__ = predict
