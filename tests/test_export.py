"""ONNX export and the onnxruntime backend: probabilities agree with PyTorch within 1e-4."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from skimage import data

from humanseg.builder import load_config
from humanseg.cli import export
from humanseg.data.inference import build_inference_transforms
from humanseg.deploy.api import build_predictor
from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.engine.runtime import load_inference_model, softmax
from humanseg.errors import HumanSegError
from humanseg.io import read_image
from humanseg.weights import resolve_paths

TOLERANCE = 1e-4
IMAGENET_MEAN = 0.5  # PaddleSeg's Normalize default: (x / 255 - 0.5) / 0.5
IMAGENET_STD = 0.5


def photo_batch(height: int, width: int, count: int = 1) -> np.ndarray:
    """The astronaut photo resized and normalised like PaddleSeg's Normalize, [count, 3, H, W]."""
    image = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    normalised = (image.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    chw = normalised.transpose(2, 0, 1)
    return np.stack([chw if i % 2 == 0 else chw[:, :, ::-1] for i in range(count)])


def run_export(config: Path, model_path: Path, output: Path, *options: str) -> int:
    """Run the verb with its own parser, as `humanseg export --config ... [options]` would."""
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    argv = ["--config", str(config), "--model_path", str(model_path), "--output", str(output)]
    return export.run(parser.parse_args([*argv, *options]))


def torch_probabilities(config: Path, model_path: Path, batch: np.ndarray) -> np.ndarray:
    """Softmax of the PyTorch model's logits (the reference)."""
    _, model = load_inference_model(config, model_path, torch.device("cpu"))
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(batch.copy())), dim=1).numpy()


