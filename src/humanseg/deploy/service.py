"""The segmentation service's request handling, free of any web framework: check and decode an
uploaded image within byte and pixel limits, parse the output options, render the answer.

`humanseg.deploy.serve` puts these behind HTTP and WebSocket endpoints. Every refusal is a
`RequestError` carrying the HTTP status to answer with and a one-line message naming the field
and what is wrong.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from humanseg.deploy.compose import (
    Background,
    compose,
    parse_colour,
    rgba_cutout,
)
from humanseg.engine.predict import Predictor
from humanseg.errors import HumanSegError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
OUTPUTS = ("mask", "alpha", "cutout", "composite")
FORMATS = ("png", "jpeg", "json")
OPTION_FIELDS = ("output", "background", "format", "model")
FILE_FIELDS = ("image", "background_image")
JPEG_QUALITY = 90
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


class RequestError(HumanSegError):
    """A refused request: `status` is the HTTP status code, the message says what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status beside the one-line message."""
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may carry: body bytes, and pixels of each image (checked on its header)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ServedModel:
    """A model the service answers with: its public name, backend, files and predictor."""

    name: str
    backend: str
    config_path: Path
    model_path: Path
    predictor: Predictor

    def describe(self) -> dict[str, object]:
        """The public description (file names only: the server's folders stay private)."""
        return {"name": self.name, "backend": self.backend, "config": self.config_path.name,
                "model": self.model_path.name, "num_classes": self.predictor.num_classes}


@dataclass(frozen=True)
class SegmentOptions:
    """What to answer with: the output kind, its background, the encoding and the model name."""

    output: str = "mask"
    background: Background = Background(blur=True)
    format: str = "png"
    model: str | None = None


def decode_image(data: bytes, field: str, limits: Limits) -> np.ndarray:
    """RGB uint8 [H, W, 3] from uploaded bytes; the size is read from the header and checked
    against the pixel limit before any pixel is decoded."""
    if not data:
        raise RequestError(422, f"field {field!r} is empty: no image data")
    if len(data) > limits.max_bytes:
        raise RequestError(413, f"field {field!r}: {len(data)} bytes, limit {limits.max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_pixels:
                raise RequestError(413, f"field {field!r}: image is {width}x{height} = "
                                        f"{width * height} pixels, limit {limits.max_pixels}")
            image.load()
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"field {field!r}: image too large to decode ({error})") from None
    except UnidentifiedImageError:
        raise RequestError(415, f"field {field!r}: not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RequestError(400, f"field {field!r}: truncated or corrupt image ({error})") from None
    return np.asarray(rgb, dtype=np.uint8)


def _choice(options: Mapping[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    """One option out of `allowed`, or a 422 naming the key and the allowed values."""
    value = options.get(key, default)
    if value not in allowed:
        raise RequestError(422, f"{key}={value!r}: expected one of {', '.join(allowed)}")
    return value


def parse_options(options: Mapping[str, str], background_image: np.ndarray | None = None,
                  ) -> SegmentOptions:
    """`output`, `background` (blur, #RRGGBB, or image with an uploaded `background_image`),
    `format` and `model` from request fields; unknown keys are refused by name."""
    unknown = sorted(set(options) - set(OPTION_FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r}: expected "
                                f"{', '.join(FILE_FIELDS + OPTION_FIELDS)}")
    output = _choice(options, "output", OUTPUTS, "mask")
    encoding = _choice(options, "format", FORMATS, "png")
    if output == "cutout" and encoding == "jpeg":
        raise RequestError(422, "format='jpeg' cannot hold the cutout's transparency: use png")
    spec = options.get("background", "image" if background_image is not None else "blur")
    if spec == "blur":
        background = Background(blur=True)
    elif spec == "image":
        if background_image is None:
            raise RequestError(422, "background='image' needs a 'background_image' file field")
        background = Background(image=background_image)
    elif spec.startswith("#"):
        try:
            background = Background(colour=parse_colour(spec))
        except HumanSegError as error:
            raise RequestError(422, str(error)) from None
    else:
        raise RequestError(422, f"background={spec!r}: expected blur, #RRGGBB or image")
    return SegmentOptions(output, background, encoding, options.get("model"))


@dataclass(frozen=True)
class Segmentation:
    """A rendered answer: encoded bytes, their media type and the person's share of the image."""

    content: bytes
    media_type: str
    person_fraction: float


def encode(array: np.ndarray, encoding: str) -> bytes:
    """PNG or JPEG bytes of a grey [H, W], RGB or RGBA [H, W, 3|4] uint8 image."""
    if array.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR
        array = cv2.cvtColor(array, code)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if encoding == "jpeg" else []
    ok, buffer = cv2.imencode(f".{encoding}", array, params)
    if not ok:
        raise HumanSegError(f"could not encode the result as {encoding}")
    return buffer.tobytes()


def segment(predictor: Predictor, image: np.ndarray, options: SegmentOptions) -> Segmentation:
    """Run the model on `image` and render the chosen output: `mask` (0/255, the label of
    `humanseg predict` scaled), `alpha` (person probability x 255), `cutout` (RGBA) or
    `composite` (the person on the chosen background)."""
    prediction = predictor.infer(image)  # the maps `humanseg predict` writes, made the same way
    person = prediction.label() != 0
    alpha = prediction.alpha()
    if options.output == "mask":
        result = person.astype(np.uint8) * 255
    elif options.output == "alpha":
        result = np.rint(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
    elif options.output == "cutout":
        result = rgba_cutout(image, alpha)
    else:
        result = compose(image, alpha, options.background)
    encoding = "png" if options.format == "json" else options.format
    return Segmentation(encode(result, encoding), MEDIA_TYPES[encoding], float(person.mean()))


def json_answer(result: Segmentation, model: str, options: SegmentOptions,
                shape: tuple[int, ...]) -> dict[str, object]:
    """The `format=json` body: the image as base64 beside the person fraction."""
    return {"model": model, "output": options.output, "width": shape[1], "height": shape[0],
            "person_fraction": result.person_fraction, "media_type": result.media_type,
            "image_base64": base64.b64encode(result.content).decode("ascii")}


def browser_preprocessing(config_path: Path) -> tuple[dict[str, object] | None, str]:
    """What a page needs to preprocess frames exactly as the config's val transforms do, when
    those are a plain Resize then Normalize: ({input_size [H, W], mean, std}, "") ; otherwise
    (None, the reason in a line)."""
    from humanseg.builder import load_config
    from humanseg.data.transforms import fill3, width_height

    transforms = (load_config(config_path).get("val_dataset") or {}).get("transforms") or []
    kinds = [transform.get("type") for transform in transforms]
    if kinds != ["Resize", "Normalize"]:
        return None, (f"{config_path.name}: val transforms {kinds} are not the Resize, Normalize "
                      "pair a page can reproduce")
    resize, norm = transforms
    if resize.get("keep_ratio") or resize.get("size_divisor") or \
            resize.get("interp", "LINEAR") != "LINEAR":
        return None, f"{config_path.name}: only a plain bilinear Resize runs in the page"
    width, height = width_height(resize.get("target_size", (512, 512)), "target_size")
    return {"input_size": [height, width],
            "mean": list(fill3(norm.get("mean", 0.5), "mean")),
            "std": list(fill3(norm.get("std", 0.5), "std"))}, ""
