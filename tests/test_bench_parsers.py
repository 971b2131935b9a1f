"""The on-device tool parsers on recorded output (tests/fixtures/bench): exact numbers, units
(benchmark_model prints microseconds, onnxruntime_perf_test seconds; all come out in ms), no
invented percentiles, and failures raised as ToolOutputError quoting the tool's own line."""

from pathlib import Path

import pytest

from crd_edge.bench.parsers import ToolOutputError, parse_benchmark_model, parse_ort_perf_test, parse_trtexec
from crd_edge.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def approx(d: dict) -> dict:
    return {k: (None if v is None else pytest.approx(v, rel=1e-9)) for k, v in d.items()}


# --- benchmark_model -----------------------------------------------------------------------------

def test_benchmark_model_xnnpack_cpu():
    r = parse_benchmark_model(fixture("benchmark_model_xnnpack_cpu.txt"))
    # the timed runs (second count= line), us -> ms; no percentiles: the tool prints none
    assert r["latency_ms"] == approx({"n": 50, "p50": None, "p90": None, "p95": None, "p99": None,
                                      "mean": 41.7945, "std": 0.712, "min": 40.961, "max": 44.873})
    assert r["load_ms"] == pytest.approx(61.226) and r["first_inference_ms"] == pytest.approx(52.130)
    assert r["warmup_mean_ms"] == pytest.approx(43.0933)
    assert r["throughput_fps"] == pytest.approx(1000 / 41.7945)
    assert r["peak_memory_mb"] == pytest.approx(33.8672) and r["model_size_mb"] == pytest.approx(1.73148)
    assert r["delegate"] == {"name": "TfLiteXNNPackDelegate", "nodes_replaced": 52, "nodes_total": 52,
                             "partitions": 1, "unsupported_ops": []}
    assert r["warnings"] == []


def test_benchmark_model_gpu_partial_delegation_succeeds_despite_error_lines():
    r = parse_benchmark_model(fixture("benchmark_model_gpu_partial.txt"))
    assert r["latency_ms"] == approx({"n": 50, "p50": None, "p90": None, "p95": None, "p99": None,
                                      "mean": 59.0463, "std": 1.012, "min": 57.802, "max": 63.358})
    assert r["load_ms"] == pytest.approx(1873.42) and r["first_inference_ms"] == pytest.approx(164.211)
    assert r["peak_memory_mb"] == pytest.approx(167.902)
    assert r["delegate"] == {"name": "TfLiteGpuDelegateV2", "nodes_replaced": 40, "nodes_total": 52, "partitions": 6,
                             "unsupported_ops": ["MIRROR_PAD: Operation is not supported.",
                                                 "TRANSPOSE_CONV: Max version supported: 3. Requested version 4."]}
    assert r["warnings"] == ["Following operations are not supported by GPU delegate:"]


@pytest.mark.parametrize("name, line", [
    ("benchmark_model_model_not_found.txt", "Could not open '/data/local/tmp/crd-edge/student_int8.tflite'."),
    ("benchmark_model_gpu_delegate_failed.txt",
     'Can not open OpenCL library on this device - dlopen failed: library "libOpenCL.so" not found'),
])
def test_benchmark_model_failures_quote_the_first_error_line(name, line):
    with pytest.raises(ToolOutputError) as info:
        parse_benchmark_model(fixture(name))
    assert str(info.value) == f"benchmark_model failed: {line}"
    assert info.value.tool == "benchmark_model" and isinstance(info.value, UserError)


def test_benchmark_model_logcat_prefix_all_same_and_exponent_notation():
    text = """\
05-30 15:16:44.858  3380  3380 I tflite  : Initialized session in 126.059ms.
05-30 15:16:45.362  3380  3380 I tflite  : count=3 curr=1.25e+06(all same)
05-30 15:16:46.365  3380  3380 I tflite  : count=5 first=1250000 curr=1250000 min=1.2e+06 max=1.3e+06 avg=1.25e+06 std=31622
05-30 15:16:46.365  3380  3380 I tflite  : Timings (microseconds): count=5 first=1 curr=1 min=1 max=1 avg=1 std=0
05-30 15:16:46.366  3380  3380 I tflite  : Inference timings in us: Init: 126059, First inference: 1250000, Warmup (avg): 1.25e+06, Inference (avg): 1.25e+06
"""
    r = parse_benchmark_model(text)  # the op profiler's "Timings (microseconds): count=" line is skipped
    assert r["latency_ms"]["n"] == 5 and r["latency_ms"]["mean"] == pytest.approx(1250.0)
    assert r["latency_ms"]["min"] == pytest.approx(1200.0) and r["latency_ms"]["std"] == pytest.approx(31.622)
    assert r["peak_memory_mb"] is None and r["delegate"] is None
    timed = text.splitlines()[2]
    same = parse_benchmark_model(text.replace(timed, timed.split("count=")[0] + "count=4 curr=1250000(all same)"))
    assert same["latency_ms"] == approx({"n": 4, "p50": None, "p90": None, "p95": None, "p99": None,
                                         "mean": 1250.0, "std": 0.0, "min": 1250.0, "max": 1250.0})


