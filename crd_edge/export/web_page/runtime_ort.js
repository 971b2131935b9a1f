// onnxruntime-web (WebAssembly) behind the pages' runtime interface (the export copies this file
// to runtime.js): load(info, threads, backend) -> {runtime, backend, threads, feed, infer, sync, read, free}.
// Tensors cross the interface as NCHW Float32Arrays in [-1, 1], whatever the model's layout.
function script(src) {  // onnxruntime-web's bundle is a classic script that defines `ort`
  return new Promise((resolve, reject) => {
    const tag = Object.assign(document.createElement("script"), {src, onload: resolve, onerror: reject});
    document.head.append(tag);
  });
}

// backend: "wasm" or "auto" (the same here); "webgpu" needs onnxruntime-web's larger WebGPU build,
// which the web target does not ship: the web-litert target's LiteRT.js has WebGPU.
export async function load(info, threads, backend = "auto") {
  if (backend === "webgpu") throw new Error("the web target's onnxruntime-web build runs WebAssembly only; "
                                            + "export --target web-litert for WebGPU");
  await script("ort/dist/ort.wasm.min.js");
  ort.env.wasm.wasmPaths = new URL("ort/dist/", location.href).href;
  // Threads need a cross-origin isolated page (COOP/COEP headers); else one.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(threads, 16)) : 1;
  const session = await ort.InferenceSession.create(info.model, {executionProviders: ["wasm"]});
  const [input, output] = [session.inputNames[0], session.outputNames[0]];
  return {
    runtime: `onnxruntime-web ${ort.env.versions.web}`, backend: "wasm", threads: ort.env.wasm.numThreads,
    feed: (nchw, shape) => ({[input]: new ort.Tensor("float32", nchw, shape)}),
    infer: (feed) => session.run(feed),
    sync: async () => {},  // WebAssembly: the outputs exist when run resolves
    read: async (outputs) => outputs[output].data,
    free: () => {},
  };
}
