// The humanseg page: photos go to POST /v1/segment, camera frames to the WebSocket /v1/stream
// (or, with ?transport=http, one POST per frame); the server composites, the canvas shows it.
"use strict";

const $ = (id) => document.getElementById(id);
const output = $("output");
const context = output.getContext("2d");
const video = $("camera-video");
const grab = document.createElement("canvas");
const transport = new URLSearchParams(location.search).get("transport") === "http" ? "http" : "ws";
const FRAME_QUALITY = 0.85;

let lastPhoto = null;
let backgroundPicture = null;  // base64 of the chosen background file, for the WebSocket
let camera = null;             // {stream, socket, running}
let frameTimes = [];

function status(text) { $("status").textContent = text || ""; }

function backgroundSpec() {
  const kind = document.querySelector("input[name=background]:checked").value;
  return kind === "colour" ? $("colour").value : kind;  // blur | #rrggbb | image
}

function draw(bitmap) {
  if (output.width !== bitmap.width || output.height !== bitmap.height) {
    output.width = bitmap.width;
    output.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  output.dataset.frames = String(Number(output.dataset.frames) + 1);
}

function countFrame() {
  const now = performance.now();
  frameTimes.push(now);
  frameTimes = frameTimes.filter((t) => now - t <= 2000);
  if (frameTimes.length > 1) {
    const fps = (frameTimes.length - 1) / ((now - frameTimes[0]) / 1000);
    $("fps").textContent = `FPS: ${fps.toFixed(1)}`;
    output.dataset.fps = fps.toFixed(2);
  }
}

function segmentForm(image, format) {
  const form = new FormData();
  form.append("image", image);
  form.append("output", "composite");
  form.append("format", format);
  const spec = backgroundSpec();
  if (spec === "image") {
    const file = $("background-file").files[0];
    if (!file) throw new Error("choose a background picture first");
    form.append("background_image", file);
  } else {
    form.append("background", spec);
  }
  return form;
}

async function postSegment(image, format) {
  const response = await fetch("/v1/segment", { method: "POST", body: segmentForm(image, format) });
  if (!response.ok) throw new Error((await response.json()).error);
  return createImageBitmap(await response.blob());
}

async function segmentPhoto(file) {
  output.dataset.state = "busy";
  const started = performance.now();
  try {
    draw(await postSegment(file, "png"));
    const seconds = (performance.now() - started) / 1000;
    $("fps").textContent = `FPS: ${(1 / seconds).toFixed(1)}`;
    $("info").textContent = `photo ${output.width}x${output.height}, ${(seconds * 1000).toFixed(0)} ms`;
    output.dataset.source = "photo";
    status("");
  } catch (error) {
    status(error.message);
  }
  output.dataset.state = "done";
}

function frameBlob() {
  grab.width = video.videoWidth;
  grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", FRAME_QUALITY));
}

async function sendFrame() {
  if (!camera || !camera.running) return;
  const blob = await frameBlob();
  if (transport === "ws") {
    camera.socket.send(blob);
    return;
  }
  try {
    showFrame(await postSegment(blob, "jpeg"));
  } catch (error) {
    status(error.message);
  }
  sendFrame();
}

function showFrame(bitmap) {
  draw(bitmap);
  countFrame();
  output.dataset.source = "camera";
  $("info").textContent = ` camera ${output.width}x${output.height} over ${transport}`;
}

function sendSettings() {
  if (!camera || transport !== "ws" || camera.socket.readyState !== WebSocket.OPEN) return;
  const spec = backgroundSpec();
  if (spec === "image" && !backgroundPicture) {
    status("choose a background picture first");
    return;
  }
  const settings = { background: spec };
  if (spec === "image") settings.image_base64 = backgroundPicture;
  camera.socket.send(JSON.stringify(settings));
}

function openSocket() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/stream`);
  socket.binaryType = "blob";
  socket.onopen = () => { sendSettings(); sendFrame(); };
  socket.onmessage = async (event) => {
    if (typeof event.data === "string") {
      const answer = JSON.parse(event.data);
      if (answer.error) status(answer.error);
      if (answer.for === "frame") sendFrame();
      return;
    }
    showFrame(await createImageBitmap(event.data));
    status("");
    sendFrame();
  };
  socket.onclose = () => { if (camera && camera.running) status("connection closed"); };
  return socket;
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = stream;
    await video.play();
    camera = { stream, running: true, socket: transport === "ws" ? openSocket() : null };
    frameTimes = [];
    $("camera").disabled = true;
    $("stop").disabled = false;
    if (transport === "http") sendFrame();
  } catch (error) {
    status(`camera: ${error.message}`);
  }
}

function stopCamera() {
  if (!camera) return;
  camera.running = false;
  camera.stream.getTracks().forEach((track) => track.stop());
  if (camera.socket) camera.socket.close();
  camera = null;
  $("camera").disabled = false;
  $("stop").disabled = true;
}

function backgroundChanged() {
  if (camera) sendSettings();
  else if (lastPhoto) segmentPhoto(lastPhoto);
}

$("photo").addEventListener("change", () => {
  lastPhoto = $("photo").files[0] || null;
  if (lastPhoto && !camera) segmentPhoto(lastPhoto);
});
$("camera").addEventListener("click", startCamera);
$("stop").addEventListener("click", stopCamera);
document.querySelectorAll("input[name=background]").forEach((radio) =>
  radio.addEventListener("change", backgroundChanged));
$("colour").addEventListener("input", backgroundChanged);
$("background-file").addEventListener("change", () => {
  const file = $("background-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    backgroundPicture = String(reader.result).split(",", 2)[1];
    document.querySelector("input[name=background][value=image]").checked = true;
    backgroundChanged();
  };
  reader.readAsDataURL(file);
});
