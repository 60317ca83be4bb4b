"""`humanseg serve` tested through a real uvicorn process on a free loopback port: masks equal to
`humanseg predict`'s on real photos, every kind of bad input refused with a 4xx JSON error while
the server keeps serving, concurrent requests, and the WebSocket stream."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from websockets.sync.client import connect

from humanseg.deploy.serve import running_server

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = [DATA / "portraits" / "images" / "vs_1.jpg", DATA / "ccp" / "images" / "ccp_0001.jpg"]
needs_photos = pytest.mark.skipif(not all(p.is_file() for p in PHOTOS),
                                  reason="real photos in ../shared/data absent")
MAX_BYTES = 1_000_000
MAX_PIXELS = 1_000_000
BOUNDARY = "humansegtestboundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server (packaged model, torch, 1 thread) with small byte and pixel limits, and no
    onnxruntime-web (so no in-browser inference)."""
    missing = tmp_path_factory.mktemp("no-onnxruntime-web") / "dist"
    options = ["--max_bytes", str(MAX_BYTES), "--max_pixels", str(MAX_PIXELS),
               "--onnxruntime_web", str(missing)]
    with running_server(options) as (base, _process):
        yield base


def request(base: str, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on its own connection; a server that answers before taking the whole
    body (a refused upload) still has its answer read."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.putrequest(method, path)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            connection.putheader(key, value)
        connection.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.send(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def multipart(fields: dict[str, bytes | str]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body: bytes values as file parts, str values as text parts."""
    chunks = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            chunks.append(f"--{BOUNDARY}\r\n{head}".encode() + value + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            chunks.append(f"--{BOUNDARY}\r\n{head}{value}\r\n".encode())
    body = b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def post_form(base: str, fields: dict[str, bytes | str], query: str = ""):
    """POST /v1/segment with multipart fields."""
    body, headers = multipart(fields)
    return request(base, "POST", f"/v1/segment{query}", body, headers)


def decode(content: bytes) -> np.ndarray:
    """Decode a PNG or JPEG answer, keeping its channels (RGB(A) order)."""
    image = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, content[:200]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def synthetic_jpeg(height: int = 120, width: int = 90) -> bytes:
    """A small real JPEG (a lit figure on a gradient) for tests that need no real photo."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.dstack([rows * 2 % 256, cols * 2 % 256, (rows + cols) % 256]).astype(np.uint8)
    cv2.ellipse(image, (width // 2, height // 2), (width // 5, height // 3), 0, 0, 360,
                (230, 190, 160), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, followed by a token of pixel data: its size
    can be read, but decoding it would need the full image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """`humanseg predict`'s label and cut-out of each real photo (the CLI, as a user runs it)."""
    if not all(p.is_file() for p in PHOTOS):
        pytest.skip("real photos in ../shared/data absent")
    save_dir = tmp_path_factory.mktemp("predict")
    outputs = {}
    for photo in PHOTOS:
        subprocess.run([sys.executable, "-m", "humanseg.cli", "predict", str(photo),
                        "--save_dir", str(save_dir)], check=True, capture_output=True)
        label = cv2.imread(str(save_dir / "label" / f"{photo.stem}.png"), cv2.IMREAD_UNCHANGED)
        cutout = decode((save_dir / "cutout" / f"{photo.stem}.png").read_bytes())
        outputs[photo.name] = {"label": label, "cutout": cutout}
    return outputs


@needs_photos
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_mask_equals_humanseg_predict_on_a_real_photo(server: str, predicted, photo: Path) -> None:
    expected = predicted[photo.name]
    raw = photo.read_bytes()
    status, headers, content = request(server, "POST", "/v1/segment", raw,
                                       {"Content-Type": "image/jpeg"})
    assert status == 200 and headers["content-type"] == "image/png"
    mask = decode(content)
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask > 0, expected["label"] > 0)
    fraction = float(headers["x-person-fraction"])
    assert fraction == pytest.approx((expected["label"] > 0).mean(), abs=1e-6)
    assert 0.05 < fraction < 0.95  # a person is found, the photo is not all person
    # multipart, JSON answer: the same mask as base64, beside the person fraction
    status, _, content = post_form(server, {"image": raw, "format": "json"})
    answer = json.loads(content)
    assert status == 200 and answer["model"] == "default" and answer["output"] == "mask"
    assert (answer["height"], answer["width"]) == expected["label"].shape
    assert answer["person_fraction"] == pytest.approx(fraction, abs=1e-6)
    np.testing.assert_array_equal(decode(base64.b64decode(answer["image_base64"])) > 0,
                                  expected["label"] > 0)
    # cutout and alpha are predict's RGBA cut-out and its alpha channel, pixel for pixel
    status, _, content = post_form(server, {"image": raw, "output": "cutout"})
    np.testing.assert_array_equal(decode(content), expected["cutout"])
    status, _, content = request(server, "POST", "/v1/segment?output=alpha", raw)
    np.testing.assert_array_equal(decode(content), expected["cutout"][..., 3])


@needs_photos
def test_composite_backgrounds_follow_the_person_alpha(server: str, predicted) -> None:
    photo = PHOTOS[0]
    raw = photo.read_bytes()
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = predicted[photo.name]["cutout"][..., 3:].astype(np.float32) / 255
    status, _, content = post_form(server, {"image": raw, "output": "composite",
                                            "background": "#00ff00"})
    expected = alpha * rgb + (1 - alpha) * np.array([0, 255, 0], np.float32)
    assert status == 200
    # alpha is quantised to 1/255 in the cut-out oracle: at most one step off in a channel
    assert np.abs(decode(content).astype(np.float32) - expected).max() <= 1.0
    # a flat grey picture as the background: the same blend onto grey
    grey = cv2.imencode(".png", np.full((50, 70, 3), 128, np.uint8))[1].tobytes()
    status, _, content = post_form(server, {"image": raw, "output": "composite",
                                            "background_image": grey})
    assert status == 200
    expected = alpha * rgb + (1 - alpha) * 128
    assert np.abs(decode(content).astype(np.float32) - expected).max() <= 1.0
    # blur: the person (alpha ~ 1) keeps the photo's pixels, the background differs from it
    status, _, content = post_form(server, {"image": raw, "output": "composite", "format": "png"})
    blurred = decode(content).astype(np.float32)
    person, background = alpha[..., 0] > 0.99, alpha[..., 0] < 0.01
    assert np.abs(blurred - rgb)[person].max() <= 3.0
    assert np.abs(blurred - rgb)[background].mean() > 5.0


def bad_inputs() -> list[tuple[str, int, str, dict, str]]:
    """(case, status, query, multipart fields or raw body, words the error must contain)."""
    image = synthetic_jpeg()
    return [
        ("not an image", 415, "", {"image": b"hello, this is text, not a picture"},
         "not an image"),
        ("truncated", 400, "", {"image": image[: len(image) // 2]}, "truncated"),
        ("too many bytes", 413, "", {"image": image + b"\0" * MAX_BYTES}, "limit"),
        ("too many pixels", 413, "", {"image": png_header_only(100_000, 100_000)},
         "10000000000 pixels"),
        ("pixels just over the limit", 413, "", {"image": png_header_only(1001, 1000)},
         "1001000 pixels"),
        ("wrong field", 422, "", {"picture": image}, "unknown field 'picture'"),
        ("no image field", 422, "", {"output": "mask"}, "missing file field 'image'"),
        ("image as text", 422, "", {"image": "abc"}, "must be a file upload"),
        ("unknown model", 404, "", {"image": image, "model": "nope"}, "model='nope'"),
        ("unknown output", 422, "", {"image": image, "output": "x"}, "output='x'"),
        ("bad colour", 422, "", {"image": image, "background": "#12345"}, "#RRGGBB"),
        ("picture missing", 422, "", {"image": image, "background": "image"},
         "background_image"),
        ("cutout as jpeg", 422, "", {"image": image, "output": "cutout", "format": "jpeg"},
         "transparency"),
        ("bad background file", 415, "", {"image": image, "background_image": b"junk"},
         "background_image"),
        ("unknown query option", 422, "?colour=red", {"image": image}, "unknown field 'colour'"),
        ("empty raw body", 422, "", b"", "empty"),
    ]


def test_every_bad_input_is_a_4xx_json_error_and_the_server_keeps_serving(server: str) -> None:
    for case, status, query, payload, words in bad_inputs():
        if isinstance(payload, bytes):
            got, headers, content = request(server, "POST", f"/v1/segment{query}", payload)
        else:
            got, headers, content = post_form(server, payload, query)
        assert got == status, (case, content)
        assert headers["content-type"] == "application/json", case
        message = json.loads(content)["error"]
        assert words in message and "\n" not in message, (case, message)
    # after all of them: healthy, and a good image is still segmented
    assert request(server, "GET", "/healthz")[0] == 200
    status, _, content = post_form(server, {"image": synthetic_jpeg()})
    assert status == 200 and decode(content).shape == (120, 90)


def test_oversized_body_is_refused_on_its_declared_length(server: str) -> None:
    """The Content-Length alone decides: the server answers without reading the upload."""
    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("POST", "/v1/segment")
    connection.putheader("Content-Length", str(50 * MAX_BYTES))
    connection.endheaders()  # no body is sent at all
    response = connection.getresponse()
    assert response.status == 413
    assert "limit" in json.loads(response.read())["error"]
    connection.close()


def test_models_and_health(server: str) -> None:
    status, _, content = request(server, "GET", "/v1/models")
    listing = json.loads(content)
    assert status == 200 and listing["default"] == "default"
    # the packaged model runs its shipped ONNX export (backend auto)
    assert listing["models"] == [{"name": "default", "backend": "onnxruntime",
                                  "config": "default.yml",
                                  "model": "default.pt", "num_classes": 2}]
    assert listing["limits"] == {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS}
    assert listing["browser"] is None and "onnxruntime-web not found" in listing[
        "browser_unavailable"]
    status, _, content = request(server, "GET", "/v1/models/default/model.onnx")
    assert status == 404 and "in-browser inference unavailable" in json.loads(content)["error"]
    status, _, content = request(server, "GET", "/healthz")
    assert status == 200 and json.loads(content) == {"status": "ok", "models": ["default"]}
    status, headers, content = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/static/app.js" in content
    assert request(server, "GET", "/static/app.js")[0] == 200


@needs_photos
def test_concurrent_requests_get_their_own_masks(server: str, predicted) -> None:
    jobs = [PHOTOS[i % 2] for i in range(16)]

    def mask_of(photo: Path) -> np.ndarray:
        status, _, content = request(server, "POST", "/v1/segment", photo.read_bytes())
        assert status == 200
        return decode(content)

    with ThreadPoolExecutor(max_workers=16) as pool:
        masks = list(pool.map(mask_of, jobs))
    for photo, mask in zip(jobs, masks, strict=True):
        np.testing.assert_array_equal(mask > 0, predicted[photo.name]["label"] > 0)


def test_websocket_stream_composites_frames_and_survives_bad_ones(server: str) -> None:
    frame = synthetic_jpeg()
    with connect(server.replace("http", "ws") + "/v1/stream", open_timeout=30) as socket:
        socket.send(json.dumps({"background": "#0000ff"}))
        assert json.loads(socket.recv(timeout=60)) == {"settings": "ok"}
        socket.send(frame)
        composited = decode(socket.recv(timeout=60))
        assert composited.shape == (120, 90, 3)
        socket.send(b"not a frame")
        error = json.loads(socket.recv(timeout=60))
        assert error["for"] == "frame" and "not an image" in error["error"]
        socket.send(json.dumps({"background": "sky"}))
        error = json.loads(socket.recv(timeout=60))
        assert error["for"] == "settings" and "background='sky'" in error["error"]
        socket.send(frame)  # still serving, with the last good settings
        np.testing.assert_array_equal(decode(socket.recv(timeout=60)), composited)


def test_serve_refuses_a_bad_model_choice_in_one_line(tmp_path: Path) -> None:
    for options, words in [(["--model", "nope"], "--model 'nope': unknown"),
                           (["--config", str(tmp_path / "c.yml")], "give both --config")]:
        result = subprocess.run([sys.executable, "-m", "humanseg.cli", "serve", *options],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_page_gets_the_model_as_onnx_with_its_preprocessing(tmp_path: Path, backend: str) -> None:
    """With onnxruntime-web's folder given, /v1/models tells the page how to preprocess, the
    runtime's files are served from it, and the model comes as ONNX (auto: the packaged model's
    shipped ONNX file, which the server runs too; torch: exported on request from the packaged
    torch model) whose probabilities match the torch model's on the same input."""
    import onnxruntime as ort
    import torch

    from humanseg.engine.runtime import load_inference_model, softmax
    from humanseg.weights import default_paths

    runtime = tmp_path / "dist"
    runtime.mkdir()
    (runtime / "ort.wasm.min.js").write_text("// stand-in for onnxruntime-web's script\n")
    with running_server(["--onnxruntime_web", str(runtime), "--backend", backend]) as (base, _):
        listing = json.loads(request(base, "GET", "/v1/models")[2])
        assert listing["browser"] == {
            "input_size": [192, 192], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "onnx": "/v1/models/default/model.onnx", "runtime": "/static/ort/ort.wasm.min.js"}
        assert listing["browser_unavailable"] is None
        status, _, content = request(base, "GET", "/static/ort/ort.wasm.min.js")
        assert status == 200 and content == (runtime / "ort.wasm.min.js").read_bytes()
        assert request(base, "GET", "/v1/models/nope/model.onnx")[0] == 404
        status, _, onnx_bytes = request(base, "GET", "/v1/models/default/model.onnx")
        assert status == 200
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(0).uniform(-1, 1, (1, 3, 192, 192)).astype(np.float32)
    logits = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    _, model = load_inference_model(*default_paths(), torch.device("cpu"))
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(softmax(logits, axis=1), softmax(expected, axis=1), atol=1e-4)
