"""Parsers for what on-device benchmark tools print: LiteRT's ``benchmark_model``, TensorRT's
``trtexec`` and ONNX Runtime's ``onnxruntime_perf_test``.

Pure functions (text in, dict out, no I/O), so the runners can be tested on recorded output.
Each returns the harness's measurement shape as far as the tool reports it: ``latency_ms``
{n, p50, p90, p99, mean, std, min, max} (plus p95 where the tool prints it), ``load_ms``,
``first_inference_ms``, ``throughput_fps``. A statistic the tool does not print is None, never
estimated: ``benchmark_model`` prints no percentiles, so its p50/p90/p99 are None and its
``throughput_fps`` is 1000 / mean. All times are milliseconds.

A failed run (an error line, trtexec's ``&&&& FAILED``, or the summary missing) raises
``ToolOutputError`` quoting the tool's first error line, so the user reads the tool's own reason.
"""

from __future__ import annotations

import re

from crd_edge.errors import UserError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_MAX_LINE = 300  # characters of a quoted tool line: error messages stay one readable line


class ToolOutputError(UserError):
    """A benchmark tool failed or printed no summary; the message quotes its first error line."""

    def __init__(self, tool: str, detail: str) -> None:
        self.tool, self.detail = tool, detail
        super().__init__(f"{tool} failed: {detail}")


def _clip(line: str) -> str:
    line = " ".join(line.split())  # one line, whatever the tool printed
    return line if len(line) <= _MAX_LINE else line[:_MAX_LINE - 3] + "..."


def _last_line(lines: list[str]) -> str:
    tail = [line for line in lines if line.strip()]
    return repr(_clip(tail[-1])) if tail else "no output at all"


def _stats(n=None, mean=None, std=None, min=None, max=None, p50=None, p90=None, p95=None, p99=None) -> dict:
    return {"n": n, "p50": p50, "p90": p90, "p95": p95, "p99": p99, "mean": mean, "std": std, "min": min, "max": max}


# --- LiteRT / TFLite benchmark_model ------------------------------------------------------------

# Android logcat (`05-30 15:16:44.857  3380  3380 I tflite  : msg`) or the tool's own `INFO: msg`.
_LOGCAT = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+([VDIWEF])\s+[^:]*?\s*:\s?")
_LEVEL = re.compile(r"^(INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG|FATAL):\s?")
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_STAT_PAIR = re.compile(rf"(\w+)=({_NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]+)\) node"
                        r"(?:, yielding (\d+) partitions)?")
_TFLITE_FAILURE = re.compile(r"^error\b|failed to|CANNOT LINK|not found|No such file|Permission denied|"
                             r"not executable|Segmentation fault|Aborted", re.IGNORECASE)


def _tflite_lines(text: str) -> list[tuple[str, str]]:
    """(level, message) per line; level is one of V D I W E F, or '' for an unprefixed line
    (a continuation such as the GPU delegate's list of unsupported ops)."""
    out = []
    for raw in text.splitlines():
        line, level = raw.strip(), ""
        match = _LOGCAT.match(line)
        if match:
            level, line = match[1], line[match.end():]
        match = _LEVEL.match(line)
        if match:
            level, line = match[1][0], line[match.end():]
        out.append((level, line.strip()))
    return out


def _tflite_first_error(lines: list[tuple[str, str]]) -> str | None:
    for level, message in lines:
        if level in ("E", "F") and message:
            return message
    for _, message in lines:  # no ERROR line: a shell or loader message ("...: inaccessible or not found")
        if _TFLITE_FAILURE.search(message):
            return message
    return None


def _tflite_stat(message: str) -> dict:
    """``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`` (us) -> latency stats (ms).
    All runs equal prints only ``count=N curr=X(all same)``."""
    values = {k: float(v) for k, v in _STAT_PAIR.findall(message)}
    n = int(values["count"])
    if "avg" not in values:  # all the same (or count=0)
        curr = values.get("curr")
        ms = None if curr is None else curr / 1e3
        return _stats(n=n, mean=ms, std=0.0 if ms is not None else None, min=ms, max=ms)
    return _stats(n=n, mean=values["avg"] / 1e3, std=values["std"] / 1e3, min=values["min"] / 1e3,
                  max=values["max"] / 1e3)


