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
from typing import TYPE_CHECKING

import numpy as np

from humanseg.data.inference import InferencePipeline, Placement, photo_label, photo_map
from humanseg.engine.runtime import CompiledModel, autocast, softmax
from humanseg.errors import HumanSegError
from humanseg.ops.regions import RegionFilter

if TYPE_CHECKING:
    import torch

Forward = Callable[[np.ndarray], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]


class TorchForward:
    """A PyTorch model as a NumPy-in, NumPy-out `forward` for `Predictor`."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 compile: bool = False) -> None:
        """Keep an eval-mode copy of the model with BN folded into its convolutions (faster, same
        logits), its device and the autocast precision; `compile`: run the copy through
        `torch.compile` (`CompiledModel`: the first call compiles, eager if that fails)."""
        from humanseg.models import fuse  # torch-only: the onnxruntime path never imports it

        self.model: Callable[[torch.Tensor], torch.Tensor] = fuse(model)
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
