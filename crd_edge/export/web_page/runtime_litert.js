// LiteRT.js (XNNPACK in WebAssembly) behind the pages' runtime interface (the export copies this
// file to runtime.js): load(info, threads, backend) -> {runtime, backend, threads, feed, infer, sync, read, free}.
// Tensors cross the interface as NCHW Float32Arrays in [-1, 1]; the .tflite file takes and gives
// NHWC (model.json's model_layout), so feed and read transpose.
import {loadLiteRt, loadAndCompile, Tensor} from "./litert/core/dist/index.js";

function transpose(data, planes, pixels, toPixelMajor) {  // NCHW <-> NHWC for one image
  const out = new Float32Array(data.length);
  for (let p = 0; p < pixels; p++) {
    for (let c = 0; c < planes; c++) {
      if (toPixelMajor) out[p * planes + c] = data[c * pixels + p];
      else out[c * pixels + p] = data[p * planes + c];
    }
  }
  return out;
}

async function gpuAdapter() {
  try {
    return navigator.gpu ? await navigator.gpu.requestAdapter() : null;
  } catch {
    return null;
  }
}

// backend: "wasm", "webgpu", or "auto": WebGPU on a hardware adapter, else WebAssembly (a
// software adapter, such as SwiftShader, emulates the GPU on the CPU: far slower than wasm).
export async function load(info, threads, backend = "auto") {
  const adapter = backend === "wasm" ? null : await gpuAdapter();
  const software = Boolean(adapter && (adapter.info?.isFallbackAdapter || adapter.isFallbackAdapter));
  if (backend === "webgpu" && !adapter) throw new Error("this browser offers no WebGPU adapter");
  const gpu = backend === "webgpu" || (backend === "auto" && adapter !== null && !software);
  // Threads need a cross-origin isolated page (COOP/COEP headers); else one.
  const count = self.crossOriginIsolated ? Math.max(1, Math.min(threads, 16)) : 1;
  // LiteRT's C++ logging goes to the WebAssembly module's stderr, which Emscripten prints with
  // console.error: its INFO and WARNING lines (e.g. "NPU accelerator could not be loaded") are not
  // errors, so they go to console.debug and console.warn (the loader hands self.Module to the
  // module factory).
  const level = {"INFO:": console.debug, "WARNING:": console.warn};
  self.Module = {printErr: (line) => (level[String(line).split(" ")[0]] || console.error)(line)};
  await loadLiteRt(new URL("litert/core/wasm/", location.href).href, count > 1 ? {threads: true} : {});
  const model = await loadAndCompile(info.model, gpu ? {accelerator: "webgpu"}
                                                     : {accelerator: "wasm", cpuOptions: {numThreads: count}});
  const nhwc = info.model_layout === "NHWC";
  const where = adapter && adapter.info ? [adapter.info.vendor, adapter.info.architecture].filter(Boolean).join(" ") : "";
  return {
    runtime: `LiteRT.js ${info.runtime_version}`, threads: count,
    backend: gpu ? `webgpu${where ? ` on ${where}` : ""}${software ? ", a software adapter" : ""}` : "wasm",
    feed: (nchw, [n, c, h, w]) => nhwc ? new Tensor(transpose(nchw, c, h * w, true), [n, h, w, c])
                                       : new Tensor(nchw, [n, c, h, w]),
    infer: (input) => model.run(input),
    // WebGPU's run returns once the work is queued: the outputs exist when they are read back.
    sync: async (outputs) => { if (gpu) await outputs[0].data(); },
    read: async (outputs) => {
      const data = await outputs[0].data();  // copied back from the GPU where it ran there
      const [n, h, w, c] = outputs[0].type.layout.dimensions;
      return nhwc ? transpose(data, c, h * w, false) : data;
    },
    free: (tensors) => { for (const t of [tensors].flat()) t.delete(); },
  };
}
