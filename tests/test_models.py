"""Models: registry and config keys, shapes and size errors, hand-checked layer semantics,
autocast and tracing, model files. Every registered model is built, run, checked against its
stride and exported to ONNX (the export verb itself is tested in test_export.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from humanseg.cli import main
from humanseg.errors import HumanSegError
from humanseg.models import MODELS, SegmentationModel, build_model, fuse, load_model_file
from humanseg.models.backbones import BACKBONES
from humanseg.models.info import count_flops
from humanseg.models.layers import ConvBN, channels_last_weights, with_zero_channels
from humanseg.models.pphumanseg_lite import ShuffleBlock
from humanseg.registry import config_keys

LITE = {"type": "PPHumanSegLite", "num_classes": 3}
HRNET_SMALL = {"type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"}, "num_classes": 3}
HRNET_W18 = {"type": "FCN", "backbone": {"type": "HRNet_W18"}, "num_classes": 2}


def test_registry_names_follow_paddleseg() -> None:
    assert set(MODELS) == {"FCN", "PPHumanSegLite"}
    assert set(BACKBONES) == {"HRNet_W18", "HRNet_W18_Small_V1"}


def registered_specs() -> list[dict]:
    """A 3-class spec of every registered model, on every registered backbone where it takes one:
    a model added with the decorator is tested here without editing this file."""
    specs = []
    for name, factory in MODELS.items():
        if "backbone" in config_keys(factory)[0]:
            specs += [{"type": name, "backbone": {"type": backbone}, "num_classes": 3}
                      for backbone in BACKBONES]
        else:
            specs.append({"type": name, "num_classes": 3})
    return specs


REGISTERED = registered_specs()
EXPORT_PARAMETER_LIMIT = 5_000_000  # FCN on HRNet_W18 (9.6 M) is left to its smaller backbone
REGISTERED_IDS = ["-".join([spec["type"], *spec.get("backbone", {}).values()])
                  for spec in REGISTERED]


def contract_size(model: SegmentationModel) -> tuple[int, int]:
    """An input size the model must take: multiples of its divisor, or odd sides when it is 1."""
    divisor = model.size_divisor
    return (2 * divisor, 3 * divisor) if divisor > 1 else (37, 53)


@pytest.mark.parametrize("spec", REGISTERED, ids=REGISTERED_IDS)
def test_every_registered_model_keeps_the_contract(spec: dict) -> None:
    model = build_model(spec).eval()
    assert isinstance(model, SegmentationModel)
    assert (model.num_classes, model.in_channels) == (3, 3)
    size = contract_size(model)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3, *size)
    assert logits.is_contiguous() and torch.isfinite(logits).all()
    if model.size_divisor > 1:
        with pytest.raises(HumanSegError, match=f"is not a multiple of {model.size_divisor}"):
            model(torch.randn(1, 3, size[0] + 1, size[1]))
    with pytest.raises(HumanSegError, match=r"expected input \[N, 3, H, W\]"):
        model(torch.randn(1, 4, *size))


@pytest.mark.parametrize("spec", REGISTERED, ids=REGISTERED_IDS)
def test_every_registered_model_exports_to_onnx(spec: dict, tmp_path: Path, randomise) -> None:
    from humanseg.deploy.export import export_onnx

    model = randomise(build_model(spec))
    if sum(parameter.numel() for parameter in model.parameters()) > EXPORT_PARAMETER_LIMIT:
        pytest.skip("export of a network this large takes ~40 s on a 2-core CPU; the same "
                    "model type is exported on a smaller backbone")
    difference = export_onnx(model, tmp_path / "model.onnx", contract_size(model))
    assert (tmp_path / "model.onnx").is_file() and difference <= 1e-4


@pytest.mark.parametrize(("spec", "divisor"), [(LITE, 1), (HRNET_SMALL, 32), (HRNET_W18, 32)])
def test_size_divisors_are_the_networks_strides(spec: dict, divisor: int) -> None:
    # PP-HumanSeg-Lite resizes to its shortcut's size, so any size works; HRNet halves 5 times.
    assert build_model(spec).size_divisor == divisor


def test_hrnet_backbone_widths() -> None:
    # 18+36+72+144 and 16+32+64+128 channels concatenated at 1/4 resolution.
    w18 = BACKBONES["HRNet_W18"]()
    small = BACKBONES["HRNet_W18_Small_V1"]()
    assert w18.feat_channels == [270] and small.feat_channels == [240]
    with torch.no_grad():
        (features,) = small.eval()(torch.randn(1, 3, 64, 32))
    assert features.shape == (1, 240, 16, 8)


def test_input_not_multiple_of_divisor_is_a_clear_error() -> None:
    model = build_model(HRNET_SMALL).eval()
    with pytest.raises(HumanSegError, match=r"100x96 \(HxW\) is not a multiple of 32.*128x96"):
        model(torch.randn(1, 3, 100, 96))


def test_wrong_channel_count_is_a_clear_error() -> None:
    model = build_model(LITE).eval()
    with pytest.raises(HumanSegError, match=r"expected input \[N, 3, H, W\], got \[1, 4, 32, 32\]"):
        model(torch.randn(1, 4, 32, 32))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "UNet", "num_classes": 2}, r"model\.type: unknown model 'UNet'"),
        ({"num_classes": 2}, r"model: must be a mapping with a `type` key"),
        ({**LITE, "colour": 1}, r"model\.colour: unknown key \(allowed here: align_corners"),
        (
            {"type": "FCN", "backbone": {"type": "HRNet_W99"}, "num_classes": 2},
            r"model\.backbone\.type: unknown backbone 'HRNet_W99'",
        ),
        (
            {"type": "FCN", "backbone": {"type": "HRNet_W18", "stage2_num_modules": 2},
             "num_classes": 2},
            r"model\.backbone\.stage2_num_modules: unknown key",
        ),
        (
            {"type": "FCN", "backbone": {"type": "HRNet_W18", "has_se": True}, "num_classes": 2},
            r"has_se and use_psa are not supported",
        ),
        ({**HRNET_SMALL, "backbone_indices": [3]}, r"backbone_indices \[3\] do not fit"),
        ({"type": "PPHumanSegLite"}, r"num_classes"),
        ({**LITE, "num_classes": 0}, r"PPHumanSegLite: num_classes must be an integer >= 1"),
        ({**HRNET_SMALL, "num_classes": "two"}, r"FCN: num_classes must be an integer >= 1"),
        ({"type": ["FCN"], "num_classes": 2}, r"model\.type: unknown model \['FCN'\]"),
    ],
)
def test_bad_specs_raise_humanseg_error(spec: dict, message: str) -> None:
    with pytest.raises(HumanSegError, match=message):
        build_model(spec)


def test_paddleseg_config_keys_are_accepted() -> None:
    spec = {
        "type": "FCN",
        "backbone": {"type": "HRNet_W18_Small_V1", "align_corners": False, "padding_same": True},
        "num_classes": 2,
        "backbone_indices": [-1],
        "align_corners": True,
        "channels": 16,
        "bias": False,
    }
    model = build_model(spec)
    assert model.align_corners is True
    assert model.head.project.conv.out_channels == 16
    assert model.head.classifier.bias is None
    lite = build_model({**LITE, "in_channels": 4, "align_corners": True})
    assert lite.stem.conv.in_channels == 4


def test_url_pretrained_is_ignored_with_one_warning() -> None:
    url = "https://example.invalid/weights/model_never_fetched.pdparams"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model({**LITE, "pretrained": url})
        build_model({**LITE, "pretrained": url})
    messages = [str(w.message) for w in caught if url in str(w.message)]
    assert len(messages) == 1 and "never downloads" in messages[0]


def test_local_pretrained_file_loads(tmp_path: Path) -> None:
    source = build_model(LITE)
    with torch.no_grad():
        source.classifier.pointwise.bn.bias.fill_(0.25)
    torch.save(source.state_dict(), tmp_path / "lite.pt")
    model = build_model({**LITE, "pretrained": str(tmp_path / "lite.pt")})
    assert torch.equal(model.classifier.pointwise.bn.bias, torch.full((3,), 0.25))


def test_stride2_same_padding_pads_only_after() -> None:
    # Paddle's padding='same' for k=3, s=2 on a 4x4 input: total pad 1, all of it after.
    unit = ConvBN(1, 1, 3, stride=2, relu=False, pad_end=True).eval()
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    with torch.no_grad():
        y = unit(x)[0, 0]
    # BN in eval with mean 0, var 1, eps 1e-5 divides by sqrt(1 + 1e-5).
    window_sums = torch.tensor([[0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 2 + 3 + 6 + 7 + 10 + 11],
                                [8 + 9 + 10 + 12 + 13 + 14, 10 + 11 + 14 + 15]], dtype=torch.float)
    torch.testing.assert_close(y, window_sums / (1 + 1e-5) ** 0.5)


def test_batchnorm_momentum_is_paddle_0_9() -> None:
    # Paddle momentum 0.9: running = 0.9 * running + 0.1 * batch statistic.
    unit = ConvBN(1, 1, 1, relu=False).train()
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
    unit(torch.full((2, 1, 2, 2), 3.0))
    assert unit.bn.running_mean.item() == pytest.approx(0.9 * 0.0 + 0.1 * 3.0)
    assert unit.bn.eps == 1e-5


def test_shuffle_block_interleaves_shortcut_and_branch() -> None:
    # Zero weights make the branch output relu(BN bias) = 0.5 everywhere; the shortcut is the
    # first half of the input. Concat [x0, x1, b, b] shuffled (2 groups) -> [x0, b, x1, b].
    block = ShuffleBlock(4, stride=1).eval()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.bias.fill_(0.5)
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        y = block(x)
    half = torch.full((3, 3), 0.5)
    for channel, expected in enumerate([x[0, 0], half, x[0, 1], half]):
        torch.testing.assert_close(y[0, channel], expected)


def randomize(model: nn.Module, bn_scale: tuple[float, float], seed: int = 0) -> nn.Module:
    """Weights of unit variance gain and non-trivial BN statistics, so BN folding is exercised
    (PaddleSeg's initialisation leaves the running statistics at 0 and 1, the logits near 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, fan_in**-0.5, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(*bn_scale, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


@pytest.mark.parametrize(
    ("spec", "bn_scale", "size"),
    [(LITE, (0.5, 1.5), (70, 98)), (HRNET_SMALL, (0.5, 1.5), (64, 96)),
     (HRNET_W18, (0.3, 0.8), (64, 96))],
)
def test_fused_model_gives_the_unfused_logits(
    spec: dict, bn_scale: tuple[float, float], size: tuple[int, int]
) -> None:
    model = randomize(build_model(spec), bn_scale).eval()
    fused = fuse(model)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, actual = model(x), fused(x)
    assert expected.std() > 0.1  # logits that vary, so agreement means something
    assert (actual - expected).abs().max() <= 1e-4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is kept


def test_channels_last_weights_keep_the_logits_on_small_batch_one_inputs() -> None:
    # 64x96 sends HRNet's low-resolution branches through PyTorch's own (non-oneDNN) kernel
    model = randomize(build_model(HRNET_SMALL), (0.5, 1.5)).eval()
    fused = fuse(model)
    laid_out = channels_last_weights(fuse(model))
    convs = [m for m in laid_out.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, actual = fused(x), laid_out(x)
    assert expected.std() > 0.1
    assert (actual - expected).abs().max() <= 1e-4


def test_lite_export_form_widens_the_shortcut_to_whole_channel_blocks_with_the_same_logits(
) -> None:
    model = randomize(build_model(LITE), (0.5, 1.5)).eval()
    exported = model.export_form()
    # 18 shortcut channels + 64 decoder channels = 82 become 32 + 64 = 96, whole blocks of 16
    assert exported.shortcut.conv.out_channels == 32
    assert exported.decode1.depthwise.conv.groups == 96
    assert exported.decode1.pointwise.conv.in_channels == 96
    x = torch.randn(2, 3, 70, 98, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, actual = model(x), exported(x)
    assert expected.std() > 0.1
    assert (actual - expected).abs().max() <= 1e-4


@pytest.mark.parametrize(("inputs", "depthwise"), [(False, False), (True, False), (True, True)])
def test_zero_channels_leave_every_other_output_unchanged(inputs: bool, depthwise: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    channels = 5
    conv = nn.Conv2d(channels, channels if depthwise else 3, 3, padding=1,
                     groups=channels if depthwise else 1)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        conv.bias.normal_(generator=generator)
    wider = with_zero_channels(conv, 2, 4, inputs)
    x = torch.randn(1, channels, 6, 7, generator=generator)
    with torch.no_grad():
        expected = conv(x)
        if inputs:  # the new input channels carry anything at all: their weights are zero
            x = torch.cat([x[:, :2], torch.randn(1, 4, 6, 7, generator=generator), x[:, 2:]], 1)
        actual = wider(x)
    if inputs and not depthwise:
        assert actual.shape[1] == expected.shape[1]
    else:  # four new outputs at 2..5, each exactly 0
        assert actual.shape[1] == expected.shape[1] + 4
        assert torch.equal(actual[:, 2:6], torch.zeros_like(actual[:, 2:6]))
        actual = torch.cat([actual[:, :2], actual[:, 6:]], 1)
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("spec", [LITE, HRNET_SMALL])
def test_every_parameter_gets_a_gradient(spec: dict) -> None:
    # No parameter outside the forward path (DDP needs none unused).
    model = build_model(spec).train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("spec", [LITE, HRNET_SMALL])
def test_runs_under_cpu_bfloat16_autocast(spec: dict) -> None:
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16 and low.shape == reference.shape
    assert (low.float() - reference).abs().max() <= 0.05 * reference.abs().max() + 1e-3


@pytest.mark.parametrize("spec", [LITE, HRNET_SMALL])
def test_trace_matches_eager(spec: dict) -> None:
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x))


def test_model_file_round_trip(tmp_path: Path) -> None:
    source = build_model(HRNET_SMALL)
    with torch.no_grad():
        source.head.classifier.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    torch.save(source.state_dict(), tmp_path / "model.pt")
    loaded = load_model_file(build_model(HRNET_SMALL), tmp_path / "model.pt")
    assert torch.equal(loaded.head.classifier.bias, torch.tensor([1.0, 2.0, 3.0]))


def test_model_file_errors(tmp_path: Path) -> None:
    model = build_model(LITE)
    with pytest.raises(HumanSegError, match="model file not found"):
        load_model_file(model, tmp_path / "absent.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(HumanSegError, match="notes.pt: not a PyTorch model file"):
        load_model_file(model, tmp_path / "notes.pt")
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(HumanSegError, match="not a model state_dict"):
        load_model_file(model, tmp_path / "meta.pt")


def test_model_file_that_does_not_fit_names_every_key(tmp_path: Path) -> None:
    state = build_model({**LITE, "num_classes": 2}).state_dict()
    state.pop("stem.conv.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "two_class.pt")
    with pytest.raises(HumanSegError) as caught:
        load_model_file(build_model(LITE), tmp_path / "two_class.pt")
    message = str(caught.value)
    assert "missing 1: stem.conv.weight" in message
    assert "unexpected 1: extra.weight" in message
    assert "classifier.pointwise.conv.weight (2, 64, 1, 1) (model: (3, 64, 1, 1))" in message


def test_weights_of_another_architecture_give_counts_and_a_few_names(tmp_path: Path) -> None:
    hrnet = build_model({"type": "FCN", "backbone": {"type": "HRNet_W18_Small_V1"},
                         "num_classes": 2})
    torch.save(hrnet.state_dict(), tmp_path / "hrnet.pt")
    lite = build_model({**LITE, "num_classes": 2})
    with pytest.raises(HumanSegError) as caught:
        load_model_file(lite, tmp_path / "hrnet.pt")
    message = str(caught.value)
    missing = [key for key in lite.state_dict() if key not in hrnet.state_dict()]
    unexpected = [key for key in hrnet.state_dict() if key not in lite.state_dict()]
    assert len(missing) == len(lite.state_dict()) and len(unexpected) > 100  # nothing shared
    assert f"missing {len(missing)}: {', '.join(missing[:3])}, ... ({len(missing) - 3} more)" in (
        message)
    assert f"unexpected {len(unexpected)}: " in message
    assert "no key matches" in message
    assert len(message) < 600 and "\n" not in message


def conv_flops_by_hooks(model: nn.Module, x: torch.Tensor) -> int:
    """Independent FLOP count: 2 x output elements x (in_channels / groups) x kernel area."""
    total = 0

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("spec", [LITE, HRNET_SMALL])
def test_flop_count_matches_conv_hooks(spec: dict) -> None:
    model = build_model(spec)
    assert count_flops(model, 64, 96) == conv_flops_by_hooks(model, torch.zeros(1, 3, 64, 96))


def test_info_cli_reads_the_val_resize(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "lite.yml"
    resize = {"type": "Resize", "target_size": [96, 64]}  # PaddleSeg order: [W, H]
    config.write_text(yaml.safe_dump({
        "model": {**LITE, "pretrained": "https://example.invalid/lite.pdparams"},
        "val_dataset": {"type": "Dataset", "dataset_root": str(tmp_path), "val_path": "v.txt",
                        "num_classes": 3, "mode": "val", "transforms": [resize]},
    }))
    assert main(["info", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    model = build_model(LITE)
    params = sum(p.numel() for p in model.parameters())
    flops = conv_flops_by_hooks(model, torch.zeros(1, 3, 64, 96))
    assert f"parameters: {params:,}" in out
    assert "input: 1x3x64x96" in out
    assert f"FLOPs: {flops / 1e9:.3f} G" in out


def test_info_cli_needs_a_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "fcn.yml"
    config.write_text(yaml.safe_dump({"model": HRNET_SMALL}))
    assert main(["info", "--config", str(config)]) == 2
    assert "give --input_size H W" in capsys.readouterr().err
    assert main(["info", "--config", str(config), "--input_size", "100", "64"]) == 2
    assert "100x64 (HxW) is not a multiple of 32" in capsys.readouterr().err
    assert main(["info", "--config", str(config), "--input_size", "64", "64"]) == 0
    assert "model: FCN (HRNet_W18_Small_V1), 3 classes" in capsys.readouterr().out


CONFIGS = sorted(  # every runnable config; files under _base_/ are fragments without a model
    path
    for path in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yml")
    if "_base_" not in path.parts
)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_info_works_for_every_shipped_config(
    config: Path, capsys: pytest.CaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # URL `pretrained` keys warn that they are ignored
        assert main(["info", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "parameters: " in out and "FLOPs: " in out