def _unsupported_ops(lines: list[tuple[str, str]]) -> list[str]:
    """The GPU delegate's list after "Following operations are not supported by GPU delegate:"."""
    ops: list[str] = []
    for i, (_, message) in enumerate(lines):
        if "operations are not supported by GPU delegate" not in message:
            continue
        for _, op in lines[i + 1:]:
            if "operations will run on the GPU" in op or (ops and not op):
                break
            if op and op not in ops:
                ops.append(op)
        break
    return ops


def parse_benchmark_model(text: str) -> dict:
    """LiteRT/TFLite ``benchmark_model`` output -> measurement dict (times in ms).

    Keys: ``latency_ms`` (the timed runs: the last ``count=`` line; p50/p90/p99 None: the tool
    prints no percentiles), ``load_ms`` (Init), ``first_inference_ms``, ``warmup_mean_ms``,
    ``throughput_fps`` (1000 / mean), ``peak_memory_mb`` (None without
    ``--report_peak_memory_footprint``), ``model_size_mb``, ``delegate`` ({name, nodes_replaced,
    nodes_total, partitions, unsupported_ops} from the first ``Replacing N out of M node(s)``
    line, else None) and ``warnings`` (ERROR/WARNING lines of a run that still succeeded: the
    GPU delegate reports unsupported ops as ERROR and then runs them on the CPU).

    A run counts as failed when the ``Inference timings`` summary is missing; the error then
    quotes the tool's first ERROR line.
    """
    lines = _tflite_lines(text)
    messages = [m for _, m in lines]
    summary = next((m for m in map(_TIMINGS.search, messages) if m), None)
    if summary is None:
        detail = _tflite_first_error(lines)
        last = _last_line(text.splitlines())
        raise ToolOutputError("benchmark_model", _clip(detail) if detail else
                              f"no 'Inference timings' summary in its output (last line: {last})")
    init_us, first_us, warmup_us, inference_us = (float(v) for v in summary.groups())
    # The count= lines are the warm-up runs, then the timed runs; the op profiler's
    # "Timings (microseconds): count=..." lines do not start with count= and are skipped.
    stat_lines = [m for m in messages if m.startswith("count=")]
    latency = _tflite_stat(stat_lines[-1]) if stat_lines else _stats(mean=inference_us / 1e3)
    if latency["mean"] is None:
        latency["mean"] = inference_us / 1e3

    delegate = None
    replacing = next((m for m in map(_REPLACING.search, messages) if m), None)
    if replacing:
        delegate = {"name": replacing[3], "nodes_replaced": int(replacing[1]), "nodes_total": int(replacing[2]),
                    "partitions": int(replacing[4]) if replacing[4] else None,
                    "unsupported_ops": _unsupported_ops(lines)}
    peak = next((m for m in map(_PEAK.search, messages) if m), None)
    size = next((m for m in map(_MODEL_SIZE.search, messages) if m), None)
    warnings = [_clip(m) for level, m in lines if level in ("E", "W") and m]
    return {"latency_ms": latency, "load_ms": init_us / 1e3, "first_inference_ms": first_us / 1e3,
            "warmup_mean_ms": warmup_us / 1e3,
            "throughput_fps": 1e3 / latency["mean"] if latency["mean"] else None,
            "peak_memory_mb": float(peak[1]) if peak else None, "model_size_mb": float(size[1]) if size else None,
            "delegate": delegate, "warnings": warnings}


# --- TensorRT trtexec ----------------------------------------------------------------------------

_TRT_PREFIX = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[([A-Z])\] ?")
_TRT_METRICS = {"Latency": "latency_ms", "Enqueue Time": "enqueue_ms", "H2D Latency": "h2d_ms",
                "GPU Compute Time": "gpu_compute_ms", "D2H Latency": "d2h_ms",
                "End-to-End Host Latency": "end_to_end_ms"}  # the last one: TensorRT <= 8.2 only
_TRT_METRIC_LINE = re.compile(r"^(" + "|".join(map(re.escape, _TRT_METRICS)) + r"): (min = .*)$")
_TRT_PAIR = re.compile(rf"(min|max|mean|median|percentile\(({_NUM})%\)) = ({_NUM}) ms")
_TRT_CAUSE = re.compile(r"^\[\d+\] \S")  # the ONNX parser's "[8] Assertion failed: ..." line


