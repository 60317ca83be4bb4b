"""PaddleSeg `.pdparams` -> our modules, and the `humanseg convert-paddle` verb.

A `.pdparams` file is a pickle of `{name: numpy array}`; it is read with a restricted unpickler
(numpy arrays and plain containers only), so neither paddle nor arbitrary code is involved.
Names are translated by `paddle_to_torch_key` (rules in `KEY_RULES`, documented in
docs/models.md); conv weights are OIHW in both frameworks and BN statistics keep their meaning
(`_mean` -> `running_mean`, `_variance` -> `running_var`), so values are copied unchanged.
"""

from __future__ import annotations

import argparse
import io
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.io import atomic_path
from humanseg.models import raise_if_misfit

# Paddle's own bookkeeping entry in saved state dicts; not a tensor.
PADDLE_METADATA_KEYS = frozenset({"StructuredToParameterName@@"})

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rule(pattern: str, replace: Callable[[re.Match[str]], str] | str) -> Rule:
    """A compiled substitution; a string replacement is used verbatim (with \\1-style groups)."""
    if isinstance(replace, str):
        template = replace
        return re.compile(pattern), lambda match: match.expand(template)
    return re.compile(pattern), replace


def _index(match: re.Match[str], group: int, offset: int = 1) -> int:
    """A 1-based Paddle index from a regex group turned into our 0-based one."""
    return int(match.group(group)) - offset


# Applied in order to every Paddle key (each rule replaces all its matches).
KEY_RULES: list[Rule] = [
    # HRNet: stem, bottleneck layer, transitions and stages (st2..st4 -> stages.0..2).
    _rule(r"\bconv_layer1_(\d)\.", r"stem\1."),
    _rule(r"\bla1\.bb_layer2_(\d+)\.", lambda m: f"layer1.{_index(m, 1)}."),
    _rule(
        r"\btr(\d)\.transition_tr\d_layer_(\d+)\.",
        lambda m: f"transitions.{_index(m, 1)}.convs.{_index(m, 2)}.",
    ),
    _rule(
        r"\bst(\d)\.stage_st\d_(\d+)\.branches_func\.bb_st\d_\d+_branch_layer_(\d+)_(\d+)\.",
        lambda m: (
            f"stages.{_index(m, 1, 2)}.{_index(m, 2)}.branches.{_index(m, 3)}.{_index(m, 4)}."
        ),
    ),
    _rule(
        r"\bst(\d)\.stage_st\d_(\d+)\.fuse_func\.residual_st\d_\d+_layer_(\d+)_(\d+)_(\d+)\.",
        lambda m: (
            f"stages.{_index(m, 1, 2)}.{_index(m, 2)}.fuse.{_index(m, 3)}.{_index(m, 4)}."
            f"{_index(m, 5)}."
        ),
    ),
    _rule(
        r"\bst(\d)\.stage_st\d_(\d+)\.fuse_func\.residual_st\d_\d+_layer_(\d+)_(\d+)\.",
        lambda m: f"stages.{_index(m, 1, 2)}.{_index(m, 2)}.fuse.{_index(m, 3)}.{_index(m, 4)}.",
    ),
    # FCN head.
    _rule(r"^head\.conv_1\.", "head.project."),
    _rule(r"^head\.cls\.", "head.classifier."),
    # PP-HumanSeg-Lite.
    _rule(r"^conv_bn0\.", "stem."),
    _rule(r"^conv_bn1\.", "shortcut."),
    _rule(r"^depthwise_separable([01])\.", r"decode\1."),
    _rule(r"^depthwise_separable2\.", "classifier."),
    _rule(r"^(block\d\.\d+)\._depthwise_separable_0\.", r"\1.down_branch."),
    _rule(r"^(block\d\.\d+)\._depthwise_separable_1\.", r"\1.separable."),
    _rule(r"^(block\d\.\d+)\._conv\.(?=_)", r"\1.pointwise."),
    _rule(r"\.depthwise_conv\.", ".depthwise."),
    _rule(r"\.piontwise_conv\.", ".pointwise."),
    # Conv-BN units everywhere.
    _rule(r"(^|\.)_conv\.(weight|bias)$", r"\1conv.\2"),
    _rule(r"(^|\.)_batch_norm\.(weight|bias)$", r"\1bn.\2"),
    _rule(r"(^|\.)_batch_norm\._mean$", r"\1bn.running_mean"),
    _rule(r"(^|\.)_batch_norm\._variance$", r"\1bn.running_var"),
]