def test_benchmark_model_without_summary_or_error_line_names_the_last_line():
    with pytest.raises(ToolOutputError, match=r"no 'Inference timings' summary .*last line: 'INFO: Loaded model"):
        parse_benchmark_model("INFO: STARTING!\nINFO: Loaded model /data/local/tmp/x.tflite\n")
    with pytest.raises(ToolOutputError, match=r"^benchmark_model failed: /system/bin/sh: .*inaccessible or not found$"):
        parse_benchmark_model("/system/bin/sh: /data/local/tmp/benchmark_model: inaccessible or not found\n")
    with pytest.raises(ToolOutputError, match="no output at all"):
        parse_benchmark_model("")


# --- trtexec -------------------------------------------------------------------------------------

def test_trtexec_orin_fp16_performance_summary():
    r = parse_trtexec(fixture("trtexec_orin_fp16.txt"))
    assert r["throughput_qps"] == pytest.approx(420.124) and r["throughput_fps"] == r["throughput_qps"]
    assert r["latency_ms"] == approx({"n": 4203, "min": 2.31689, "max": 3.6748, "mean": 2.37418, "std": None,
                                      "p50": 2.36719, "p90": 2.39478, "p95": 2.41016, "p99": 2.73828})
    assert r["gpu_compute_ms"] == approx({"n": 4203, "min": 2.22827, "max": 3.55762, "mean": 2.28068, "std": None,
                                          "p50": 2.27344, "p90": 2.29785, "p95": 2.31299, "p99": 2.62012})
    assert r["h2d_ms"]["mean"] == pytest.approx(0.0582253) and r["h2d_ms"]["p99"] == pytest.approx(0.0776367)
    assert r["d2h_ms"]["p50"] == pytest.approx(0.0344238) and r["d2h_ms"]["max"] == pytest.approx(0.0698242)
    assert r["enqueue_ms"]["p95"] == pytest.approx(0.682129) and r["enqueue_ms"]["min"] == pytest.approx(0.508301)
    assert r["end_to_end_ms"] is None  # printed by TensorRT <= 8.2 only
    # host latency = H2D + GPU compute + D2H (a consistency check on the fixture itself)
    assert r["latency_ms"]["mean"] == pytest.approx(r["h2d_ms"]["mean"] + r["gpu_compute_ms"]["mean"]
                                                    + r["d2h_ms"]["mean"], rel=1e-5)
    assert r["walltime_s"] == pytest.approx(10.0042) and r["gpu_compute_total_s"] == pytest.approx(9.5857)
    assert (r["tensorrt_version"], r["gpu"], r["precision"]) == ("8.6.2", "Orin", "FP32+FP16")
    assert r["command"].startswith("/usr/src/tensorrt/bin/trtexec --onnx=student.onnx ")
    assert "* GPU compute time is unstable, with coefficient of variance = 3.41%." in r["warnings"]


def test_trtexec_failure_quotes_the_parser_error_and_its_cause():
    with pytest.raises(ToolOutputError) as info:
        parse_trtexec(fixture("trtexec_failed_onnx_parser.txt"))
    message = str(info.value)
    assert message == ('trtexec failed: ModelImporter.cpp:773: While parsing node number 1 [Pad -> '
                       '"/model/model.0/Pad_output_0"]: [8] Assertion failed: mode == "constant" && value == 0.f && '
                       '"This version of TensorRT only supports constant 0 padding!"')
    assert "\n" not in message


