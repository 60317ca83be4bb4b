"""Parity with PaddleSeg 2.8: same random weights, same input, logits within 1e-4.

`tools/paddle_reference.py parity` builds PaddleSeg's own models inside `.venv-paddle`
(`make parity` / `make test` build it), saves their .pdparams, inputs and eval-mode logits; we
convert the weights with our importer and compare.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from humanseg.cli import main
from humanseg.models import build_model, fuse, load_model_file
from humanseg.models.paddle_import import load_pdparams_into, paddle_to_torch_key, read_pdparams

ROOT = Path(__file__).resolve().parents[1]
PADDLE_PYTHON = ROOT / ".venv-paddle" / "bin" / "python"
TOLERANCE = 1e-4
SPECS = {
    "fcn_hrnet_w18": {"type": "FCN", "backbone": {"type": "HRNet_W18"}, "num_classes": 2},
    "fcn_hrnet_w18_small_v1": {
        "type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"}, "num_classes": 2,
    },
    "pphumanseg_lite": {"type": "PPHumanSegLite", "num_classes": 2},
}

pytestmark = pytest.mark.skipif(
    not PADDLE_PYTHON.exists(),
    reason=f"{PADDLE_PYTHON.relative_to(ROOT)} absent: run `make parity` to build PaddleSeg's venv",
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PaddleSeg's weights, inputs and logits for every model, written once per test run."""
    out = tmp_path_factory.mktemp("paddleseg")
    subprocess.run(
        [str(PADDLE_PYTHON), str(ROOT / "tools" / "paddle_reference.py"), "parity", str(out)],
        check=True,
        timeout=600,
    )
    return out


def ours(model: torch.nn.Module, reference: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Our eval-mode logits on PaddleSeg's input, and PaddleSeg's logits."""
    image = torch.from_numpy(np.load(reference / f"{name}_input.npy"))
    with torch.no_grad():
        logits = model.eval()(image).numpy()
    return logits, np.load(reference / f"{name}_logits.npy")


@pytest.mark.parametrize("name", list(SPECS))
def test_logits_match_paddleseg(reference: Path, name: str) -> None:
    model = load_pdparams_into(build_model(SPECS[name]), reference / f"{name}.pdparams")
    logits, expected = ours(model, reference, name)
    assert logits.shape == expected.shape
    assert expected.std() > 0.1  # the reference output varies, so a match means something
    assert np.abs(logits - expected).max() <= TOLERANCE
    fused_logits, _ = ours(fuse(model), reference, name)  # BN folded, as the predictor runs it
    assert np.abs(fused_logits - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", list(SPECS))
def test_training_mode_matches_paddleseg(reference: Path, name: str) -> None:
    # BN on batch statistics: same logits, same updated running means. Running variances differ
    # slightly by design: PyTorch updates them with the unbiased batch variance, Paddle with the
    # biased one (a factor n / (n - 1), n = N x H x W per channel; see docs/models.md).
    model = load_pdparams_into(build_model(SPECS[name]), reference / f"{name}.pdparams")
    image = torch.from_numpy(np.load(reference / f"{name}_input.npy"))
    with torch.no_grad():
        logits = model.train()(image).numpy()
    expected = np.load(reference / f"{name}_train_logits.npy")
    assert np.abs(logits - expected).max() <= TOLERANCE
    updated = read_pdparams(reference / f"{name}_after_train_step.pdparams")
    state = model.state_dict()
    means = {  # Lite's unused PaddleSeg branches have no counterpart here
        paddle_to_torch_key(k): v for k, v in updated.items() if k.endswith("._mean")
    }
    means = {k: v for k, v in means.items() if k in state}
    for key, paddle_mean in means.items():
        np.testing.assert_allclose(state[key].numpy(), paddle_mean, atol=1e-5, err_msg=key)
    assert len(means) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_converted_model_file_matches_paddleseg(reference: Path, tmp_path: Path) -> None:
    name = "fcn_hrnet_w18_small_v1"
    config = tmp_path / "model.yml"
    config.write_text(yaml.safe_dump({"model": SPECS[name]}))
    dst = tmp_path / "model.pt"
    status = main([
        "convert-paddle", "--src", str(reference / f"{name}.pdparams"),
        "--config", str(config), "--dst", str(dst),
    ])
    assert status == 0
    logits, expected = ours(load_model_file(build_model(SPECS[name]), dst), reference, name)
    assert np.abs(logits - expected).max() <= TOLERANCE