# PaddleSeg's stride-1 Lite units build a downsampling branch their forward never uses.
UNUSED_IN_PADDLESEG = re.compile(r"^block\d\.\d+\.down_branch\.")


def paddle_to_torch_key(key: str) -> str:
    """Our state_dict name for a PaddleSeg parameter name."""
    for pattern, replace in KEY_RULES:
        key = pattern.sub(replace, key)
    return key


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtin containers; refuses every other global."""

    ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> object:
        """Resolve only allow-listed globals (numpy 1 pickles name numpy.core)."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a `.pdparams` file (name -> numpy array), without paddle."""
    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: .pdparams file not found")
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # pickle raises many types on foreign or damaged data
        raise HumanSegError(
            f"{path}: not a PaddlePaddle .pdparams file ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, Mapping):
        raise HumanSegError(f"{path}: expected a mapping of names to arrays, found {type(data)}")
    arrays = {k: v for k, v in data.items() if k not in PADDLE_METADATA_KEYS}
    bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise HumanSegError(f"{path}: entries that are not arrays: {', '.join(map(str, bad))}")
    return arrays


def convert_pdparams(
    model: nn.Module, arrays: Mapping[str, np.ndarray], source: str
) -> dict[str, torch.Tensor]:
    """A full state_dict for `model` from Paddle arrays; every misfit named in one error."""
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    shapes: list[str] = []
    misshaped: set[str] = set()
    for paddle_key, array in arrays.items():
        key = paddle_to_torch_key(paddle_key)
        if key not in target:
            if not UNUSED_IN_PADDLESEG.match(key):
                unexpected.append(paddle_key)
            continue
        if tuple(array.shape) != tuple(target[key].shape):
            shapes.append(
                f"{paddle_key} {tuple(array.shape)} (ours {key}: {tuple(target[key].shape)})"
            )
            misshaped.add(key)
            continue
        state[key] = torch.from_numpy(np.array(array)).to(target[key].dtype)
    missing = [
        k
        for k in target
        if k not in state and k not in misshaped and not k.endswith("num_batches_tracked")
    ]
    raise_if_misfit(model, source, missing, unexpected, shapes)
    for key, value in target.items():
        state.setdefault(key, value)
    return state


def load_pdparams_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a PaddleSeg `.pdparams` file into `model` (used for `pretrained:` paths too)."""
    model.load_state_dict(convert_pdparams(model, read_pdparams(path), str(path)))
    return model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--src model.pdparams|model.onnx --config X.yml --dst model.pt`."""
    parser.add_argument("--src", required=True, type=Path,
                        help="PaddleSeg weights: a .pdparams file, or a model exported to .onnx "
                             "(paddle2onnx; batch norm separate or folded)")
    parser.add_argument("--config", required=True, type=Path, help="config naming the model")
    parser.add_argument("--dst", required=True, type=Path, help="output PyTorch state_dict (.pt)")


def run(args: argparse.Namespace) -> int:
    """Build the config's model, map the Paddle weights onto it, save its state_dict."""
    from humanseg.builder import load_config
    from humanseg.models import build_model, without_pretrained
    from humanseg.models.onnx_import import convert_onnx

    config = load_config(args.config)
    if not isinstance(config.get("model"), Mapping):
        raise HumanSegError(f"{args.config}: no `model` section")
    model = build_model(without_pretrained(config["model"]))
    if args.src.suffix.lower() == ".onnx":
        state = convert_onnx(model, args.src)
    else:
        state = convert_pdparams(model, read_pdparams(args.src), str(args.src))
    with atomic_path(args.dst) as tmp:
        torch.save(state, tmp)
    print(f"wrote {args.dst} ({len(state)} tensors) from {args.src}")
    return 0
