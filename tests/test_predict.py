"""Prediction: the Predictor's softmax and resizing, the output images, the `predict` verb."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humanseg.cli import main
from humanseg.data.inference import build_inference_transforms
from humanseg.deploy.outputs import color_map, output_names, render_outputs
from humanseg.engine.predict import Predictor
from humanseg.errors import HumanSegError
from humanseg.io import read_image

pytestmark = pytest.mark.usefixtures("one_thread")
PHOTO = Path(__file__).resolve().parents[2] / "shared/data/portraits/images/vs_1.jpg"


def test_color_map_is_paddleseg_voc_palette() -> None:
    # class bits (b0, b1, b2) go to the top bit of (R, G, B); class 1 = dark red, 2 = green...
    assert color_map(5).tolist() == [
        [0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert color_map(9)[8].tolist() == [64, 0, 0]  # 8 = 0b1000: bit 3 -> second-highest R bit


def test_predictor_applies_softmax_then_resizes_probabilities() -> None:
    seen: list[tuple[int, ...]] = []

    def forward(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        logits = np.zeros((1, 2, 4, 6), np.float32)
        logits[0, 1] = math.log(3.0)  # P(person) = 3 / (1 + 3)
        logits[0, 1, :, :3] = -math.log(3.0)  # left half: P(person) = 1 / 4
        return logits

    def transforms(image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, (6, 4), interpolation=cv2.INTER_AREA)
        return small.transpose(2, 0, 1).astype(np.float32) / 255

    image = np.zeros((8, 12, 3), np.uint8)
    probabilities = Predictor(forward, transforms, num_classes=2)(image)
    assert seen == [(1, 3, 4, 6)]
    assert probabilities.shape == (2, 8, 12) and probabilities.dtype == np.float32
    assert probabilities[1, :, :5] == pytest.approx(np.full((8, 5), 0.25), abs=1e-6)
    assert probabilities[1, :, 7:] == pytest.approx(np.full((8, 5), 0.75), abs=1e-6)
    # Output column x samples input column (x + 0.5) / 2 - 0.5: column 5 is 2.25, i.e. 3/4 of
    # column 2 (P = 1/4) and 1/4 of column 3 (P = 3/4). Blending probabilities gives 0.375;
    # blending logits first would give 1 / (1 + 3 ** 0.5) = 0.366.
    assert probabilities[1, :, 5] == pytest.approx(np.full(8, 0.75 * 0.25 + 0.25 * 0.75), abs=1e-6)
    assert probabilities[1, :, 6] == pytest.approx(np.full(8, 0.25 * 0.25 + 0.75 * 0.75), abs=1e-6)
    assert probabilities.sum(axis=0) == pytest.approx(np.ones((8, 12)), abs=1e-6)


def test_padding_added_by_the_pipeline_is_cropped_before_resizing() -> None:
    # PaddingByAspectRatio 1:1 pads a 4 x 8 photo at the bottom to 8 x 8.
    pad_to_square = build_inference_transforms([{"type": "PaddingByAspectRatio"}])

    def forward(batch: np.ndarray) -> np.ndarray:
        assert batch.shape == (1, 3, 8, 8)
        person = np.full((8, 8), -5.0, np.float32)
        person[:4, :4] = 5.0  # the photo's left half
        person[4:, :] = 5.0  # the padding: must not leak into the photo
        return np.stack([np.zeros_like(person), person])[None]

    predictor = Predictor(forward, pad_to_square, num_classes=2)
    probabilities = predictor(np.zeros((4, 8, 3), np.uint8))
    sigmoid = 1 / (1 + math.exp(-5.0))
    assert probabilities[1, :, :4] == pytest.approx(np.full((4, 4), sigmoid), abs=1e-6)
    assert probabilities[1, :, 4:] == pytest.approx(np.full((4, 4), 1 - sigmoid), abs=1e-6)


def test_padded_three_class_output_matches_a_numpy_and_cv2_oracle() -> None:
    # An 8 x 16 photo padded to 16 x 16, then resized to 8 x 8: the photo is rows 0..3.
    pad_then_halve = build_inference_transforms(
        [{"type": "PaddingByAspectRatio"}, {"type": "Resize", "target_size": 8}])
    logits = np.random.default_rng(3).normal(0, 2, size=(1, 3, 8, 8)).astype(np.float32)
    predictor = Predictor(lambda batch: logits, pad_then_halve, num_classes=3)
    probabilities = predictor(np.zeros((8, 16, 3), np.uint8))
    photo = logits[0, :, :4].astype(np.float64)  # the padding rows 4..7 are dropped
    softmax = np.exp(photo) / np.exp(photo).sum(axis=0)
    expected = np.stack([cv2.resize(plane, (16, 8), interpolation=cv2.INTER_LINEAR)
                         for plane in softmax])
    assert probabilities.shape == (3, 8, 16)
    assert probabilities == pytest.approx(expected, abs=1e-6)
    assert probabilities.sum(axis=0) == pytest.approx(np.ones((8, 16)), abs=1e-6)


def test_predictor_rejects_output_of_the_wrong_class_count() -> None:
    predictor = Predictor(lambda batch: np.zeros((1, 3, 2, 2), np.float32),
                          lambda image: np.zeros((3, 2, 2), np.float32), num_classes=2)
    with pytest.raises(HumanSegError, match=r"expected \[1, 2, h, w\]"):
        predictor(np.zeros((2, 2, 3), np.uint8))


def test_rendered_outputs_by_hand() -> None:
    image = np.array([[[100, 50, 0], [10, 20, 30]]], np.uint8)  # 1 x 2 pixels
    person = np.array([[0.75, 0.1]], np.float32)
    outputs = render_outputs(image, np.stack([1 - person, person]))
    assert outputs["label"].tolist() == [[1, 0]]
    assert outputs["pseudo_color_prediction"].tolist() == [[[128, 0, 0], [0, 0, 0]]]
    # added = 0.6 * image + 0.4 * pseudo-colour (PaddleSeg's visualize weight)
    assert outputs["added_prediction"].tolist() == [[[111, 30, 0], [6, 12, 18]]]
    # cut-out: RGB kept, alpha = round(255 * P(person))
    assert outputs["cutout"].tolist() == [[[100, 50, 0, 191], [10, 20, 30, 26]]]


def test_output_names_keep_inputs_with_the_same_stem_apart() -> None:
    paths = [Path("a.jpg"), Path("a.png"), Path("b.jpg")]
    assert output_names(paths) == ["a_jpg", "a_png", "b"]
    # same name in two folders: the outputs mirror the folders below the common one
    paths = [Path("list/x/a.jpg"), Path("list/y/a.jpg"), Path("list/x/b.jpg"), Path("c.jpg")]
    assert output_names(paths) == ["list/x/a", "list/y/a", "list/x/b", "c"]


def randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict with batch-norm biases spread out, so that classes are rarely tied."""
    state = model.state_dict()
    for name, value in state.items():
        if name.endswith(".bias"):
            value.normal_(0.0, 0.5)
    return state


