"""PaddleSeg's ONNX exports (paddle2onnx) -> our modules, matched by graph structure.

An exported graph names its tensors after Paddle's program variables (`conv2d_67.w_0`), not after
the layers, and optimised exports reorder nodes, so names and node order say nothing reliable.
Instead each convolution is identified by what feeds it: the set of convolutions (or the graph
input) whose outputs reach its input through non-convolution nodes (batch norm, ReLU, split,
shuffle, concat, pooling, resize). The same sets are recorded from our model by running it once
under a `TorchFunctionMode`, and convolutions are paired in topological order by those sets plus
their weight shape, groups, stride and padding. The first ONNX convolution without exactly one
partner is named in the error.

Both published forms load: batch norm as separate `BatchNormalization` nodes (copied one to one)
and batch norm folded into the convolutions (the folded kernel goes into our conv, the folded
bias into the batch norm's shift, with the batch norm otherwise an identity: mean 0, variance
1 - eps, scale 1). Such a folded model predicts exactly as exported but has no batch statistics
to fine-tune from: train from the separate form, or with batch norm frozen. Our own exports
load too: a folded convolution that fits no layer is tried again without the all-zero channels
`export_form` adds to widen a layer for onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from humanseg.errors import HumanSegError

if TYPE_CHECKING:  # onnx is imported when a file is read, not when the models package loads
    import onnx

INPUT = "<input>"
# Nodes whose outputs describe shapes, not data: they do not carry provenance.
SHAPE_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "Constant"})


@dataclass(frozen=True)
class ConvSignature:
    """What identifies a convolution besides its inputs: weight shape, groups, stride, padding."""

    weight_shape: tuple[int, ...]
    groups: int
    stride: tuple[int, int]
    padding: tuple[int, int]

    def describe(self) -> str:
        """A short human-readable form for error messages."""
        return (f"weight {list(self.weight_shape)}, groups {self.groups}, "
                f"stride {list(self.stride)}, padding {list(self.padding)}")


@dataclass
class OnnxConv:
    """One ONNX Conv node with the arrays that go into our conv and batch norm."""

    name: str
    signature: ConvSignature
    sources: frozenset[str]
    weight: np.ndarray
    bias: np.ndarray | None
    batch_norm: dict[str, np.ndarray] | None  # scale, shift, mean, var (eps already applied)

    def without_zero_channels(self) -> OnnxConv | None:
        """This folded conv without the all-zero channels an export may add to widen a layer
        (`SegmentationModel.export_form`): outputs whose filter and bias are zero and, for a
        dense conv, inputs no filter reads; None when it has none."""
        if self.batch_norm is not None:
            return None
        weight, groups = self.weight, self.signature.groups
        bias = self.bias if self.bias is not None else np.zeros(len(weight), weight.dtype)
        live = np.any(weight.reshape(len(weight), -1) != 0, axis=1) | (bias != 0)
        depthwise = groups == len(weight) and weight.shape[1] == 1 and groups > 1
        read = (np.any(weight != 0, axis=(0, 2, 3)) if groups == 1
                else np.ones(weight.shape[1], bool))
        if live.all() and read.all():
            return None
        narrowed = weight[live][:, read]
        groups = int(live.sum()) if depthwise else groups
        signature = ConvSignature(tuple(narrowed.shape), groups, self.signature.stride,
                                  self.signature.padding)
        return OnnxConv(self.name, signature, self.sources, narrowed,
                        None if self.bias is None else bias[live], None)


class _ProvenanceMode(TorchFunctionMode):
    """Records, for each conv2d call, the earlier convs (or the input) its input derives from."""

    def __init__(self, weight_names: dict[int, str], graph_input: torch.Tensor) -> None:
        super().__init__()
        self.weight_names = weight_names
        self.sources: dict[int, frozenset[str]] = {id(graph_input): frozenset({INPUT})}
        self.alive: list[torch.Tensor] = [graph_input]  # keeps ids unique while recording
        self.convs: list[tuple[str, ConvSignature, frozenset[str]]] = []

    def _sources_of(self, values: Iterable[object]) -> frozenset[str]:
        found: set[str] = set()
        for value in values:
            if isinstance(value, torch.Tensor):
                found |= self.sources.get(id(value), frozenset())
            elif isinstance(value, (list, tuple)):
                found |= self._sources_of(value)
        return frozenset(found)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func is F.conv2d:
            x, weight = args[0], args[1]
            name = self.weight_names[id(weight)]
            stride, padding, groups = (kwargs.get(k, args[i] if len(args) > i else d)
                                       for k, i, d in (("stride", 3, 1), ("padding", 4, 0),
                                                       ("groups", 6, 1)))
            signature = ConvSignature(tuple(weight.shape), int(groups), _pair(stride),
                                      _pair(padding))
            self.convs.append((name, signature, self._sources_of([x])))
            produced = frozenset({name})
        else:
            produced = self._sources_of(list(args) + list(kwargs.values()))
        for output in result if isinstance(result, (list, tuple)) else (result,):
            if isinstance(output, torch.Tensor) and produced:
                self.sources[id(output)] = produced
                self.alive.append(output)
        return result


def _pair(value: object) -> tuple[int, int]:
    """An int or a 2-sequence as a pair of ints."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)  # type: ignore[call-overload]


