// The student on the camera (or an image or video file): input | output side by side, with FPS.
// The model has a fixed input size (model.json); frames are scaled to it and the output is drawn
// back at the frame's own size.
const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

async function load() {
  const info = await (await fetch("model.json")).json();
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
  const session = await ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});
  return {session, height: info.height, width: info.width,
          backend: `WebAssembly, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? "s" : ""}`};
}

function toTensor(source, model) {  // RGB uint8 -> NCHW float32 in [-1, 1]
  const canvas = new OffscreenCanvas(model.width, model.height);
  const context = canvas.getContext("2d");
  context.drawImage(source, 0, 0, model.width, model.height);
  const rgba = context.getImageData(0, 0, model.width, model.height).data;
  const plane = model.width * model.height, data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[c * plane + i] = rgba[4 * i + c] / 127.5 - 1;
  }
  return new ort.Tensor("float32", data, [1, 3, model.height, model.width]);
}

function draw(tensor, model, canvas, width, height) {  // NCHW [-1, 1] -> the canvas, at the frame's size
  const plane = model.width * model.height, image = new ImageData(model.width, model.height);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.max(0, Math.min(255, (tensor.data[c * plane + i] + 1) * 127.5));
    image.data[4 * i + 3] = 255;
  }
  const small = new OffscreenCanvas(model.width, model.height);
  small.getContext("2d").putImageData(image, 0, 0);
  canvas.width = width; canvas.height = height;
  canvas.getContext("2d").drawImage(small, 0, 0, width, height);
}

async function run(model, source, width, height, live) {
  const times = [];
  do {
    const start = performance.now();
    const input = toTensor(source, model);
    const output = await model.session.run({[model.session.inputNames[0]]: input});
    $("input").width = width; $("input").height = height;
    $("input").getContext("2d").drawImage(source, 0, 0, width, height);
    draw(output[model.session.outputNames[0]], model, $("output"), width, height);
    times.push(performance.now() - start);
    if (times.length > 30) times.shift();
    const fps = 1000 * times.length / times.reduce((a, b) => a + b, 0);
    status(`${model.backend} | ${width}x${height} | ${fps.toFixed(1)} FPS`);
    await new Promise(requestAnimationFrame);
  } while (live());
}

load().then((model) => {
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