def _trt_lines(text: str) -> list[tuple[str, str]]:
    """(severity, message) per line: I W E V, '&' for the ``&&&&`` status lines, '' for the
    unprefixed continuation lines (an ONNX node dump); the ``[TRT]`` tag is dropped."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        match = _TRT_PREFIX.match(line)
        severity = match[1] if match else ("&" if line.startswith("&&&&") else "")
        message = line[match.end():] if match else line
        if message.startswith("[TRT] "):
            message = message[len("[TRT] "):]
        out.append((severity, message.strip()))
    return out


def _trt_stats(body: str, n: int | None) -> dict:
    stats = _stats(n=n)
    for name, percent, value in _TRT_PAIR.findall(body):
        if percent:
            key = f"p{float(percent):g}"
            if key in ("p50", "p90", "p95", "p99"):
                stats[key] = float(value)
        else:
            stats[{"median": "p50"}.get(name, name)] = float(value)
    return stats


def _trt_version(code: str) -> str:
    """``[TensorRT v8602]`` -> 8.6.2, ``v100200`` -> 10.2.0 (major*1000, or *10000 from 10 on)."""
    n = int(code)
    major, rest = divmod(n, 10000) if n >= 100000 else divmod(n, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _trt_failure(lines: list[tuple[str, str]]) -> str | None:
    """The first [E] line, followed by the ONNX parser's cause line when there is one."""
    first = next((m for s, m in lines if s == "E" and m), None)
    if first is None:
        return None
    cause = next((m for s, m in lines if s == "" and _TRT_CAUSE.match(m)), None)
    return _clip(f"{first} {cause}" if cause else first)


def parse_trtexec(text: str) -> dict:
    """TensorRT ``trtexec`` output -> measurement dict (ms), from its ``=== Performance summary ===``.

    Keys: ``throughput_qps`` (= ``throughput_fps`` at batch 1), ``latency_ms`` (host latency:
    H2D + GPU compute + D2H), ``gpu_compute_ms``, ``h2d_ms``, ``d2h_ms``, ``enqueue_ms``,
    ``end_to_end_ms`` (each {n, min, max, mean, std: None, p50 (median), p90, p95, p99}; a
    percentile trtexec did not print, e.g. p90/p95 before TensorRT 8.4, is None; a metric it did
    not print is None), ``walltime_s``, ``gpu_compute_total_s``, ``tensorrt_version``, ``gpu``,
    ``precision``, ``command`` and ``warnings`` ([W]/[E] lines of a successful run). ``n`` is the
    number of timed queries ("Timing trace has N queries").

    Lines may carry trtexec's ``[11/24/2026-10:00:00] [I] `` prefix or not.
    """
    lines = _trt_lines(text)
    messages = [m for _, m in lines]
    failed = any(m.startswith("&&&& FAILED") for m in messages)
    start = next((i for i, m in enumerate(messages) if m == "=== Performance summary ==="), None)
    if failed or start is None:
        detail = _trt_failure(lines)
        if detail is None:
            detail = ("&&&& FAILED with no [E] line" if failed else
                      f"no '=== Performance summary ===' in its output (last line: {_last_line(text.splitlines())})")
        raise ToolOutputError("trtexec", detail)

    def first(pattern: str) -> re.Match | None:
        return next((m for m in map(re.compile(pattern).search, messages) if m), None)

    trace = first(rf"^Timing trace has (\d+) queries over ({_NUM}) s")
    n = int(trace[1]) if trace else None
    result: dict = {key: None for key in _TRT_METRICS.values()}
    throughput = walltime = gpu_total = None
    for message in messages[start + 1:]:
        if message.startswith("&&&&"):
            break
        if match := _TRT_METRIC_LINE.match(message):
            result[_TRT_METRICS[match[1]]] = _trt_stats(match[2], n)
        elif match := re.match(rf"^Throughput: ({_NUM}) qps", message):
            throughput = float(match[1])
        elif match := re.match(rf"^Total Host Walltime: ({_NUM}) s", message):
            walltime = float(match[1])
        elif match := re.match(rf"^Total GPU Compute Time: ({_NUM}) s", message):
            gpu_total = float(match[1])
    if result["latency_ms"] is None:
        raise ToolOutputError("trtexec", "no 'Latency: min = ...' line in its performance summary")

    status = first(r"^&&&& (?:RUNNING|PASSED) TensorRT\.trtexec \[TensorRT v(\d+)\] # (.*)$")
    version, gpu, precision = first(r"^TensorRT version: (\S+)"), first(r"^Selected Device: (.+)$"), \
        first(r"^Precision: (.+)$")
    warnings = list(dict.fromkeys(_clip(m) for s, m in lines if s in ("W", "E") and m.strip("* ")))
    return {"throughput_qps": throughput, "throughput_fps": throughput, **result,
            "walltime_s": walltime, "gpu_compute_total_s": gpu_total,
            "tensorrt_version": version[1] if version else (_trt_version(status[1]) if status else None),
            "gpu": gpu[1].strip() if gpu else None, "precision": precision[1].strip() if precision else None,
            "command": status[2].strip() if status else None, "warnings": warnings}


