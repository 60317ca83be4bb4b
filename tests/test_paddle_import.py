"""PaddleSeg weight import without paddle: key translation, safe reading, misfit errors, CLI.

The fixtures in tests/data/paddleseg/ list the state_dict names and shapes of PaddleSeg 2.8's
own models, written by `tools/paddle_reference.py keys` (an independent oracle of the layout).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from humanseg.cli import main
from humanseg.errors import HumanSegError
from humanseg.models import build_model, load_model_file
from humanseg.models.paddle_import import convert_pdparams, paddle_to_torch_key, read_pdparams

FIXTURES = Path(__file__).resolve().parent / "data" / "paddleseg"
SPECS = {
    "pphumanseg_lite": {"type": "PPHumanSegLite", "num_classes": 2},
    "fcn_hrnet_w18_small_v1": {
        "type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"}, "num_classes": 2,
    },
    "fcn_hrnet_w18": {"type": "FCN", "backbone": {"type": "HRNet_W18"}, "num_classes": 2},
}


def paddle_arrays(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under PaddleSeg's own names and shapes for model `name`."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for line in (FIXTURES / f"{name}.keys.txt").read_text().splitlines():
        key, shape = line.split()
        dims = tuple(int(d) for d in shape.split(","))
        arrays[key] = rng.standard_normal(dims).astype(np.float32)
    return arrays


def write_pdparams(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A .pdparams file as paddle.save writes it: a pickle with Paddle's name-map entry."""
    payload = {**arrays, "StructuredToParameterName@@": {k: f"param_{i}" for i, k in
                                                         enumerate(arrays)}}
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


@pytest.mark.parametrize(
    ("paddle_key", "ours"),
    [
        ("backbone.conv_layer1_2._batch_norm._variance", "backbone.stem2.bn.running_var"),
        ("backbone.la1.bb_layer2_1.conv_down._conv.weight",
         "backbone.layer1.0.conv_down.conv.weight"),
        ("backbone.tr3.transition_tr3_layer_4._batch_norm._mean",
         "backbone.transitions.2.convs.3.bn.running_mean"),
        ("backbone.st3.stage_st3_4.branches_func.bb_st3_4_branch_layer_3_2.conv2._conv.weight",
         "backbone.stages.1.3.branches.2.1.conv2.conv.weight"),
        ("backbone.st4.stage_st4_1.fuse_func.residual_st4_1_layer_4_1_3._batch_norm.bias",
         "backbone.stages.2.0.fuse.3.0.2.bn.bias"),
        ("backbone.st2.stage_st2_1.fuse_func.residual_st2_1_layer_1_2._conv.weight",
         "backbone.stages.0.0.fuse.0.1.conv.weight"),
        ("head.conv_1._conv.bias", "head.project.conv.bias"),
        ("head.cls.weight", "head.classifier.weight"),
        ("conv_bn1._batch_norm.weight", "shortcut.bn.weight"),
        ("block2.0._depthwise_separable_0.piontwise_conv._conv.weight",
         "block2.0.down_branch.pointwise.conv.weight"),
        ("block1.3._conv._batch_norm._mean", "block1.3.pointwise.bn.running_mean"),
        ("block1.3._depthwise_separable_1.depthwise_conv._conv.weight",
         "block1.3.separable.depthwise.conv.weight"),
        ("depthwise_separable2.piontwise_conv._batch_norm.bias", "classifier.pointwise.bn.bias"),
    ],
)
def test_key_translation(paddle_key: str, ours: str) -> None:
    assert paddle_to_torch_key(paddle_key) == ours


@pytest.mark.parametrize("name", list(SPECS))
def test_every_paddleseg_tensor_lands_in_our_model(name: str) -> None:
    arrays = paddle_arrays(name)
    model = build_model(SPECS[name])
    state = convert_pdparams(model, arrays, name)
    assert set(state) == set(model.state_dict())
    for paddle_key, array in arrays.items():
        key = paddle_to_torch_key(paddle_key)
        if key in state:
            np.testing.assert_array_equal(state[key].numpy(), array)


def test_lite_drops_only_paddlesegs_unused_branches() -> None:
    # 3 + 7 stride-1 units, each with an unused separable branch of 2 convs + 2 BNs (4 tensors
    # each): 10 x 10 tensors PaddleSeg never uses.
    arrays = paddle_arrays("pphumanseg_lite")
    model = build_model(SPECS["pphumanseg_lite"])
    used = {paddle_to_torch_key(k) for k in arrays} & set(model.state_dict())
    assert len(arrays) - len(used) == 10 * 10


