// The page crd-edge drives (verification and timing): it asks the local server for work, runs the
// model with onnxruntime-web and posts the result back. Nothing else.
//   GET /crd/next -> 200 + float32 body (X-Shape): one inference, the output posted to /crd/output
//                 -> 200 + JSON body (X-Command: time): warm-up and timed runs on a fixed input,
//                    timed here with performance.now() so no HTTP round trip is counted; the
//                    milliseconds posted to /crd/timings
//                 -> 408: nothing yet, ask again; 204: the session is closed
const post = (route, body) => fetch(route, {method: "POST", body});

async function timeRuns(session, shape, {warmup, warmup_seconds, runs, max_seconds, min_runs}) {
  const size = shape.reduce((a, b) => a * b, 1), data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.sin(i) * 0.9;  // a fixed input in [-1, 1]: fp32 cost does not depend on values
  const feeds = {[session.inputNames[0]]: new ort.Tensor("float32", data, shape)};
  let start = performance.now();
  await session.run(feeds);
  const first = performance.now() - start;
  // Warm-up: `warmup` calls and at least `warmup_seconds`: V8 first runs WebAssembly from its
  // baseline compiler and optimizes hot functions in background threads, which share the cores.
  const warming = performance.now();
  for (let i = 0; i < warmup || performance.now() - warming < 1000 * warmup_seconds; i++) await session.run(feeds);
  const samples = [], begun = performance.now();
  while (samples.length < runs) {
    start = performance.now();
    await session.run(feeds);
    samples.push(performance.now() - start);
    if (samples.length >= min_runs && performance.now() - begun > 1000 * max_seconds) break;
  }
  return {first_ms: first, samples_ms: samples};
}

async function main() {
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  // Threads need a cross-origin isolated page (the server sends COOP/COEP headers); ?threads=N
  // asks for N, else as many as the browser reports cores (onnxruntime-web's own cap is 4).
  const asked = Number(new URLSearchParams(location.search).get("threads")) || navigator.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(asked, 16)) : 1;
  const info = await (await fetch("model.json")).json();
  const shape = [1, 3, info.height, info.width];
  const loading = performance.now();
  const session = await ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});
  await post("/crd/ready", JSON.stringify({backend: "wasm", threads: ort.env.wasm.numThreads,
    load_ms: performance.now() - loading, isolated: self.crossOriginIsolated, userAgent: navigator.userAgent,
    cores: navigator.hardwareConcurrency, ort: ort.env.versions.web}));
  for (;;) {
    const request = await fetch("/crd/next");
    if (request.status === 204) return;          // the session was closed
    if (request.status !== 200) continue;        // nothing queued yet: ask again
    if (request.headers.get("X-Command") === "time") {
      await post("/crd/timings", JSON.stringify(await timeRuns(session, shape, await request.json())));
      continue;
    }
    const dims = request.headers.get("X-Shape").split(",").map(Number);
    const input = new ort.Tensor("float32", new Float32Array(await request.arrayBuffer()), dims);
    const output = await session.run({[session.inputNames[0]]: input});
    await post("/crd/output", output[session.outputNames[0]].data);
  }
}

main().catch((error) => post("/crd/error", String(error && error.stack || error)));
