"""`humanseg video` and temporal smoothing, on short videos generated from real photos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from humanseg.cli import video
from humanseg.cli.options import predictor_from_args
from humanseg.deploy.api import build_predictor
from humanseg.deploy.compose import Background
from humanseg.deploy.smoothing import FlowSmoother, flicker
from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import read_image, read_mask

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits"
FRAME_SIZE = (96, 128)  # H, W of the generated test videos


def still_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """The astronaut photo as a still scene: sensor noise and a 1-pixel camera shake per frame."""
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
    photo = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    frames = []
    for _ in range(count):
        shift = np.float32([[1, 0, rng.integers(-1, 2)], [0, 1, rng.integers(-1, 2)]])
        moved = cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
        noisy = moved.astype(np.float32) + rng.normal(0, 4, moved.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def write_test_video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    """Encode RGB frames as an mp4 file."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Decode every frame of a video file (RGB)."""
    capture = cv2.VideoCapture(str(path))
    frames = list(video.read_frames(capture))
    capture.release()
    return frames


def run_video(*argv: str) -> int:
    """Parse `argv` with the verb's own options and run it (as `humanseg video` would)."""
    parser = argparse.ArgumentParser()
    video.add_arguments(parser)
    return video.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory, write_model) -> tuple[Path, Path]:
    """A random PPHumanSegLite and its config (inputs resized to 64x96)."""
    return write_model(tmp_path_factory.mktemp("model"))


def test_video_end_to_end(tmp_path: Path, model_files, capsys) -> None:
    config, model_path = model_files
    source = write_test_video(tmp_path / "still.mp4", still_frames(8))
    output = tmp_path / "out" / "green.mp4"
    threads_before = torch.get_num_threads()
    code = run_video(
        "--input",
        str(source),
        "--output",
        str(output),
        "--background",
        "#00ff00",
        "--config",
        str(config),
        "--model_path",
        str(model_path),
    )
    assert code == 0
    frames = read_video(output)
    assert len(frames) == 8
    assert frames[0].shape == (*FRAME_SIZE, 3)
    assert "FPS" in capsys.readouterr().out
    assert torch.get_num_threads() == threads_before  # --threads applies to this run only
    assert sorted(p.name for p in output.parent.iterdir()) == ["green.mp4"]  # no temp files


def test_video_region_options_follow_the_subject(tmp_path: Path, model_files, monkeypatch) -> None:
    config, model_path = model_files
    filters, edges = [], []

    def recording_predictor_from_args(*args, **options):
        segmenter = predictor_from_args(*args, **options)
        filters.append(segmenter.predictor.region_filter)
        edges.append(segmenter.predictor.edges)
        return segmenter

    monkeypatch.setattr(video, "predictor_from_args", recording_predictor_from_args)
    source = write_test_video(tmp_path / "still.mp4", still_frames(3))
    output = tmp_path / "out.mp4"
    model_args = ["--config", str(config), "--model_path", str(model_path)]
    assert run_video("--input", str(source), "--output", str(output), *model_args,
                     "--main_subject", "--min_region_frac", "0.2") == 0
    assert len(read_video(output)) == 3
    (region_filter,) = filters
    assert (region_filter.min_region_frac, region_filter.main_subject) == (0.2, True)
    assert region_filter.track_subject  # frames of one video: the subject is followed
    # Regions are chosen on the network's probabilities: the model_files config's 64x96 input.
    assert region_filter.previous_subject.shape == (64, 96)
    # guided-filter edges are off in video unless asked for, with the cleaning's fraction
    assert run_video("--input", str(source), "--output", str(tmp_path / "edges.mp4"),
                     *model_args, "--edge_refine", "--min_region_frac", "0.1") == 0
    assert edges[0] is None and edges[1].min_region_frac == 0.1
    with pytest.raises(HumanSegError, match=r"min_region_frac must lie in \[0, 1\]"):
        run_video("--input", str(source), "--output", str(tmp_path / "bad.mp4"), *model_args,
                  "--min_region_frac", "-0.1")
    assert not (tmp_path / "bad.mp4").exists()


