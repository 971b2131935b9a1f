// The student on the camera (or an image or video file): input | output side by side, with FPS.
// A model with a fixed input size (model.json) gets each frame scaled to it, and its output is
// drawn back at the frame's own size; one exported with dynamic height and width runs at the
// frame's own size (rounded down to a multiple of 8, every generator's stride). runtime.js is the export's runtime (onnxruntime-web or LiteRT.js).
import {load} from "./runtime.js";

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

async function open() {
  const info = await (await fetch("model.json")).json();
  // ?backend=wasm|webgpu forces one; by default the fastest the browser offers (WebGPU on a
  // hardware adapter with LiteRT.js, else WebAssembly with threads where the page is isolated).
  const backend = new URLSearchParams(location.search).get("backend") || "auto";
  const model = await load(info, Math.min(navigator.hardwareConcurrency || 1, 4), backend);
  const where = model.backend === "wasm" ? `WebAssembly, ${model.threads} thread${model.threads > 1 ? "s" : ""}`
                                         : model.backend;
  return {model, height: info.height, width: info.width, dynamic: Boolean(info.dynamic),
          backend: `${model.runtime}, ${where}`};
}

function toInput(source, model) {  // RGB uint8 -> NCHW float32 in [-1, 1]
  const canvas = new OffscreenCanvas(model.width, model.height);
  const context = canvas.getContext("2d");
  context.drawImage(source, 0, 0, model.width, model.height);
  const rgba = context.getImageData(0, 0, model.width, model.height).data;
  const plane = model.width * model.height, data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[c * plane + i] = rgba[4 * i + c] / 127.5 - 1;
  }
  return data;
}

function draw(data, model, canvas, width, height) {  // NCHW [-1, 1] -> the canvas, at the frame's size
  const plane = model.width * model.height, image = new ImageData(model.width, model.height);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.max(0, Math.min(255, (data[c * plane + i] + 1) * 127.5));
    image.data[4 * i + 3] = 255;
  }
  const small = new OffscreenCanvas(model.width, model.height);
  small.getContext("2d").putImageData(image, 0, 0);
  canvas.width = width; canvas.height = height;
  canvas.getContext("2d").drawImage(small, 0, 0, width, height);
}

async function run(model, source, width, height, live) {
  const times = [];
  if (model.dynamic) {
    model.width = Math.max(8, width - width % 8);
    model.height = Math.max(8, height - height % 8);
  }
  do {
    const start = performance.now();
    const feed = model.model.feed(toInput(source, model), [1, 3, model.height, model.width]);
    const outputs = await model.model.infer(feed);
    $("input").width = width; $("input").height = height;
    $("input").getContext("2d").drawImage(source, 0, 0, width, height);
    draw(await model.model.read(outputs), model, $("output"), width, height);
    model.model.free(outputs);
    model.model.free(feed);
    times.push(performance.now() - start);
    if (times.length > 30) times.shift();
    const fps = 1000 * times.length / times.reduce((a, b) => a + b, 0);
    status(`${model.backend} | ${width}x${height} | ${fps.toFixed(1)} FPS`);
    await new Promise(requestAnimationFrame);
  } while (live());
}

open().then((model) => {
  status(`ready (${model.backend}): choose the camera or a file`);
  $("camera").onclick = async () => {
    const video = $("video");
    video.srcObject = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    await video.play();
    run(model, video, video.videoWidth, video.videoHeight, () => !video.paused);
  };
  $("file").onchange = async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    if (file.type.startsWith("video/")) {
      const video = $("video");
      video.srcObject = null; video.src = URL.createObjectURL(file); video.loop = true;
      await video.play();
      run(model, video, video.videoWidth, video.videoHeight, () => !video.paused);
    } else {
      const image = await createImageBitmap(file);
      run(model, image, image.width, image.height, () => false);
    }
  };
  if (new URLSearchParams(location.search).has("camera")) $("camera").click();
}).catch((error) => status(`error: ${error}`));