def test_misfits_are_all_named_in_one_error() -> None:
    arrays = paddle_arrays("fcn_hrnet_w18_small_v1")
    del arrays["backbone.conv_layer1_1._conv.weight"]
    arrays["backbone.extra._conv.weight"] = np.zeros((1,), np.float32)
    arrays["head.cls.weight"] = np.zeros((19, 240, 1, 1), np.float32)
    with pytest.raises(HumanSegError) as caught:
        convert_pdparams(build_model(SPECS["fcn_hrnet_w18_small_v1"]), arrays, "x.pdparams")
    message = str(caught.value)
    assert message.startswith("x.pdparams: weights do not fit FCN")
    assert "missing 1: backbone.stem1.conv.weight" in message
    assert "unexpected 1: backbone.extra._conv.weight" in message
    assert "head.cls.weight (19, 240, 1, 1) (ours head.classifier.weight: (2, 240, 1, 1))" in (
        message
    )


def test_read_pdparams_skips_paddle_metadata(tmp_path: Path) -> None:
    arrays = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    read = read_pdparams(write_pdparams(tmp_path / "m.pdparams", arrays))
    assert list(read) == ["a.weight"]
    np.testing.assert_array_equal(read["a.weight"], arrays["a.weight"])


def test_read_pdparams_refuses_code_in_the_pickle(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo owned",))

    (tmp_path / "evil.pdparams").write_bytes(pickle.dumps({"w": Exploit()}))
    with pytest.raises(HumanSegError, match=r"evil.pdparams: not a PaddlePaddle .pdparams file"):
        read_pdparams(tmp_path / "evil.pdparams")


def test_read_pdparams_errors(tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match="absent.pdparams: .pdparams file not found"):
        read_pdparams(tmp_path / "absent.pdparams")
    (tmp_path / "text.pdparams").write_text("hello")
    with pytest.raises(HumanSegError, match="text.pdparams: not a PaddlePaddle"):
        read_pdparams(tmp_path / "text.pdparams")
    (tmp_path / "list.pdparams").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(HumanSegError, match="expected a mapping"):
        read_pdparams(tmp_path / "list.pdparams")


def test_pdparams_pretrained_path_loads(tmp_path: Path) -> None:
    arrays = paddle_arrays("pphumanseg_lite", seed=3)
    path = write_pdparams(tmp_path / "lite.pdparams", arrays)
    model = build_model({**SPECS["pphumanseg_lite"], "pretrained": str(path)})
    np.testing.assert_array_equal(
        model.stem.conv.weight.detach().numpy(), arrays["conv_bn0._conv.weight"]
    )


def convert(src: Path, config: Path, dst: Path) -> int:
    """`humanseg convert-paddle` through the CLI entry point; returns the exit status."""
    return main(["convert-paddle", "--src", str(src), "--config", str(config), "--dst", str(dst)])


def test_convert_paddle_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arrays = paddle_arrays("fcn_hrnet_w18_small_v1", seed=1)
    src = write_pdparams(tmp_path / "model.pdparams", arrays)
    config = tmp_path / "fcn.yml"
    spec = {**SPECS["fcn_hrnet_w18_small_v1"], "pretrained": "https://example.invalid/x"}
    config.write_text(yaml.safe_dump({"model": spec}))
    dst = tmp_path / "out" / "model.pt"
    assert convert(src, config, dst) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model_file(build_model(SPECS["fcn_hrnet_w18_small_v1"]), dst)
    torch.testing.assert_close(
        model.head.classifier.weight, torch.from_numpy(arrays["head.cls.weight"])
    )


def test_convert_paddle_cli_bad_weights_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = write_pdparams(tmp_path / "lite.pdparams", paddle_arrays("pphumanseg_lite"))
    config = tmp_path / "fcn.yml"
    config.write_text(yaml.safe_dump({"model": SPECS["fcn_hrnet_w18_small_v1"]}))
    dst = tmp_path / "model.pt"
    assert convert(src, config, dst) == 2
    assert "weights do not fit FCN" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == sorted([src, config])  # no output, no temporary file


def test_backbone_pretrained_pdparams_loads_without_the_prefix(tmp_path: Path) -> None:
    # PaddleSeg backbone weights name keys from the backbone down (no `backbone.` prefix).
    arrays = {
        key.removeprefix("backbone."): array
        for key, array in paddle_arrays("fcn_hrnet_w18_small_v1", seed=2).items()
        if key.startswith("backbone.")
    }
    path = write_pdparams(tmp_path / "hrnet_small.pdparams", arrays)
    spec = {**SPECS["fcn_hrnet_w18_small_v1"]}
    spec["backbone"] = {"type": "HRNet_W18_Small_V1", "pretrained": str(path)}
    model = build_model(spec)
    np.testing.assert_array_equal(
        model.backbone.stages[2][0].fuse[3][0][2].bn.running_var.numpy(),
        arrays["st4.stage_st4_1.fuse_func.residual_st4_1_layer_4_1_3._batch_norm._variance"],
    )