def model_convolutions(model: nn.Module,
                       size: tuple[int, int] = (64, 96)) -> list[tuple[str, ConvSignature,
                                                                         frozenset[str]]]:
    """Our model's convolutions in execution order: (module name, signature, sources)."""
    weight_names = {id(module.weight): name for name, module in model.named_modules()
                    if isinstance(module, nn.Conv2d)}
    in_channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    inputs = torch.zeros(1, in_channels, *size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _ProvenanceMode(weight_names, inputs) as mode:
            model(inputs)
    finally:
        model.train(was_training)
    return mode.convs


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph: initializers and `Constant` nodes."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes as plain Python values."""
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def read_onnx_convolutions(path: str | Path) -> list[OnnxConv]:
    """The Conv nodes of an exported graph, in topological order, with their sources and the
    batch norm that follows each (if any)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise HumanSegError(f"{path}: ONNX file not found")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # protobuf raises several types on foreign data
        raise HumanSegError(f"{path}: not an ONNX model ({type(error).__name__})") from None
    constants = _constants(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    data_inputs = [value.name for value in graph.input if value.name not in constants]
    if len(data_inputs) != 1:
        raise HumanSegError(f"{path}: expected one image input, found {data_inputs}")
    sources: dict[str, frozenset[str]] = {data_inputs[0]: frozenset({INPUT})}
    convs: list[OnnxConv] = []
    for node in graph.node:
        if node.op_type in SHAPE_OPS:
            continue
        if node.op_type == "Conv":
            conv = _read_conv(path, node, constants, consumers, sources)
            convs.append(conv)
            produced = frozenset({conv.name})
        else:
            produced = frozenset().union(*(sources.get(name, frozenset())
                                           for name in node.input))
        for name in node.output:
            if produced:
                sources[name] = produced
    if not convs:
        raise HumanSegError(f"{path}: the graph holds no Conv node")
    return convs


def _read_conv(path: Path, node: onnx.NodeProto, constants: dict[str, np.ndarray],
               consumers: dict[str, list], sources: dict[str, frozenset[str]]) -> OnnxConv:
    """One Conv node: signature, sources, weights, and the BatchNormalization after it."""
    label = node.name or node.output[0]
    attributes = _attributes(node)
    if len(node.input) < 2 or node.input[1] not in constants:
        raise HumanSegError(f"{path}: Conv node {label} has no constant weight")
    weight = constants[node.input[1]]
    bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:] or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise HumanSegError(f"{path}: Conv node {label} pads {pads} asymmetrically; "
                            f"no layer of this network does")
    if any(d != 1 for d in attributes.get("dilations", [1, 1])):
        raise HumanSegError(f"{path}: Conv node {label} is dilated; no layer of this network is")
    signature = ConvSignature(tuple(weight.shape), int(attributes.get("group", 1)),
                              _pair(list(attributes.get("strides", [1, 1]))), _pair(pads[:2]))
    followers = consumers.get(node.output[0], [])
    batch_norm = None
    if len(followers) == 1 and followers[0].op_type == "BatchNormalization":
        batch_norm = _read_batch_norm(path, followers[0], constants, bias)
        bias = None
    return OnnxConv(label, signature, sources.get(node.input[0], frozenset()), weight, bias,
                    batch_norm)


def _read_batch_norm(path: Path, node: onnx.NodeProto, constants: dict[str, np.ndarray],
                     conv_bias: np.ndarray | None) -> dict[str, np.ndarray]:
    """A BatchNormalization node's arrays for our BatchNorm2d (eps 1e-5), with any conv bias
    moved into the mean: BN(Wx + b) == BN'(Wx) where mean' = mean - b."""
    label = node.name or node.output[0]
    try:
        scale, shift, mean, var = (constants[name] for name in node.input[1:5])
    except (KeyError, ValueError):
        raise HumanSegError(f"{path}: BatchNormalization node {label} has non-constant "
                            f"parameters") from None
    epsilon = float(_attributes(node).get("epsilon", 1e-5))
    if conv_bias is not None:
        mean = mean - conv_bias
    return {"weight": scale, "bias": shift, "running_mean": mean,
            "running_var": var + (epsilon - 1e-5)}


def match_convolutions(model: nn.Module, convs: list[OnnxConv],
                       source: str) -> dict[str, OnnxConv]:
    """Our conv module name -> the ONNX conv that fits it; HumanSegError at the first misfit."""
    ours = model_convolutions(model)
    model_name = type(model).__name__
    if len(ours) != len(convs):
        raise HumanSegError(f"{source}: {len(convs)} Conv nodes, but {model_name} has "
                            f"{len(ours)} convolutions: not this network")
    onnx_to_ours = {INPUT: INPUT}
    unused = {name: (signature, inputs) for name, signature, inputs in ours}
    matched: dict[str, OnnxConv] = {}
    for conv in convs:
        wanted = frozenset(onnx_to_ours.get(name, "?") for name in conv.sources)
        fits = [name for name, (signature, inputs) in unused.items()
                if signature == conv.signature and inputs == wanted]
        narrowed = conv.without_zero_channels() if not fits else None
        if narrowed is not None:  # a layer our export widened with zero channels
            conv = narrowed
            fits = [name for name, (signature, inputs) in unused.items()
                    if signature == conv.signature and inputs == wanted]
        if len(fits) != 1:
            reason = "no layer" if not fits else f"{len(fits)} layers ({', '.join(fits)})"
            raise HumanSegError(
                f"{source}: Conv node {conv.name} ({conv.signature.describe()}) fits "
                f"{reason} of {model_name}: not this network"
            )
        onnx_to_ours[conv.name] = fits[0]
        matched[fits[0]] = conv
        del unused[fits[0]]
    return matched


def convert_onnx(model: nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """A full state_dict for `model` (conv + batch norm pairs) from a PaddleSeg ONNX export."""
    matched = match_convolutions(model, read_onnx_convolutions(path), str(path))
    state = {key: value.clone() for key, value in model.state_dict().items()}
    modules = dict(model.named_modules())
    for conv_name, conv in matched.items():
        prefix = conv_name.rsplit(".", 1)[0]
        batch_norm = modules.get(f"{prefix}.bn")
        if modules[conv_name].bias is not None or not isinstance(batch_norm, nn.BatchNorm2d):
            raise HumanSegError(f"{path}: {conv_name} is not a conv + batch norm unit; "
                                f"importing it from ONNX is not supported")
        state[f"{conv_name}.weight"] = torch.from_numpy(np.array(conv.weight, np.float32))
        arrays = conv.batch_norm or _identity_batch_norm(conv, float(batch_norm.eps))
        for key, array in arrays.items():
            state[f"{prefix}.bn.{key}"] = torch.from_numpy(np.array(array, np.float32))
    return state


def _identity_batch_norm(conv: OnnxConv, eps: float) -> dict[str, np.ndarray]:
    """For a folded conv: a batch norm that only adds the folded bias."""
    channels = conv.signature.weight_shape[0]
    bias = conv.bias if conv.bias is not None else np.zeros(channels, np.float32)
    return {"weight": np.ones(channels, np.float32), "bias": bias,
            "running_mean": np.zeros(channels, np.float32),
            "running_var": np.full(channels, 1.0 - eps, np.float32)}
