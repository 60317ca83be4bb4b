"""PaddleSeg ONNX exports -> PPHumanSegLite: structural matching, both published forms, parity
with onnxruntime running the original file, and clear errors for graphs of other networks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from humanseg.deploy.export import export_onnx
from humanseg.errors import HumanSegError
from humanseg.models import build_model
from humanseg.models.onnx_import import convert_onnx, model_convolutions

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
SEPARATE = MODELS / "pp_humanseg_lite_portrait_398x224.onnx"
FOLDED = MODELS / "pp_humanseg_lite_portrait_398x224_bn_folded.onnx"
PORTRAIT_CONFIG = REPO / "configs" / "pp_humanseg" / "pp_humanseg_lite_portrait_398x224.yml"
PHOTOS = REPO.parent / "shared" / "data" / "portraits" / "images"
needs_released = pytest.mark.skipif(
    not (SEPARATE.is_file() and FOLDED.is_file()),
    reason=f"the released PP-HumanSeg-Lite ONNX files are not in {MODELS}",
)


def lite() -> torch.nn.Module:
    """A fresh two-class PP-HumanSeg-Lite."""
    return build_model({"type": "PPHumanSegLite", "num_classes": 2})


def converted(path: Path) -> torch.nn.Module:
    """PP-HumanSeg-Lite with the weights of an ONNX export, in eval mode."""
    model = lite()
    model.load_state_dict(convert_onnx(model, path))
    return model.eval()


def onnx_probabilities(path: Path, batch: np.ndarray) -> np.ndarray:
    """The softmax the exported file itself computes, by onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def our_probabilities(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    """Our model's softmax on the same batch."""
    with torch.no_grad():
        return model(torch.from_numpy(batch)).softmax(dim=1).numpy()


@needs_released
@pytest.mark.parametrize(("path", "shape"), [
    (SEPARATE, (1, 3, 224, 398)), (FOLDED, (1, 3, 224, 398)),
    (SEPARATE, (2, 3, 180, 320)),  # the dynamic export at another size and batch
], ids=["separate_bn", "folded_bn", "separate_bn_320x180_batch2"])
def test_released_weights_match_onnxruntime(path: Path, shape: tuple[int, ...]) -> None:
    batch = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    difference = np.abs(our_probabilities(converted(path), batch)
                        - onnx_probabilities(path, batch)).max()
    assert difference <= 1e-4


@needs_released
def test_folded_form_loads_as_identity_batch_norm_with_the_folded_bias() -> None:
    model = converted(FOLDED)
    stem = model.stem.bn
    graph = onnx.load(str(FOLDED)).graph
    first_conv = next(node for node in graph.node if node.op_type == "Conv")
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    assert torch.equal(stem.running_mean, torch.zeros(36))
    assert torch.equal(stem.weight.detach(), torch.ones(36))
    np.testing.assert_array_equal(stem.bias.detach().numpy(), initializers[first_conv.input[2]])
    np.testing.assert_array_equal(model.stem.conv.weight.detach().numpy(),
                                  initializers[first_conv.input[1]])


def test_model_convolutions_record_what_feeds_each_conv() -> None:
    convs = {name: sources for name, _, sources in model_convolutions(lite())}
    assert len(convs) == 48
    assert convs["stem.conv"] == {"<input>"}
    # The stride-2 unit's two branches both read the max-pooled stem.
    assert convs["block1.0.down_branch.depthwise.conv"] == {"stem.conv"}
    assert convs["block1.0.pointwise.conv"] == {"stem.conv"}
    assert convs["block1.0.separable.depthwise.conv"] == {"block1.0.pointwise.conv"}
    # The decoder joins the shortcut with the upsampled deep features.
    assert convs["decode1.depthwise.conv"] == {"shortcut.conv", "decode0.pointwise.conv"}


def test_our_own_export_converts_back_to_the_same_network(tmp_path: Path) -> None:
    """Without the released files: a Lite with random BN statistics, exported by `humanseg
    export` (PyTorch's exporter renames every tensor), maps back to the same predictions."""
    torch.manual_seed(0)
    source = lite()
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
        elif isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.3)
    source.eval()
    path = tmp_path / "lite.onnx"
    export_onnx(source, path, (64, 96))
    batch = np.random.default_rng(2).uniform(-1, 1, (1, 3, 64, 96)).astype(np.float32)
    expected = our_probabilities(source, batch)
    assert np.abs(our_probabilities(converted(path), batch) - expected).max() <= 1e-4


