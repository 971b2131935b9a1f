// The page crd-edge drives (verification and timing): it asks the local server for input
// tensors, runs the model with onnxruntime-web and posts each output back. Nothing else.
const post = (route, body) => fetch(route, {method: "POST", body});

async function main() {
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  // Threads need a cross-origin isolated page (the server sends COOP/COEP headers).
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
  const session = await ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});
  await post("/crd/ready", JSON.stringify({backend: "wasm", threads: ort.env.wasm.numThreads,
    isolated: self.crossOriginIsolated, userAgent: navigator.userAgent, ort: ort.env.versions.web}));
  for (;;) {
    const request = await fetch("/crd/next");
    if (request.status === 204) return;          // the session was closed
    if (request.status !== 200) continue;        // nothing queued yet: ask again
    const shape = request.headers.get("X-Shape").split(",").map(Number);
    const input = new ort.Tensor("float32", new Float32Array(await request.arrayBuffer()), shape);
    const output = await session.run({[session.inputNames[0]]: input});
    await post("/crd/output", output[session.outputNames[0]].data);
  }
}

main().catch((error) => post("/crd/error", String(error && error.stack || error)));