def test_smoothing_reduces_flicker_of_a_real_model(model_files) -> None:
    """A random model's masks jump with the noise; fused along the flow they change much less."""
    config, model_path = model_files
    predictor = build_predictor(config, model_path)
    frames = still_frames(12)
    raw = [1.0 - predictor(frame)[0] for frame in frames]
    smoother = FlowSmoother()
    smoothed = [smoother(frame, alpha) for frame, alpha in zip(frames, raw, strict=True)]
    assert flicker(smoothed) < 0.5 * flicker(raw)


@pytest.mark.skipif(not PORTRAITS.is_dir(), reason="needs ../shared/data/portraits (real photos)")
def test_smoothing_follows_motion_instead_of_trailing() -> None:
    """A portrait sliding across the frame: the smoothed mask stays on the person (vs its label).

    An EMA of the masks would lag behind by several pixels; the flow-warped fusion must stay
    about as close to the true (shifted) label as the noisy per-frame masks themselves.
    """
    photo = read_image(PORTRAITS / "images" / "vs_1.jpg")
    label = read_mask(PORTRAITS / "masks" / "vs_1.png").astype(np.float32)
    height, width = label.shape
    rng = np.random.default_rng(0)
    smoother = FlowSmoother()
    raw_error, smoothed_error, ema_error = [], [], []
    ema = None
    for step in range(12):
        shift = np.float32([[1, 0, 3 * step], [0, 1, step]])
        frame = cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
        truth = cv2.warpAffine(
            label, shift, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
        )
        noise = rng.normal(0, 0.2, truth.shape).astype(np.float32)
        edges = cv2.GaussianBlur(truth, (0, 0), 2)
        alpha = np.clip(truth + noise * 4 * edges * (1 - edges), 0, 1)  # noisy at the boundary
        smoothed = smoother(frame, alpha)
        ema = alpha if ema is None else 0.4 * alpha + 0.6 * ema
        raw_error.append(np.abs(alpha - truth).mean())
        smoothed_error.append(np.abs(smoothed - truth).mean())
        ema_error.append(np.abs(ema - truth).mean())
    assert np.mean(smoothed_error) < 1.5 * np.mean(raw_error)
    assert np.mean(smoothed_error) < 0.3 * np.mean(ema_error)


def test_flicker_measure_by_hand() -> None:
    masks = [np.zeros((2, 2)), np.ones((2, 2)), np.array([[1, 0], [1, 0]])]
    # changes: all 4 pixels (1.0), then 2 of 4 pixels (0.5): mean 0.75
    assert flicker(masks) == pytest.approx(0.75)
    with pytest.raises(HumanSegError, match="two masks"):
        flicker(masks[:1])