@pytest.fixture(scope="module")
def lite_model(
    tmp_path_factory: pytest.TempPathFactory, blob_config, blob_sample
) -> tuple[Path, Path, Path]:
    """A config, an untrained PPHumanSegLite model file and a folder of two photos."""
    from humanseg.models import build_model

    root = tmp_path_factory.mktemp("predict")
    config = root / "lite.yml"
    config.write_text(blob_config(root).replace(
        "    - type: Normalize\noptimizer",
        "    - type: Resize\n      target_size: [64, 48]\n    - type: Normalize\noptimizer"))
    torch.manual_seed(0)
    model_path = root / "model.pt"
    torch.save(randomised(build_model({"type": "PPHumanSegLite", "num_classes": 2})), model_path)
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name, (height, width) in {"tall.jpg": (90, 60), "wide.png": (50, 80)}.items():
        image, _ = blob_sample(rng, height, width)
        cv2.imwrite(str(photos / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return config, model_path, photos


def test_predict_verb_writes_four_outputs_per_image(lite_model, tmp_path: Path, capsys) -> None:
    config, model_path, photos = lite_model
    code = main(["predict", "--config", str(config), "--model_path", str(model_path),
                 "--image_path", str(photos), "--save_dir", str(tmp_path)])
    assert code == 0
    assert "2 image(s)" in capsys.readouterr().out
    for stem, shape in {"tall": (90, 60), "wide": (50, 80)}.items():
        label = cv2.imread(str(tmp_path / "label" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert label.shape == shape and set(np.unique(label)) <= {0, 1}
        pseudo = read_image(tmp_path / "pseudo_color_prediction" / f"{stem}.png")
        assert np.array_equal(pseudo, color_map(2)[label])
        added = read_image(tmp_path / "added_prediction" / f"{stem}.jpg")
        assert added.shape == (*shape, 3)
        cutout = cv2.imread(str(tmp_path / "cutout" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert cutout.shape == (*shape, 4)
        # label 1 means P(person) > 0.5 (alpha >= 128); label 0 means P(person) <= 0.5
        # (alpha <= 128: a tie at 0.5, as the Lite model's final ReLU gives, goes to class 0)
        alpha = cutout[..., 3]
        assert np.all(alpha[label == 1] >= 128) and np.all(alpha[label == 0] <= 128)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_predict_reads_a_paddleseg_image_list(lite_model, tmp_path: Path) -> None:
    config, model_path, photos = lite_model
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "tall.jpg").write_bytes((photos / "tall.jpg").read_bytes())
    listing = tmp_path / "lists" / "val.txt"  # relative entries, an absolute one, a blank line
    listing.write_text(f"tall.jpg masks/tall.png\n\n{photos / 'wide.png'}\n")
    assert main(["predict", "--config", str(config), "--model_path", str(model_path),
                 "--image_path", str(listing), "--save_dir", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "label").iterdir()) == [
        "tall.png", "wide.png"]


def test_predict_positional_image_and_onnxruntime_backend(lite_model, tmp_path: Path) -> None:
    config, model_path, photos = lite_model
    assert main(["predict", str(photos / "tall.jpg"), "--config", str(config),
                 "--model_path", str(model_path), "--save_dir", str(tmp_path / "torch")]) == 0
    onnx_path = tmp_path / "lite.onnx"
    assert main(["export", "--config", str(config), "--model_path", str(model_path),
                 "--output", str(onnx_path)]) == 0
    assert main(["predict", str(photos / "tall.jpg"), "--config", str(config),
                 "--model_path", str(onnx_path), "--backend", "onnxruntime",
                 "--save_dir", str(tmp_path / "onnx")]) == 0
    from_torch = cv2.imread(str(tmp_path / "torch" / "cutout" / "tall.png"), cv2.IMREAD_UNCHANGED)
    from_onnx = cv2.imread(str(tmp_path / "onnx" / "cutout" / "tall.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(from_torch.astype(int) - from_onnx.astype(int)).max() <= 1


def test_predict_errors_are_one_line(lite_model, tmp_path: Path, capsys) -> None:
    config, model_path, photos = lite_model
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    argv = ["predict", "--config", str(config), "--model_path", str(model_path),
            "--save_dir", str(tmp_path / "out")]
    assert main([*argv, "--image_path", str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    assert "broken.jpg" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert main(["predict", "--config", str(config), "--save_dir", str(tmp_path)]) == 2
    assert "no image given" in capsys.readouterr().err
    assert main(["predict", str(photos), "--config", str(config)]) == 2
    assert "both --config and --model_path" in capsys.readouterr().err


def test_predict_without_a_model_uses_the_packaged_one(lite_model, tmp_path: Path,
                                                       capsys) -> None:
    from humanseg.weights import default_paths

    _, _, photos = lite_model
    code = main(["predict", str(photos / "wide.png"), "--save_dir", str(tmp_path)])
    try:
        default_paths()
    except HumanSegError as missing:
        assert code == 2 and str(missing) in capsys.readouterr().err
    else:
        assert code == 0 and (tmp_path / "cutout" / "wide.png").is_file()


def test_predict_resolves_model_paths_as_the_weights_module_does(lite_model, tmp_path: Path,
                                                                 capsys, monkeypatch) -> None:
    import humanseg.weights

    config, model_path, photos = lite_model
    argv = ["predict", str(photos / "wide.png"), "--save_dir", str(tmp_path)]
    for given in ([str(config), None], [None, str(model_path)]):
        with pytest.raises(HumanSegError) as expected:
            humanseg.weights.resolve_paths(*given)
        options = [*(["--config", given[0]] if given[0] else []),
                   *(["--model_path", given[1]] if given[1] else [])]
        assert main([*argv, *options]) == 2
        assert capsys.readouterr().err.strip().endswith(str(expected.value))
    monkeypatch.setattr(humanseg.weights, "DEFAULT_MODEL", tmp_path / "missing.pt")
    with pytest.raises(HumanSegError) as missing:
        humanseg.weights.resolve_paths(None, None)
    assert "missing.pt" in str(missing.value)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(str(missing.value))
    assert main([*argv, "--backend", "onnxruntime"]) == 2  # the packaged model would be exported
    assert capsys.readouterr().err.strip().endswith(str(missing.value))
    assert not (tmp_path / "label").exists()


def predict_argv(lite_model: tuple[Path, Path, Path], save_dir: Path) -> list[str]:
    """`humanseg predict` with the test model, writing into `save_dir`."""
    config, model_path, _ = lite_model
    return ["predict", "--config", str(config), "--model_path", str(model_path),
            "--save_dir", str(save_dir)]


def test_batch_prediction_goes_on_past_a_bad_file(lite_model, tmp_path: Path, capsys) -> None:
    _, _, photos = lite_model
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("tall.jpg", "wide.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")  # sorts between the two good ones
    (folder / "empty.png").write_bytes(b"")
    assert main([*predict_argv(lite_model, tmp_path / "out"), str(folder)]) == 2
    captured = capsys.readouterr()
    reports = [line for line in captured.err.splitlines() if line.startswith("humanseg")]
    assert reports == [  # one line per bad file (the rest of stderr is the progress bar)
        f"humanseg predict: error: {folder / 'broken.jpg'}: not a readable image "
        "(corrupt or unsupported format)",
        f"humanseg predict: error: {folder / 'empty.png'}: not a readable image "
        "(corrupt or unsupported format)",
    ]
    assert "[PREDICT] 2 image(s) done, 2 failed" in captured.out
    assert sorted(p.name for p in (tmp_path / "out" / "label").iterdir()) == [
        "tall.png", "wide.png"]


def test_a_list_with_one_name_in_two_folders_keeps_both_results(lite_model,
                                                                 tmp_path: Path) -> None:
    _, _, photos = lite_model
    for folder, source in (("x", "tall.jpg"), ("y", "wide.png")):
        (tmp_path / "set" / folder).mkdir(parents=True)
        (tmp_path / "set" / folder / "photo.jpg").write_bytes((photos / source).read_bytes())
    listing = tmp_path / "set" / "test.txt"
    listing.write_text("x/photo.jpg\ny/photo.jpg\n")
    assert main([*predict_argv(lite_model, tmp_path / "out"), str(listing)]) == 0
    labels = tmp_path / "out" / "label"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*.png")) == [
        "x/photo.png", "y/photo.png"]
    assert read_image(labels / "x" / "photo.png").shape[:2] == (90, 60)  # tall.jpg's size
    assert read_image(labels / "y" / "photo.png").shape[:2] == (50, 80)  # wide.png's size


def test_a_list_naming_one_image_twice_is_refused(lite_model, tmp_path: Path, capsys) -> None:
    _, _, photos = lite_model
    listing = tmp_path / "test.txt"
    listing.write_text(f"{photos / 'tall.jpg'}\n{photos / 'wide.png'}\n"
                       f"{photos / '..' / photos.name / 'tall.jpg'}\n")
    assert main([*predict_argv(lite_model, tmp_path / "out"), str(listing)]) == 2
    assert "line 3 lists" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_save_dir_is_refused_before_the_model_loads(lite_model, tmp_path: Path,
                                                          capsys) -> None:
    config, _, photos = lite_model
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    missing_model = tmp_path / "missing.pt"  # loading it would fail: the save_dir check is first
    for save_dir, problem in ((a_file, "is a file, expected a folder"),
                              (a_file / "inside", "taken is a file, not a folder")):
        assert main(["predict", str(photos), "--config", str(config), "--model_path",
                     str(missing_model), "--save_dir", str(save_dir)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and problem in error and "missing.pt" not in error
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(not PHOTO.is_file(), reason="../shared/data/portraits absent")
def test_a_phone_photo_with_exif_orientation_is_segmented_upright(tmp_path: Path) -> None:
    from PIL import Image

    upright = tmp_path / "upright.jpg"
    sideways = tmp_path / "sideways.jpg"
    with Image.open(PHOTO) as photo:
        photo.save(upright, quality=95)
        exif = photo.getexif()
        exif[0x0112] = 6  # viewers turn the stored pixels 90 degrees clockwise
        photo.transpose(Image.Transpose.ROTATE_90).save(sideways, quality=95, exif=exif)
    for path in (upright, sideways):  # the packaged model
        assert main(["predict", str(path), "--save_dir", str(tmp_path / "out")]) == 0
    labels = tmp_path / "out" / "label"
    want = cv2.imread(str(labels / "upright.png"), cv2.IMREAD_UNCHANGED)
    got = cv2.imread(str(labels / "sideways.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == want.shape  # written in the displayed orientation
    person = want == 1
    assert person.mean() > 0.2  # a portrait
    iou = (person & (got == 1)).sum() / (person | (got == 1)).sum()
    assert iou > 0.9


@pytest.mark.skipif(not PHOTO.is_file(), reason="../shared/data/portraits absent")
def test_a_truncated_photo_is_segmented_with_a_one_line_warning(lite_model, tmp_path: Path,
                                                                capsys) -> None:
    data = PHOTO.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert main([*predict_argv(lite_model, tmp_path / "out"), str(cut)]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"humanseg predict: warning: {cut}: truncated JPEG (the data stops before the image's "
        "end); the missing lower part decodes as flat grey, so results there are meaningless"]
    assert (tmp_path / "out" / "cutout" / "cut.png").is_file()


def test_predict_region_options_reach_the_predictor(lite_model, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    import argparse

    from scipy import ndimage

    from humanseg.cli import predict
    from humanseg.cli.options import predictor_from_args
    from humanseg.ops import (
        DEFAULT_CONFIDENT_PEAK,
        DEFAULT_MIN_REGION_AREA,
        DEFAULT_MIN_REGION_FRAC,
    )

    config, model_path, photos = lite_model
    argv = [str(photos / "wide.png"), "--config", str(config), "--model_path", str(model_path)]
    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    loaded = []

    def recording_predictor_from_args(*args, **options):
        loaded.append(predictor_from_args(*args, **options))
        return loaded[-1]

    monkeypatch.setattr(predict, "predictor_from_args", recording_predictor_from_args)
    defaults = (DEFAULT_MIN_REGION_FRAC, DEFAULT_MIN_REGION_AREA, DEFAULT_CONFIDENT_PEAK, False)
    given = ["--min_region_frac", "0.3", "--min_region_area", "0.01", "--confident_peak", "0.8",
             "--main_subject"]
    for number, (options, expected) in enumerate((([], defaults),
                                                  (given, (0.3, 0.01, 0.8, True)))):
        save_dir = ["--save_dir", str(tmp_path / f"options{number}")]
        assert predict.run(parser.parse_args([*argv, *options, *save_dir])) == 0
        region_filter = loaded[-1].predictor.region_filter
        assert (region_filter.min_region_frac, region_filter.min_region_area,
                region_filter.confident_peak, region_filter.main_subject) == expected
        assert not region_filter.track_subject  # photos are not frames of one video
    assert main(["predict", *argv, "--main_subject", "--save_dir", str(tmp_path / "main")]) == 0
    label = cv2.imread(str(tmp_path / "main" / "label" / "wide.png"), cv2.IMREAD_UNCHANGED)
    assert ndimage.label(label == 1, np.ones((3, 3)))[1] <= 1
    assert main(["predict", *argv, "--min_region_frac", "1.5",
                 "--save_dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip()
    assert "min_region_frac must lie in [0, 1]" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
