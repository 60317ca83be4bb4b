// The humanseg page. Photos go to POST /v1/segment (the server's answer is exactly predict's).
// Camera frames are segmented in the page by onnxruntime-web when the server offers the model
// for it (GET /v1/models -> browser), else, or with ?inference=server, sent to the server over
// the WebSocket /v1/stream (with ?transport=http, one POST per frame).
"use strict";

const $ = (id) => document.getElementById(id);
const output = $("output");
const context = output.getContext("2d");
const video = $("camera-video");
const grab = document.createElement("canvas");
const params = new URLSearchParams(location.search);
const transport = params.get("transport") === "http" ? "http" : "ws";
const FRAME_QUALITY = 0.85;
// humanseg.deploy.compose: the blur's sigma is 1/40 of the longer side, computed at 1/4 size.
const BLUR_SIGMA_FRACTION = 1 / 40;
const BLUR_DOWNSCALE = 4;

let lastPhoto = null;
let backgroundPicture = null;  // base64 of the chosen background file, for the WebSocket
let backgroundBitmap = null;   // the same picture, for compositing in the page
let camera = null;             // {stream, socket, running}
let frameTimes = [];
let inPage = null;             // {session, spec} once the model runs in the page

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
  if (!camera || !camera.socket || camera.socket.readyState !== WebSocket.OPEN) return;
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

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const script = Object.assign(document.createElement("script"), { src: url });
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${url}`));
    document.head.appendChild(script);
  });
}

// The served model in the page, when the server offers it and ?inference=server is not set.
async function loadInPageModel() {
  if (params.get("inference") === "server") return null;
  const listing = await (await fetch("/v1/models")).json();
  if (!listing.browser) {
    if (params.get("inference") === "browser") status(listing.browser_unavailable);
    return null;
  }
  status("loading the model into the page");
  await loadScript(listing.browser.runtime);
  ort.env.wasm.wasmPaths = listing.browser.runtime.replace(/[^/]*$/, "");
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation; one is plenty here
  const session = await ort.InferenceSession.create(listing.browser.onnx,
                                                    { executionProviders: ["wasm"] });
  status("");
  const [height, width] = listing.browser.input_size;
  const canvas = (w, h) => Object.assign(document.createElement("canvas"), { width: w, height: h });
  return { session, spec: listing.browser, width, height, small: canvas(width, height),
           mask: canvas(width, height), person: canvas(1, 1), backdrop: canvas(1, 1),
           input: new Float32Array(3 * width * height) };
}

// Preprocess as the config's val transforms (bilinear Resize, Normalize), run the model, and
// return the person alpha (1 - background probability) as the mask canvas's alpha channel.
async function inPageMask(model) {
  const { width, height, input, spec } = model;
  const context = model.small.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const plane = width * height;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * spec.std[c]), shift = spec.mean[c] / spec.std[c];
    for (let i = 0; i < plane; i++) input[c * plane + i] = rgba[4 * i + c] * scale - shift;
  }
  const tensor = new ort.Tensor("float32", input, [1, 3, height, width]);
  const result = await model.session.run({ [model.session.inputNames[0]]: tensor });
  const logits = result[model.session.outputNames[0]].data;
  const classes = logits.length / plane;
  const maskContext = model.mask.getContext("2d");
  const alpha = maskContext.createImageData(width, height);
  for (let i = 0; i < plane; i++) {
    let total = 0;
    for (let k = 0; k < classes; k++) total += Math.exp(logits[k * plane + i] - logits[i]);
    alpha.data[4 * i + 3] = 255 * (1 - 1 / total);
  }
  maskContext.putImageData(alpha, 0, 0);
}

// The chosen background at the frame's size: blurred frame, colour, or the picture (cover).
function paintBackground(model, context, width, height) {
  const spec = backgroundSpec();
  if (spec === "image" && backgroundBitmap) {
    const scale = Math.max(width / backgroundBitmap.width, height / backgroundBitmap.height);
    const w = backgroundBitmap.width * scale, h = backgroundBitmap.height * scale;
    context.drawImage(backgroundBitmap, (width - w) / 2, (height - h) / 2, w, h);
  } else if (spec.startsWith("#")) {
    context.fillStyle = spec;
    context.fillRect(0, 0, width, height);
  } else {
    const backdrop = model.backdrop;
    backdrop.width = Math.max(1, Math.floor(width / BLUR_DOWNSCALE));
    backdrop.height = Math.max(1, Math.floor(height / BLUR_DOWNSCALE));
    backdrop.getContext("2d").drawImage(video, 0, 0, backdrop.width, backdrop.height);
    context.drawImage(backdrop, 0, 0, width, height);  // under the blur: no dark border
    context.filter = `blur(${Math.max(width, height) * BLUR_SIGMA_FRACTION}px)`;
    context.drawImage(backdrop, 0, 0, width, height);
    context.filter = "none";
  }
}

async function inPageLoop() {
  const model = inPage;
  while (camera && camera.running) {
    await inPageMask(model);
    const width = video.videoWidth, height = video.videoHeight;
    if (model.person.width !== width || model.person.height !== height) {
      model.person.width = width;
      model.person.height = height;
    }
    const person = model.person.getContext("2d");
    person.globalCompositeOperation = "copy";
    person.drawImage(video, 0, 0);
    person.globalCompositeOperation = "destination-in";
    person.drawImage(model.mask, 0, 0, width, height);  // the alpha, scaled up bilinearly
    if (output.width !== width || output.height !== height) {
      output.width = width;
      output.height = height;
    }
    paintBackground(model, context, width, height);
    context.drawImage(model.person, 0, 0);
    output.dataset.frames = String(Number(output.dataset.frames) + 1);
    countFrame();
    output.dataset.source = "camera";
    $("info").textContent = ` camera ${width}x${height}, model in the page`;
    await new Promise((resolve) => setTimeout(resolve, 0));  // let the page breathe
  }
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = stream;
    await video.play();
    try {
      inPage = inPage || await loadInPageModel();
    } catch (error) {
      status(`in-page model unavailable, using the server: ${error.message}`);
    }
    const useSocket = !inPage && transport === "ws";
    camera = { stream, running: true, socket: useSocket ? openSocket() : null };
    output.dataset.inference = inPage ? "browser" : `server-${transport}`;
    frameTimes = [];
    $("camera").disabled = true;
    $("stop").disabled = false;
    if (inPage) inPageLoop();
    else if (transport === "http") sendFrame();
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
  createImageBitmap(file).then((bitmap) => { backgroundBitmap = bitmap; });
  reader.onload = () => {
    backgroundPicture = String(reader.result).split(",", 2)[1];
    document.querySelector("input[name=background][value=image]").checked = true;
    backgroundChanged();
  };
  reader.readAsDataURL(file);
});