def test_failure_mid_video_leaves_no_output(tmp_path: Path) -> None:
    frames = still_frames(5)
    seen = []

    def failing_segmenter(frame: np.ndarray) -> np.ndarray:
        seen.append(frame)
        if len(seen) == 3:
            raise HumanSegError("model failed on frame 3")
        return np.ones(frame.shape[:2], np.float32)

    output = tmp_path / "out.mp4"
    with pytest.raises(HumanSegError, match="frame 3"):
        video.write_video(iter(frames), failing_segmenter, Background(blur=True), output, fps=10)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_clear_errors(tmp_path: Path, model_files) -> None:
    config, model_path = model_files
    model_args = ["--config", str(config), "--model_path", str(model_path)]
    output = tmp_path / "out.mp4"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01 this is not a video" * 50)
    with pytest.raises(HumanSegError, match="missing.mp4: video file not found"):
        run_video("--input", str(tmp_path / "missing.mp4"), "--output", str(output), *model_args)
    with pytest.raises(HumanSegError, match="corrupt.mp4"):
        run_video("--input", str(corrupt), "--output", str(output), *model_args)
    with pytest.raises(HumanSegError, match="camera 57: not available"):
        run_video("--input", "57", "--output", str(output), *model_args)
    with pytest.raises(HumanSegError, match="#RRGGBB"):
        run_video("--input", str(corrupt), "--output", str(output), "--background", "#12")
    source = write_test_video(tmp_path / "still.mp4", still_frames(2))
    with pytest.raises(HumanSegError, match="corrupt.mp4: not a loadable ONNX model"):
        run_video(
            "--input",
            str(source),
            "--output",
            str(output),
            "--backend",
            "onnxruntime",
            "--config",
            str(config),
            "--model_path",
            str(corrupt),
        )
    with pytest.raises(HumanSegError, match="out.gif: end it in one of .mp4"):
        run_video("--input", str(corrupt), "--output", str(tmp_path / "out.gif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4", "still.mp4"]


def interrupted_after(frames: list[np.ndarray], count: int):
    """Yield `count` frames, then raise KeyboardInterrupt as Ctrl-C on a webcam would."""
    yield from frames[:count]
    raise KeyboardInterrupt


@pytest.mark.parametrize("keep", [True, False], ids=["webcam", "file"])
def test_ctrl_c_keeps_a_webcam_recording_only(tmp_path: Path, keep: bool) -> None:
    frames = still_frames(5)
    output = tmp_path / "out.mp4"

    def segment(frame: np.ndarray) -> np.ndarray:
        return np.ones(frame.shape[:2], np.float32)

    if keep:
        stats = video.write_video(
            interrupted_after(frames, 3),
            segment,
            Background(blur=True),
            output,
            fps=10,
            keep_on_interrupt=True,
        )
        assert stats.frames == 3 and len(read_video(output)) == 3
    else:
        with pytest.raises(KeyboardInterrupt):
            video.write_video(
                interrupted_after(frames, 3), segment, Background(blur=True), output, fps=10
            )
        assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_the_input_is_refused(tmp_path: Path, model_files) -> None:
    config, model_path = model_files
    source = write_test_video(tmp_path / "call.mp4", still_frames(3))
    original = source.read_bytes()
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    for output in ("call.mp4", "link.mp4", "hard.mp4", "../" + tmp_path.name + "/call.mp4"):
        with pytest.raises(HumanSegError, match=f"--output .*{output}: is the input video"):
            run_video("--input", str(source), "--output", str(tmp_path / output),
                      "--config", str(config), "--model_path", str(model_path))
    assert source.read_bytes() == original


def test_bad_output_paths_are_refused_before_the_model_loads(tmp_path: Path) -> None:
    source = write_test_video(tmp_path / "in.mp4", still_frames(2))
    (tmp_path / "folder.mp4").mkdir()
    missing = ["--config", str(tmp_path / "no.yml"), "--model_path", str(tmp_path / "no.pt")]
    for output, problem in (("folder.mp4", "is a folder, expected a file"),
                            ("in.mp4/out.mp4", "in.mp4 is a file, not a folder")):
        with pytest.raises(HumanSegError, match=problem):
            run_video("--input", str(source), "--output", str(tmp_path / output), *missing)


def test_a_damaged_video_warns_how_many_frames_were_written(tmp_path: Path, model_files) -> None:
    config, model_path = model_files
    data = bytearray(write_test_video(tmp_path / "whole.mp4", still_frames(20)).read_bytes())
    start = len(data) // 2
    data[start:start + len(data) // 10] = bytes(len(data) // 10)  # a damaged stretch
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    output = tmp_path / "out.mp4"
    with pytest.warns(HumanSegWarning, match=r"damaged\.mp4: the video ended after (\d+) of its "
                      r"20 frames .*out\.mp4 holds the \1 frames") as caught:
        run_video("--input", str(damaged), "--output", str(output), "--config", str(config),
                  "--model_path", str(model_path), "--no-smooth")
    written = len(read_video(output))
    assert 0 < written < 20
    assert f"after {written} of its 20" in str(caught[0].message)
