// The page crd-edge drives (verification and timing): it asks the local server for work, runs the
// model with the export's runtime (runtime.js) and posts the result back. Nothing else.
//   GET /crd/next -> 200 + float32 body (X-Shape): one inference, the output posted to /crd/output
//                 -> 200 + JSON body (X-Command: time): warm-up and timed runs on a fixed input,
//                    timed here with performance.now() so no HTTP round trip is counted; the
//                    milliseconds posted to /crd/timings
//                 -> 408: nothing yet, ask again; 204: the session is closed
import {load} from "./runtime.js";

const post = (route, body) => fetch(route, {method: "POST", body});

async function timeRuns(model, shape, {warmup, warmup_seconds, runs, max_seconds, min_runs}) {
  const size = shape.reduce((a, b) => a * b, 1), data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.sin(i) * 0.9;  // a fixed input in [-1, 1]: fp32 cost does not depend on values
  const feed = model.feed(data, shape);
  const call = async () => {
    const outputs = await model.infer(feed);
    await model.sync(outputs);  // on a GPU: until the work is done, not just queued
    model.free(outputs);
  };
  let start = performance.now();
  await call();
  const first = performance.now() - start;
  // Warm-up: `warmup` calls and at least `warmup_seconds`: V8 first runs WebAssembly from its
  // baseline compiler and optimizes hot functions in background threads, which share the cores.
  const warming = performance.now();
  for (let i = 0; i < warmup || performance.now() - warming < 1000 * warmup_seconds; i++) await call();
  const samples = [], begun = performance.now();
  while (samples.length < runs) {
    start = performance.now();
    await call();
    samples.push(performance.now() - start);
    if (samples.length >= min_runs && performance.now() - begun > 1000 * max_seconds) break;
  }
  model.free(feed);
  return {first_ms: first, samples_ms: samples};
}

async function main() {
  // ?threads=N asks for N WebAssembly threads, else as many as the browser reports cores;
  // ?backend=wasm|webgpu|auto (default wasm: what crd-edge verifies unless asked).
  const query = new URLSearchParams(location.search);
  const threads = Number(query.get("threads")) || navigator.hardwareConcurrency || 1;
  const info = await (await fetch("model.json")).json();
  const shape = [1, 3, info.height, info.width];
  const loading = performance.now();
  const model = await load(info, threads, query.get("backend") || "wasm");
  await post("/crd/ready", JSON.stringify({runtime: model.runtime, backend: model.backend, threads: model.threads,
    load_ms: performance.now() - loading, isolated: self.crossOriginIsolated, userAgent: navigator.userAgent,
    cores: navigator.hardwareConcurrency}));
  for (;;) {
    const request = await fetch("/crd/next");
    if (request.status === 204) return;          // the session was closed
    if (request.status !== 200) continue;        // nothing queued yet: ask again
    if (request.headers.get("X-Command") === "time") {
      await post("/crd/timings", JSON.stringify(await timeRuns(model, shape, await request.json())));
      continue;
    }
    const dims = request.headers.get("X-Shape").split(",").map(Number);
    const feed = model.feed(new Float32Array(await request.arrayBuffer()), dims);
    const outputs = await model.infer(feed);
    await post("/crd/output", await model.read(outputs));
    model.free(outputs);
    model.free(feed);
  }
}

main().catch((error) => post("/crd/error", String(error && error.stack || error)));