# --- ONNX Runtime onnxruntime_perf_test ----------------------------------------------------------

_ORT_UNIT_MS = {"s": 1e3, "sec": 1e3, "secs": 1e3, "seconds": 1e3, "ms": 1.0, "us": 1e-3}
_ORT_LATENCY = re.compile(rf"^(Min|Max|P50|P90|P95|P99) Latency(?::| is)\s*({_NUM})\s*([a-z]*)", re.IGNORECASE)
_ORT_FAILURE = re.compile(r"error|exception|failed|\[E:|not found|no such file", re.IGNORECASE)


def parse_ort_perf_test(text: str) -> dict:
    """ONNX Runtime ``onnxruntime_perf_test`` output -> measurement dict (ms).

    Keys: ``latency_ms`` {n, mean (``Average inference time cost``), and min/max/p50/p90/p95/p99
    from the ``-s`` statistics, in seconds as printed (``P50 Latency: 0.0416 s``; the older
    ``P50 Latency is 0.0416 sec`` is read too), None without ``-s``}, ``load_ms`` (session
    creation), ``first_inference_ms``, ``throughput_fps`` (inferences per second),
    ``peak_memory_mb`` (peak working set) and ``cpu_usage_percent``.
    """
    lines = [line.strip() for line in text.splitlines()]
    average = next((m for m in (re.match(rf"^Average inference time cost: ({_NUM}) ?(\w*)", ln) for ln in lines) if m),
                   None)
    if average is None:
        detail = next((ln for ln in lines if _ORT_FAILURE.search(ln)), None)
        raise ToolOutputError("onnxruntime_perf_test", _clip(detail) if detail else
                              f"no 'Average inference time cost' in its output (last line: {_last_line(lines)})")

    def value(pattern: str) -> float | None:
        match = next((m for m in (re.match(pattern, ln) for ln in lines) if m), None)
        return float(match[1]) if match else None

    latency = _stats(mean=float(average[1]) * _ORT_UNIT_MS.get(average[2].lower() or "ms", 1.0))
    n = value(r"^Total inference requests: (\d+)")
    n = value(r"^Runs:\s*(\d+)") if n is None else n
    latency["n"] = None if n is None else int(n)
    for line in lines:
        if match := _ORT_LATENCY.match(line):
            latency[match[1].lower()] = float(match[2]) * _ORT_UNIT_MS.get(match[3].lower() or "s", 1e3)
    session_s = value(rf"^Session creation time cost: ({_NUM}) s")
    peak_bytes = value(r"^Peak working set size: (\d+) bytes")
    return {"latency_ms": latency, "load_ms": session_s * 1e3 if session_s is not None else None,
            "first_inference_ms": value(rf"^First inference time cost: ({_NUM}) ms"),
            "throughput_fps": value(rf"^Number of inferences per second: ({_NUM})"),
            "peak_memory_mb": peak_bytes / 2 ** 20 if peak_bytes is not None else None,
            "cpu_usage_percent": value(rf"^Avg CPU usage: ({_NUM}) %")}


__all__ = ["ToolOutputError", "parse_benchmark_model", "parse_ort_perf_test", "parse_trtexec"]
