"""The `teacher:` section: learning-without-forgetting distillation during training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from humanseg.data.inference import normalize
from humanseg.data.transforms import build_transforms
from humanseg.engine.distill import TERM_NAME, Teacher, grey_normalised
from humanseg.engine.train import train
from humanseg.errors import HumanSegError
from humanseg.models import build_model

LITE = {"type": "PPHumanSegLite", "num_classes": 2}


@pytest.fixture
def teacher_file(tmp_path: Path) -> Path:
    """A randomly initialised Lite with non-trivial outputs, saved as a model file."""
    torch.manual_seed(0)
    model = build_model(LITE)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.3)
    path = tmp_path / "teacher.pt"
    torch.save(model.state_dict(), path)
    return path


def numpy_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, written out."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_kl_to_itself_is_zero(teacher_file: Path) -> None:
    teacher = Teacher({"model_path": str(teacher_file)}, LITE, torch.device("cpu"))
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        own_logits = teacher.model(images)
    loss = teacher.loss(own_logits, images, torch.ones(2, 32, 48, dtype=torch.bool))
    assert abs(float(loss)) < 1e-6


def test_kl_matches_a_hand_computation_on_the_valid_pixels(teacher_file: Path) -> None:
    teacher = Teacher({"model_path": str(teacher_file), "temperature": 2.0},
                      LITE, torch.device("cpu"))
    images = torch.randn(1, 3, 16, 16)
    student = torch.randn(1, 2, 16, 16)
    valid = torch.zeros(1, 16, 16, dtype=torch.bool)
    valid[0, 3, 4] = valid[0, 10, 12] = True
    with torch.no_grad():
        teacher_logits = teacher.model(images).numpy()
    p = numpy_softmax(teacher_logits / 2.0)
    q = numpy_softmax(student.numpy() / 2.0)
    per_pixel = (p * (np.log(p) - np.log(q))).sum(axis=1)[0]
    expected = 4.0 * (per_pixel[3, 4] + per_pixel[10, 12]) / 2  # T^2 * mean over 2 pixels
    assert float(teacher.loss(student, images, valid)) == pytest.approx(expected, rel=1e-5)


def test_flip_averages_the_teacher_over_a_mirror(teacher_file: Path) -> None:
    plain = Teacher({"model_path": str(teacher_file)}, LITE, torch.device("cpu"))
    flipped = Teacher({"model_path": str(teacher_file), "flip": True}, LITE, torch.device("cpu"))
    images = torch.randn(1, 3, 24, 40)
    mirrored = plain.probabilities(images.flip(-1)).flip(-1)
    expected = 0.5 * (plain.probabilities(images) + mirrored)
    torch.testing.assert_close(flipped.probabilities(images), expected)


def test_a_descent_step_moves_the_student_towards_the_teacher(teacher_file: Path) -> None:
    teacher = Teacher({"model_path": str(teacher_file)}, LITE, torch.device("cpu"))
    student = build_model(LITE).eval()
    images = torch.randn(2, 3, 32, 32)
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    before = float(teacher.loss(student(images), images, valid).detach())
    for _ in range(5):
        optimizer.zero_grad()
        teacher.loss(student(images), images, valid).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(teacher.loss(student(images), images, valid))
    assert after < 0.9 * before


@pytest.mark.parametrize(("spec", "message"), [
    ({"model_path": "x.pt", "weight": 1}, r"teacher\.weight: unknown key"),
    ({"coef": 1.0}, r"teacher.model_path: the teacher's weights are required"),
    ({"model_path": "x.pt", "coef": 0}, r"teacher.coef: must be a number > 0"),
    ({"model_path": "x.pt", "input_size": [398]}, r"teacher.input_size: must be \[width"),
    ({"model_path": "x.pt", "grey_student": 1.5}, r"teacher.grey_student: must be a number in"),
    ({"model_path": "x.pt", "grey_student": 0.2}, r"teacher.grey_student: the train transforms"),
])
def test_bad_teacher_sections_name_the_key(spec: dict, message: str) -> None:
    with pytest.raises(HumanSegError, match=message):
        Teacher(spec, LITE, torch.device("cpu"))


@pytest.fixture
def teacher_config(tmp_path: Path, teacher_file: Path, make_blob_dataset,
                   blob_config) -> Callable[..., dict]:
    """`teacher_config(iters, **teacher_keys)`: a blob-dataset training config with a `teacher:`
    section on `teacher_file`."""
    root = make_blob_dataset(tmp_path / "blobs", train=8, val=2, size=32)

    def config(iters: int, **teacher_keys: float) -> dict:
        cfg = yaml.safe_load(blob_config(root, iters=iters, batch_size=2, learning_rate=0.01))
        cfg["teacher"] = {"model_path": str(teacher_file), **teacher_keys}
        return cfg

    return config


def test_training_with_a_teacher_logs_the_distillation_term(
    tmp_path: Path, teacher_config: Callable[..., dict], one_thread: None,
) -> None:
    cfg = teacher_config(4, coef=0.5)
    result = train(cfg, tmp_path / "run", seed=0, log_iters=2, progress=False)
    logged = result.losses[-1]
    assert logged[TERM_NAME] > 0
    # The total is the label losses plus coef times the logged (unweighted) distillation term.
    label_total = (logged["MixedLoss.CrossEntropyLoss"]
                   + 0.1 * logged["MixedLoss.SemanticConnectivityLoss"])
    assert logged["loss"] == pytest.approx(label_total + 0.5 * logged[TERM_NAME], rel=1e-4)


def test_skip_grey_leaves_grey_samples_out_of_the_term(teacher_file: Path) -> None:
    teacher = Teacher({"model_path": str(teacher_file), "skip_grey": True}, LITE,
                      torch.device("cpu"))
    everyone = Teacher({"model_path": str(teacher_file)}, LITE, torch.device("cpu"))
    torch.manual_seed(1)
    colour = torch.randn(1, 3, 16, 16)
    grey = torch.randn(1, 1, 16, 16).expand(1, 3, 16, 16)  # three equal channels
    images = torch.cat([colour, grey])
    student = torch.randn(2, 2, 16, 16)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    only_colour = everyone.loss(student[:1], images[:1], valid[:1])
    assert float(teacher.loss(student, images, valid)) == pytest.approx(float(only_colour),
                                                                        rel=1e-5)
    assert float(everyone.loss(student, images, valid)) != pytest.approx(float(only_colour),
                                                                         rel=1e-3)


def test_grey_normalised_is_the_normalised_luma_of_the_photo() -> None:
    """Against a hand computation (BT.601 luma of the pixels, then per-channel Normalize) and
    against RandomGrayscale itself (which rounds its grey to uint8: within half a grey level)."""
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    normalise = normalize(mean, std)
    normalised = torch.from_numpy(normalise.image(photo)[0]).permute(2, 0, 1)[None]
    grey = grey_normalised(normalised, normalise)[0].permute(1, 2, 0).numpy()
    luma = photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    by_hand = (luma[..., None] / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(grey, by_hand, atol=1e-4)
    always_grey = build_transforms([{"type": "RandomGrayscale", "prob": 1.0},
                                    {"type": "Normalize", "mean": list(mean), "std": list(std)}])
    by_transform = always_grey(photo)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(grey, by_transform, atol=0.5 / 255 / min(std) + 1e-4)


def test_grey_student_greys_that_share_of_samples_only(teacher_file: Path) -> None:
    normalise = normalize()
    images = torch.randn(400, 3, 2, 2)
    none = Teacher({"model_path": str(teacher_file)}, LITE, torch.device("cpu"), normalise)
    assert none.student_view(images) is images
    teacher = Teacher({"model_path": str(teacher_file), "grey_student": 0.25}, LITE,
                      torch.device("cpu"), normalise)
    torch.manual_seed(0)
    view = teacher.student_view(images)
    greyed = (view != images).flatten(1).any(dim=1)
    # Greyed samples hold three equal channels (mean and std are the same for all three here);
    # the others are untouched; about a quarter are greyed (binomial, 400 draws: sd 0.022).
    assert torch.allclose(view[greyed, 0], view[greyed, 1]) and \
        torch.allclose(view[greyed, 1], view[greyed, 2])
    assert torch.equal(view[~greyed], images[~greyed])
    assert 0.17 < float(greyed.float().mean()) < 0.33


def test_with_grey_student_the_teacher_sees_colour_and_the_student_grey(
    tmp_path: Path, teacher_config: Callable[..., dict], one_thread: None,
) -> None:
    cfg = teacher_config(3, grey_student=1.0)
    seen: list[tuple[bool, bool]] = []  # (training mode, input grey) per whole-model call

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if type(module).__name__ == "PPHumanSegLite":
            image = inputs[0]
            grey = bool(torch.allclose(image[:, 0], image[:, 1], atol=1e-6)
                        and torch.allclose(image[:, 1], image[:, 2], atol=1e-6))
            seen.append((module.training, grey))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        train(cfg, tmp_path / "run", seed=0, log_iters=1, progress=False)
    finally:
        hook.remove()
    assert [grey for training, grey in seen if training] == [True] * 3  # the student, 3 steps
    teacher_calls = [grey for training, grey in seen if not training]
    assert teacher_calls and not any(teacher_calls)  # the frozen teacher: colour batches