def onnx_probabilities(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    """Softmax of onnxruntime's logits, using onnxruntime directly (independent of our wrapper)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: batch.copy()})
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


Exported = tuple[Path, Path, Path]  # config, model.pt, model.onnx
Exports = Callable[[str, bool], Exported]
LITE_SPEC = {"type": "PPHumanSegLite", "num_classes": 2}
HRNET_SMALL_SPEC = {"type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"}, "num_classes": 2}
SPECS = {"lite": LITE_SPEC, "hrnet_small": HRNET_SMALL_SPEC}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, write_model) -> Exports:
    """Export each model once per module (exports take seconds): keyed by (name, dynamic)."""
    cache: dict[tuple[str, bool], Exported] = {}

    def get(name: str, dynamic: bool) -> Exported:
        if (name, dynamic) not in cache:
            folder = tmp_path_factory.mktemp(f"{name}_{'dynamic' if dynamic else 'fixed'}")
            config, model_path = write_model(folder, SPECS[name], input_size=(64, 96))
            output = folder / "model.onnx"
            flags = ["--dynamic"] if dynamic else []
            assert run_export(config, model_path, output, *flags) == 0
            cache[name, dynamic] = (config, model_path, output)
        return cache[name, dynamic]

    return get


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
@pytest.mark.parametrize("name", ["lite", "hrnet_small"])
def test_onnx_matches_pytorch(exports: Exports, name: str, dynamic: bool) -> None:
    config, model_path, output = exports(name, dynamic)
    shape = ort.InferenceSession(str(output)).get_inputs()[0].shape
    sizes = [(1, 64, 96)]
    if dynamic:
        assert not any(isinstance(dim, int) for dim in (shape[0], shape[2], shape[3]))
        sizes.append((2, 96, 128))  # another batch and size than the export's
    else:
        assert shape == [1, 3, 64, 96]  # the config's Resize target_size [96, 64] is W, H
    for count, height, width in sizes:
        batch = photo_batch(height, width, count)
        expected = torch_probabilities(config, model_path, batch)
        # Mostly unsaturated probabilities, so agreement within 1e-4 means something.
        assert ((expected > 0.05) & (expected < 0.95)).mean() > 0.2
        actual = onnx_probabilities(output, batch)
        assert actual.shape == (count, 2, height, width)
        assert np.abs(actual - expected).max() < TOLERANCE


def test_onnxruntime_backend_predicts_like_torch(exports: Exports) -> None:
    config, model_path, onnx_path = exports("lite", False)
    torch_predictor = build_predictor(config, model_path, backend="torch")
    onnx_predictor = build_predictor(config, onnx_path, backend="onnxruntime")
    photo = data.astronaut()
    expected, actual = torch_predictor(photo), onnx_predictor(photo)
    assert actual.shape == (2, 512, 512)
    assert np.abs(actual - expected).max() < TOLERANCE
    forward = onnx_predictor.forward
    assert isinstance(forward, OnnxRuntimeForward)
    options = forward.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_size_not_divisible_by_stride_is_refused(tmp_path: Path, write_model) -> None:
    config, model_path = write_model(tmp_path / "model", HRNET_SMALL_SPEC, input_size=(64, 96))
    output = tmp_path / "model.onnx"
    with pytest.raises(HumanSegError, match="multiples of 32"):
        run_export(config, model_path, output, "--input_size", "60", "96")
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".model*")) == []


def test_wrong_model_file_leaves_no_output(tmp_path: Path, write_model) -> None:
    config, _ = write_model(tmp_path / "lite", LITE_SPEC)
    _, hrnet_weights = write_model(tmp_path / "hrnet", HRNET_SMALL_SPEC)
    output = tmp_path / "out" / "model.onnx"
    with pytest.raises(HumanSegError, match=r"model\.pt"):
        run_export(config, hrnet_weights, output)
    assert not output.exists()


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all"], ids=["empty", "garbage"])
def test_corrupt_onnx_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(HumanSegError, match=r"bad\.onnx: not a loadable ONNX model"):
        OnnxRuntimeForward(bad)
    with pytest.raises(HumanSegError, match="not found"):
        OnnxRuntimeForward(tmp_path / "missing.onnx")


def test_fixed_size_model_rejects_other_sizes(exports: Exports) -> None:
    _, _, onnx_path = exports("lite", False)
    forward = OnnxRuntimeForward(onnx_path)
    assert forward.input_size == (64, 96) and forward.num_classes == 2
    with pytest.raises(HumanSegError, match="exported for input 64x96"):
        forward(photo_batch(96, 96))
    # A fixed batch of 1 still takes a batch of 3, one image at a time.
    assert forward(photo_batch(64, 96, count=3)).shape == (3, 2, 64, 96)


def test_bad_output_paths_are_refused_before_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / "taken.onnx").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    missing_config, missing_model = tmp_path / "no.yml", tmp_path / "no.pt"
    for output, problem in (("taken.onnx", "is a folder, expected a file"),
                            ("notes.txt/model.onnx", "notes.txt is a file, not a folder")):
        with pytest.raises(HumanSegError, match=problem):
            run_export(missing_config, missing_model, tmp_path / output)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data (real photos) absent")
def test_int8_export_runs_and_agrees_with_fp32_on_a_real_photo(tmp_path: Path) -> None:
    # The packaged model, calibrated on 8 portraits, checked on a held-out ccp photo (another
    # source). int8 rounds every activation to 1/255 of its calibrated range, so probabilities
    # move most where they are near 0.5, at the person's outline: there the packaged model's
    # masks differ on 0.1-0.6% of the pixels of held-out photos (mean probability change
    # 0.001-0.005). Allowing 1% and 0.01 leaves room for that; a broken quantisation (a
    # constant or shifted mask) disagrees on a person's whole area, 20-25% of this photo.
    config, model_path = resolve_paths(None, None)
    fp32_path, int8_path = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    assert run_export(config, model_path, fp32_path) == 0
    calibration = ["--calibration", str(SHARED_DATA / "portraits" / "images")]
    assert run_export(config, model_path, int8_path, "--int8", *calibration,
                      "--calibration_count", "8") == 0
    operators = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators  # really quantised
    preprocess = build_inference_transforms(
        load_config(config)["val_dataset"]["transforms"]).preprocess
    batch = preprocess(read_image(SHARED_DATA / "ccp" / "images" / "ccp_0011.jpg"))[None]
    fp32 = softmax(OnnxRuntimeForward(fp32_path)(batch), axis=1)[0, 1]
    int8 = softmax(OnnxRuntimeForward(int8_path)(batch), axis=1)[0, 1]
    assert 0.15 < (fp32 > 0.5).mean() < 0.35  # a person fills part of the photo
    assert ((fp32 > 0.5) == (int8 > 0.5)).mean() >= 0.99
    assert np.abs(fp32 - int8).mean() <= 0.01


def test_int8_export_needs_calibration_photos(tmp_path: Path) -> None:
    config, model_path = resolve_paths(None, None)
    with pytest.raises(HumanSegError, match="--calibration"):
        run_export(config, model_path, tmp_path / "int8.onnx", "--quantize", "int8")
    assert list(tmp_path.iterdir()) == []


def test_calibration_photos_are_spread_over_the_list_without_repeats(tmp_path: Path) -> None:
    photos = []
    for index in range(5):
        path = tmp_path / f"photo_{index}.png"
        cv2.imwrite(str(path), np.full((8, 12, 3), 40 * index, np.uint8))
        photos.append(path)

    def mean_grey(image: np.ndarray) -> np.ndarray:  # one channel holding the photo's grey level
        return np.full((1, 4, 6), image.mean(), np.float32)

    everything = export.calibration_batches(photos, mean_grey, (4, 6), count=64)
    assert [int(b[0, 0, 0, 0]) for b in everything] == [0, 40, 80, 120, 160]
    two = export.calibration_batches(photos, mean_grey, (2, 3), count=2)
    assert [int(b[0, 0, 0, 0]) for b in two] == [0, 80] and two[0].shape == (1, 1, 2, 3)
    with pytest.raises(HumanSegError, match="calibration_count"):
        export.calibration_batches(photos, mean_grey, (4, 6), count=0)