SUMMARY_82 = """\
=== Performance summary ===
Throughput: 1740.2 qps
Latency: min = 0.564209 ms, max = 0.593018 ms, mean = 0.573891 ms, median = 0.572998 ms, percentile(99%) = 0.587769 ms
End-to-End Host Latency: min = 0.574707 ms, max = 0.606201 ms, mean = 0.586663 ms, median = 0.585938 ms, percentile(99%) = 0.601685 ms
GPU Compute Time: min = 0.554932 ms, max = 0.58374 ms, mean = 0.564682 ms, median = 0.564087 ms, percentile(99%) = 0.578552 ms
Explanations of the performance metrics are printed in the verbose logs.

=== Explanations of the performance metrics ===
Throughput: the observed throughput computed by dividing the number of queries by the Total Host Walltime.
Latency: the summation of H2D Latency, GPU Compute Time, and D2H Latency. This is the latency to infer a single query.
&&&& PASSED TensorRT.trtexec [TensorRT v8201] # trtexec --loadEngine=student.engine
"""


def test_trtexec_older_summary_without_prefixes_and_p90():
    r = parse_trtexec(SUMMARY_82)  # no log prefixes, only percentile(99%), verbose explanations after
    assert r["latency_ms"] == approx({"n": None, "min": 0.564209, "max": 0.593018, "mean": 0.573891, "std": None,
                                      "p50": 0.572998, "p90": None, "p95": None, "p99": 0.587769})
    assert r["end_to_end_ms"]["p99"] == pytest.approx(0.601685)
    assert r["h2d_ms"] is None and r["d2h_ms"] is None and r["enqueue_ms"] is None
    assert r["throughput_qps"] == pytest.approx(1740.2) and r["tensorrt_version"] == "8.2.1"
    assert parse_trtexec(SUMMARY_82.replace("v8201", "v100200"))["tensorrt_version"] == "10.2.0"


def test_trtexec_without_summary():
    with pytest.raises(ToolOutputError, match=r"no '=== Performance summary ===' .*Starting inference"):
        parse_trtexec("[11/24/2026-10:02:22] [I] Starting inference\n")  # killed mid-run
    with pytest.raises(ToolOutputError, match=r"no 'Latency: min = \.\.\.' line"):
        parse_trtexec("[11/24/2026-10:02:32] [I] === Performance summary ===\n[I] Throughput: 1 qps\n")
    with pytest.raises(ToolOutputError, match=r"^trtexec failed: &&&& FAILED with no \[E\] line$"):
        parse_trtexec(SUMMARY_82.replace("&&&& PASSED", "&&&& FAILED"))


# --- onnxruntime_perf_test -----------------------------------------------------------------------

def test_ort_perf_test():
    r = parse_ort_perf_test(fixture("onnxruntime_perf_test_cpu.txt"))
    # P50/.. are printed in seconds, the average in ms
    assert r["latency_ms"] == approx({"n": 100, "p50": 41.5873, "p90": 42.7159, "p95": 43.3302, "p99": 48.1074,
                                      "mean": 41.8263, "std": None, "min": 40.2116, "max": 49.6331})
    assert r["load_ms"] == pytest.approx(91.2347) and r["first_inference_ms"] == pytest.approx(61.0)
    assert r["throughput_fps"] == pytest.approx(23.8999) and r["cpu_usage_percent"] == pytest.approx(97.0)
    assert r["peak_memory_mb"] == pytest.approx(145960960 / 2 ** 20)


def test_ort_perf_test_latency_is_sec_form_and_no_statistics():
    text = "Average inference time cost: 12.5 ms\nP50 Latency is 0.0123 sec\nP99 Latency is 0.0151 sec\n"
    r = parse_ort_perf_test(text)
    assert r["latency_ms"]["p50"] == pytest.approx(12.3) and r["latency_ms"]["p99"] == pytest.approx(15.1)
    assert r["latency_ms"]["p90"] is None and r["latency_ms"]["n"] is None and r["load_ms"] is None
    plain = parse_ort_perf_test("Total inference requests: 10\nAverage inference time cost: 3.5 ms\n")
    assert plain["latency_ms"]["mean"] == 3.5 and plain["latency_ms"]["p50"] is None and plain["latency_ms"]["n"] == 10


def test_ort_perf_test_failure():
    text = ("2026-11-24 10:00:00.1 [E:onnxruntime:, inference_session.cc:1981 operator()] Exception during "
            "initialization: Load model from student.onnx failed: No such file\n")
    with pytest.raises(ToolOutputError, match=r"^onnxruntime_perf_test failed: 2026-.*\[E:onnxruntime:.*No such file$"):
        parse_ort_perf_test(text)