def _tampered_copy(source: Path, target: Path, node_index: int) -> str:
    """Copy the folded export with one conv's stride changed; return that node's name."""
    model = onnx.load(str(source))
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    node = convs[node_index]
    for attribute in node.attribute:
        if attribute.name == "strides":
            attribute.ints[:] = [2, 2] if list(attribute.ints) == [1, 1] else [1, 1]
    onnx.save(model, str(target))
    return node.name


@needs_released
def test_a_graph_that_does_not_fit_names_the_first_misfit_node(tmp_path: Path) -> None:
    path = tmp_path / "tampered.onnx"
    name = _tampered_copy(FOLDED, path, node_index=10)
    with pytest.raises(HumanSegError, match=rf"Conv node {name} \(weight .*fits no layer"):
        convert_onnx(lite(), path)


def test_a_graph_of_another_network_is_refused_by_its_conv_count(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="only_conv")],
        "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])], [weight])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(HumanSegError, match="1 Conv nodes, but PPHumanSegLite has 48"):
        convert_onnx(lite(), path)


def paddleseg_portrait_mask(path: Path, image: np.ndarray) -> np.ndarray:
    """Oracle: PaddleSeg's portrait inference written out by hand around onnxruntime: grey pad
    to 16:9 at the bottom/right, resize to 398x224, (x/255 - 0.5)/0.5, softmax from the file,
    then PaddleSeg's reverse_transform: probabilities resized to the padded size, padding
    cropped off, argmax."""
    height, width = image.shape[:2]
    aspect = 1.77777778
    if width / height > aspect:
        padded_h, padded_w = int(width / aspect), width
    else:
        padded_h, padded_w = height, int(height * aspect)
    canvas = np.full((padded_h, padded_w, 3), 127.5, np.float32)
    canvas[:height, :width] = image
    resized = cv2.resize(canvas, (398, 224), interpolation=cv2.INTER_LINEAR)
    batch = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)
    probabilities = onnx_probabilities(path, batch)[0]
    person = cv2.resize(probabilities[1], (padded_w, padded_h), interpolation=cv2.INTER_LINEAR)
    return (person[:height, :width] > 0.5).astype(np.uint8)


@needs_released
@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} (real portraits) is absent")
def test_predict_with_converted_weights_gives_the_masks_of_the_original_file(
    tmp_path: Path,
) -> None:
    model_path = tmp_path / "released.pt"
    subprocess.run([sys.executable, "-m", "humanseg.cli", "convert-paddle", "--src",
                    str(SEPARATE), "--config", str(PORTRAIT_CONFIG), "--dst", str(model_path)],
                   check=True, capture_output=True)
    photos = sorted(PHOTOS.glob("*.jpg"))[:4]
    listing = tmp_path / "photos.txt"
    listing.write_text("\n".join(str(photo) for photo in photos) + "\n")
    save_dir = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "humanseg.cli", "predict", "--image_path", str(listing),
                    "--config", str(PORTRAIT_CONFIG), "--model_path", str(model_path),
                    "--no_edge_refine",  # PaddleSeg's masks are the network's, resampled
                    "--save_dir", str(save_dir)], check=True, capture_output=True)
    for photo in photos:
        image = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
        ours = cv2.imread(str(save_dir / "label" / f"{photo.stem}.png"), cv2.IMREAD_GRAYSCALE)
        agreement = (ours == paddleseg_portrait_mask(SEPARATE, image)).mean()
        assert agreement >= 0.999, f"{photo.name}: {agreement:.5f} of pixels agree"
