"""``crd-edge bench``: measure artifacts on devices, append to results.jsonl, render the report.

Sources are what export writes (a manifest.json or the folder holding it), a single artifact,
or a crd-edge checkpoint (torch eager). ``--compare`` adds a second source (usually the
teacher's exports) whose rows are labelled by their role, so the report can show the
student's speed-up over the teacher per runtime and precision.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from crd_edge.artifacts import FORMATS, Artifact, artifact_bytes, find_artifacts
from crd_edge.bench.records import BenchRow, MeasuredArtifact
from crd_edge.errors import DeviceUnreachable, UserError


def model_counts(item: Artifact, size: tuple[int, int]) -> dict:
    """Params, MACs (both conventions) and activation memory (peak and total bytes, one image)
    of the model behind the artifact at its input size: counted with torch on the source
    architecture the manifest records (fp32), else, for an ONNX file without one (a bare .onnx,
    or an architecture this version does not know), read from the file's graph in its own
    dtypes (:mod:`crd_edge.analysis.onnx_counts`). ``counted_from`` says which."""
    if item.target == "torch":  # a checkpoint or a state-dict teacher names its architecture; TorchScript does not
        arch, kwargs_json = _torch_architecture(str(item.path.resolve()), item.path.stat().st_mtime_ns)
    else:
        arch, kwargs = item.source_architecture
        kwargs_json = json.dumps(kwargs, sort_keys=True)
    counts = _counts(arch, kwargs_json, tuple(size)) if arch else ()
    if not counts and FORMATS[item.target].file_format == "onnx" and item.path.is_file():
        counts = _onnx_counts(str(item.path.resolve()), item.path.stat().st_mtime_ns, tuple(size))
    return dict(counts)


@functools.lru_cache(maxsize=None)
def _torch_architecture(path: str, mtime_ns: int) -> tuple[str | None, str]:
    """(architecture, kwargs as JSON) of a torch file, loaded once per file version."""
    from crd_edge.runtime.torch_source import load_source
    identity = load_source(path).identity
    return identity.get("arch"), json.dumps(identity.get("kwargs") or {}, sort_keys=True)


@functools.lru_cache(maxsize=None)
def _counts(arch: str, kwargs_json: str, size: tuple[int, int]) -> tuple:
    """Cached per architecture and size: an export folder holds the same model 10-15 times, and
    counting the teacher runs a 50-GMAC forward pass."""
    from crd_edge.analysis.macs import count_macs
    from crd_edge.analysis.memory import count_activations
    from crd_edge.models import create_model
    try:
        model = create_model(arch, **json.loads(kwargs_json))
        report = count_macs(model, (1, 3, *size))
        memory = count_activations(model, (1, 3, *size))
    except Exception:  # an unknown architecture: the row simply has no MAC figures
        return ()
    return (("params", report.params), ("macs_true", report.true_macs), ("macs_paper", report.paper_macs),
            ("act_peak_bytes", memory.peak_bytes), ("act_total_bytes", memory.total_bytes), ("counted_from", "torch"))


@functools.lru_cache(maxsize=None)
def _onnx_counts(path: str, mtime_ns: int, size: tuple[int, int]) -> tuple:
    """Counts read from an ONNX graph (cached per file version and size)."""
    from crd_edge.analysis.onnx_counts import count_onnx
    try:
        counts = count_onnx(path, size)
    except Exception:  # a graph the counter cannot read: no MAC figures, the timing stands
        return ()
    return (("params", counts.macs.params), ("macs_true", counts.macs.true_macs),
            ("macs_paper", counts.macs.paper_macs), ("act_peak_bytes", counts.memory.peak_bytes),
            ("act_total_bytes", counts.memory.total_bytes), ("counted_from", "onnx"))


OV_DEVICES = ("CPU", "GPU", "NPU", "AUTO")              # OpenVINO's device names
REMOTE_THREADS = 4  # a phone's or board's big cores, when --threads is not given


@dataclass(frozen=True)
class RunnerOptions:
    """How each runner runs an artifact, beyond threads and timing: the phone's LiteRT
    delegate and benchmark_model binary (adb), OpenVINO's device and onnxruntime's execution
    providers (local and ssh; each runtime's CPU path by default)."""

    delegate: str = "xnnpack"
    benchmark_binary: Path | None = None
    ov_device: str | None = None
    ort_providers: tuple[str, ...] = ()
    op_profile: bool = True  # local and ssh: time per op type from the runtime's own profiler

    def check(self, devices: list[str]) -> None:
        """One-line errors for unknown values, before anything runs."""
        from crd_edge.bench.runners.adb import DELEGATE_FLAGS  # LiteRT benchmark_model's delegates
        if self.delegate not in DELEGATE_FLAGS:
            raise UserError(f"--delegate {self.delegate}: choose one of {', '.join(DELEGATE_FLAGS)}")
        if self.ov_device is not None and self.ov_device.split(":")[0] not in OV_DEVICES:
            raise UserError(f"--ov-device {self.ov_device}: choose one of {', '.join(OV_DEVICES)}")
        if self.benchmark_binary is not None and not Path(self.benchmark_binary).is_file():
            raise UserError(f"--benchmark-binary {self.benchmark_binary}: no such file")
        if self.ort_providers and "local" in devices:
            try:
                import onnxruntime
            except ImportError:
                return  # no onnxruntime: no onnx artifact runs here either
            available = onnxruntime.get_available_providers()
            missing = [p for p in self.ort_providers if p not in available]
            if missing:
                raise UserError(f"--ort-provider {missing[0]}: not in this onnxruntime build (available: "
                                f"{', '.join(available)}); onnxruntime-gpu provides CUDAExecutionProvider")


def runner_for(device: str, options: RunnerOptions = RunnerOptions()) -> tuple[str, Callable[..., dict]]:
    """(kind, run(path, threads, warmup, runs, max_seconds, roofline, item, size)) for ``device``;
    ``size``: the size to time an artifact with dynamic height and width at (the local and ssh
    runners; the others time its example size)."""
    if device == "local":
        from crd_edge.bench.runners.local import run_local
        return "local", lambda path, threads, warmup, runs, max_seconds, roofline, item, size=None: run_local(
            path, threads=threads, warmup=warmup, runs=runs, max_seconds=max_seconds, roofline=roofline,
            ov_device=options.ov_device, ort_providers=options.ort_providers, op_profile=options.op_profile,
            size=size)
    if device.startswith("adb:"):
        from crd_edge.bench.runners.adb import run_adb
        serial = device.split(":", 1)[1]
        return "adb", lambda path, threads, warmup, runs, max_seconds, roofline, item, size=None: run_adb(
            serial, path, benchmark_binary=options.benchmark_binary, threads=threads, delegate=options.delegate,
            warmup=warmup, runs=runs)
    if device.split(":")[0] == "browser":
        from crd_edge.bench.runners.browser import run_browser
        from crd_edge.runtime.browser_session import BACKENDS
        backend = device.partition(":")[2] or "wasm"
        if backend not in BACKENDS:
            raise UserError(f"--on {device}: the browser's backends are {', '.join(BACKENDS)} (browser:webgpu)")
        return "browser", lambda path, threads, warmup, runs, max_seconds, roofline, item, size=None: run_browser(
            path, threads=threads, warmup=warmup, runs=runs, max_seconds=max_seconds, backend=backend)
    if device.startswith("ssh:"):
        from crd_edge.bench.runners.ssh import parse_ssh_target, run_ssh
        target = parse_ssh_target(device)
        return "ssh", lambda path, threads, warmup, runs, max_seconds, roofline, item, size=None: run_ssh(
            target, path, threads=threads, warmup=warmup, runs=runs, max_seconds=max_seconds,
            precision=item.precision, roofline=roofline, ov_device=options.ov_device,
            ort_providers=options.ort_providers, op_profile=options.op_profile, size=size)
    raise UserError(f"--on {device}: expected local, browser[:webgpu], adb:SERIAL or ssh:[USER@]HOST[:PORT]")


# What each runner times, for the skip line of an artifact it does not (the format table's
# ``bench_on`` says which runners time which target).
RUNNER_SCOPE = {"local": "the local harness times native runtimes",
                "ssh": "the ssh runner times native runtimes",
                "adb": "the adb runner benchmarks .tflite files with LiteRT's benchmark_model",
                "browser": "the browser runner times web artifacts (export with --target web)"}


def skip_reason(kind: str, item: Artifact) -> str | None:
    fmt = item.format
    if kind in fmt.bench_on:
        return None
    if fmt.not_local and kind in ("local", "ssh"):
        return fmt.not_local
    if fmt.bench_on == ("browser",):
        return "a web artifact: time it in a browser with --on browser"
    return RUNNER_SCOPE[kind]


def bench(sources: list[str], *, devices: list[str] | None = None, compare: list[str] | None = None,
          threads: int | None = None, warmup: int = 5, runs: int = 50, max_seconds: float = 10.0,
          out_dir: str | Path | None = None, roofline: bool = True, require_runnable: bool = True,
          options: RunnerOptions = RunnerOptions(), sizes: list[tuple[int, int]] | None = None) -> Iterator[BenchRow]:
    """Measure every artifact of ``sources`` (and ``compare``) on every device; yields each
    result (a measurement, or a row with status ``skipped`` or ``error`` and its reason) and
    appends it to ``out_dir/results.jsonl``. A device that can run none of them is an error before anything
    is written, unless ``require_runnable`` is off (the pipeline reports the skips instead).
    ``threads=None``: this machine's cores locally and in the browser, 4 on a phone or remote host.
    ``sizes``: an artifact with dynamic height and width is timed at each (locally and over ssh;
    fixed-size artifacts at their own)."""
    from crd_edge.bench.results import append_result
    items = [i for s in sources for i in find_artifacts(s)] + [i for s in compare or [] for i in find_artifacts(s, "teacher")]
    out = Path(out_dir) if out_dir else default_out_dir(sources[0])
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    options.check(devices or ["local"])
    runners = {device: runner_for(device, options) for device in devices or ["local"]}
    for device, (kind, _) in runners.items():  # before any measurement or write
        reasons = [skip_reason(kind, item) for item in items]
        if require_runnable and all(reasons):
            raise UserError(f"--on {device}: none of the {len(items)} artifacts can run there ({reasons[0]}); "
                            "pass artifacts it runs, or another --on")
    from crd_edge._io import writable_folder
    writable_folder(out)
    for device, (kind, run) in runners.items():
        device_threads = threads or ((os.cpu_count() or 1) if kind in ("local", "browser") else REMOTE_THREADS)
        first, unreachable = True, None
        for item, size in ((item, size) for item in items for size in _sizes_of(item, kind, sizes)):
            base = {"schema": 1, "run_id": run_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "device_spec": device, "artifact": _artifact_info(item)}  # the results.jsonl line
            reason = skip_reason(kind, item)
            if reason:
                result = {**base, "status": "skipped", "reason": reason}
            elif unreachable:  # one failure per device: the next artifact would wait just as long
                result = {**base, "status": "error", "reason": f"not tried: {unreachable}"}
            else:
                try:
                    # The roofline is measured once per device and run (first artifact), same threads.
                    measured = run(item.path, device_threads, warmup, runs, max_seconds, roofline and first, item,
                                   size)
                    first = first and "matmul" not in measured
                    size = measured.get("input_size") or item.input_hw
                    result = {**base, "status": "measured", **measured, "input_size": list(size) if size else None,
                              "model": model_counts(item, tuple(size)) if size else {}}
                except DeviceUnreachable as exc:
                    unreachable = str(exc)
                    result = {**base, "status": "error", "reason": unreachable}
                except UserError as exc:
                    result = {**base, "status": "error", "reason": str(exc)}
            row = BenchRow.from_json(result)
            append_result(out / "results.jsonl", row)
            yield row


def _sizes_of(item: Artifact, kind: str, sizes: list[tuple[int, int]] | None) -> list[tuple[int, int] | None]:
    """The sizes to time ``item`` at: each of ``sizes`` for an artifact with dynamic height and
    width on a runner that can feed it them; else once, at its own (or example) size."""
    if sizes and item.input_hw is None and item.format.dynamic_size and kind in ("local", "ssh"):
        return list(sizes)
    return [None]


def default_out_dir(source: str | Path) -> Path:
    """bench/ beside the export folder (runs/<name>/bench for a run's exports)."""
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    return folder.parent / "bench" if folder.name.startswith("export") else folder / "bench"


def _artifact_info(item: Artifact) -> dict:
    """The row's ``artifact`` (:class:`~crd_edge.bench.records.MeasuredArtifact` as JSON)."""
    v = item.verification
    return asdict(MeasuredArtifact(item.path.name, item.role, item.precision, str(item.path), item.target,
                                   artifact_bytes(item.path), v.psnr_db_min, v.status))
