"""`crd-edge bench` locally: harness statistics, the child-process runner, results.jsonl, the
Markdown report with the teacher-vs-student speed-up, and the plots."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from crd_edge.bench.harness import matmul_gflops, percentiles, time_calls
from crd_edge.bench.records import BenchRow
from crd_edge.bench.results import load_results
from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record


def test_percentiles_closed_form():
    stats = percentiles([float(v) for v in range(1, 101)])
    assert stats["n"] == 100 and stats["p50"] == 50.5 and stats["min"] == 1 and stats["max"] == 100
    assert stats["p90"] == pytest.approx(90.1) and stats["mean"] == 50.5
    assert stats["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_time_calls_respects_runs_and_the_time_budget():
    calls = []
    assert len(time_calls(lambda: calls.append(1), warmup=3, runs=7, max_seconds=60)) == 7 and len(calls) == 10
    import time
    samples = time_calls(lambda: time.sleep(0.02), warmup=0, runs=1000, max_seconds=0.1)
    assert 5 <= len(samples) < 20 and min(samples) >= 19  # never fewer than 5 runs


def test_matmul_roofline_is_a_positive_throughput():
    r = matmul_gflops(threads=1, n=256, seconds=0.2)
    assert r["gflops"] > 0.1 and r["gmacs_per_s"] == pytest.approx(r["gflops"] / 2)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny student and a wider 'teacher', each exported to ONNX fp32 with a manifest."""
    from crd_edge.export.run import export
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    student = create_model("mobile_resnet_9blocks", ngf=8, n_blocks=2, upsample="convt4")
    atomic_torch_save({"format_version": 1, "student": student_record(student, 64)}, root / "s.pt")
    teacher = create_model("resnet_9blocks", ngf=16, n_blocks=2)
    torch.save(teacher.state_dict(), root / "t.pth")
    list(export(root / "s.pt", "onnx", "fp32", out_dir=root / "export"))
    list(export(root / "t.pth", "onnx", "fp32", size=64, out_dir=root / "teacher"))
    return root


def test_bench_measures_reports_and_compares(run_cli, exports, tmp_path):
    out = tmp_path / "bench"
    code, stdout, err = run_cli("bench", exports / "export", "--compare", exports / "teacher", "--runs", 3,
                                "--max-seconds", 0.2, "--no-roofline", "--out", out)
    assert code == 0, err
    results = load_results([out / "results.jsonl"])
    assert [(r.artifact.role, r.status) for r in results] == [("student", "measured"), ("teacher", "measured")]
    s, t = results
    assert s.runtime == "onnxruntime" and s.latency.n >= 3 and s.input_size == (64, 64)
    assert s.model.params == sum(p.numel() for p in create_model(
        "mobile_resnet_9blocks", ngf=8, n_blocks=2, upsample="convt4").parameters())
    assert t.model.macs_true > s.model.macs_true > 0
    assert s.artifact.verification_status == "passed" and s.peak_mb > 10
    assert 0 < s.details["prepost_ms"]["pre"]["p50"] and s.end_to_end_fps < s.throughput_fps
    report = (out / "report.md").read_text()
    assert "| student | student_64_fp32.onnx | onnxruntime | fp32 | 64x64 |" in report
    assert "Student speed-up over the teacher" in report
    speedup = json.loads((out / "report.json").read_text())["speedups"][0]
    assert speedup["speedup"] == pytest.approx(t.latency.p50 / s.latency.p50)
    for name in ("latency_vs_macs.png", "latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables, *pictures = report.split("\n\n![")
    assert tables in stdout and "![" not in stdout  # the terminal gets the tables, the file the pictures too
    assert pictures == ["latency vs macs](latency_vs_macs.png)", "latency](latency.png)\n"]
    # Where the time goes: onnxruntime's own profiler, by op type, shares of one whole.
    ops = {o["op"]: o for o in s.ops}
    assert {"Conv", "ConvTranspose"} <= set(ops) and all(o["where"] == "CPU" and o["ms"] > 0 for o in s.ops)
    assert ops["ConvTranspose"]["nodes"] == 2 and sum(o["share"] for o in s.ops) == pytest.approx(1)
    assert "## Where the time goes (per op type)" in report
    # the slowest op type first (which one it is depends on the machine's load: not asserted)
    slowest = max(s.ops, key=lambda o: o["ms"])["op"]
    assert f"| student_64_fp32.onnx | onnxruntime | {slowest} " in report.split("## Where the time goes")[1]


def test_no_op_profile_skips_it(run_cli, exports, tmp_path):
    code, _, err = run_cli("bench", exports / "export", "--runs", 3, "--max-seconds", 0.2, "--no-roofline",
                           "--no-op-profile", "--out", tmp_path)
    assert code == 0, err
    (row,) = load_results([tmp_path / "results.jsonl"])
    assert row.measured and not row.ops and "ops" not in row.to_json()
    assert "Where the time goes" not in (tmp_path / "report.md").read_text()


def test_openvino_profile_names_its_kernels(exports):
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed (crd-edge[openvino])")
    from crd_edge.runtime.openvino_session import OpenVINOSession
    xml = exports / "ov" / "model.xml"
    ov.save_model(ov.convert_model(str(next((exports / "export").glob("*.onnx")))), str(xml))
    ops = OpenVINOSession(xml, threads=1).op_profile(np.zeros((1, 3, 64, 64), np.float32), runs=2)
    assert ops and sum(o["share"] for o in ops) == pytest.approx(1)
    assert any(o["op"] == "Convolution" for o in ops) and all(o["where"] for o in ops)  # e.g. jit_avx2_f32


def test_the_report_names_ops_off_the_fast_path():
    from crd_edge.bench.results import _op_profile_section

    def row(runtime, ops):
        return BenchRow.from_json({"status": "measured", "device": {"kind": "local", "name": "local"},
                                   "artifact": {"name": "m"}, "runtime": runtime,
                                   "ops": [{"op": op, "where": where, "ms": 1.0, "share": 0.5} for op, where in ops]})
    text = "\n".join(_op_profile_section([
        row("onnxruntime (CUDA)", [("Conv", "CUDA"), ("Resize", "CPU")]),
        row("onnxruntime", [("Conv", "CPU"), ("Pad", "CPU")]),
        row("openvino", [("Convolution", "brgconv_avx512_f32"), ("Pad", "ref_f32")])]))
    lines = [line for line in text.splitlines() if line.startswith("| local")]
    assert [line.rsplit("|", 2)[1].strip() for line in lines] == ["Resize", "-", "Pad"]


def test_bench_a_checkpoint_in_torch_and_merge_reports(run_cli, exports, tmp_path):
    code, _, err = run_cli("bench", exports / "s.pt", "--runs", 3, "--max-seconds", 0.2, "--out", tmp_path / "a")
    assert code == 0, err
    (r,) = load_results([tmp_path / "a" / "results.jsonl"])
    assert r.runtime == "torch" and r.matmul_gmacs_per_s > 0  # roofline on by default
    code, _, err = run_cli("bench", exports / "export" / "student_64_fp32.onnx", "--runs", 3, "--max-seconds", 0.2,
                           "--no-roofline", "--out", tmp_path / "b", "--merge", tmp_path / "a" / "results.jsonl")
    assert code == 0, err
    report = (tmp_path / "b" / "report.md").read_text()
    assert "| torch |" in report and "| onnxruntime |" in report and "% of ceiling" in report


def test_bench_bad_inputs(run_cli, tmp_path, exports):
    code, _, err = run_cli("bench", tmp_path / "nothing")
    assert code == 2 and "no such artifact, export folder or checkpoint" in err
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run_cli("bench", tmp_path / "notes.txt")
    assert code == 2 and "not a model artifact" in err
    code, _, err = run_cli("bench", exports / "export", "--on", "usb:1")
    assert code == 2 and err == "error: --on usb:1: expected local, browser[:webgpu], adb:SERIAL or ssh:[USER@]HOST[:PORT]\n"
    code, _, err = run_cli("bench", exports / "export", "--device", "usb:1")  # the old name still works, and says so
    assert code == 2 and "warning: bench --device is now --on" in err and "error: --on usb:1: expected" in err
    # one JSON-lines reader for every file: a torn last line (a crash) is skipped silently, a
    # damaged line elsewhere is skipped with a warning naming it
    (tmp_path / "bad.jsonl").write_text('{"status": "measured"}\n{"trunc')
    assert [r.status for r in load_results([tmp_path / "bad.jsonl"])] == ["measured"]
    (tmp_path / "bad.jsonl").write_text('{"status": "measured"}\n{"trunc\n{"status": "error"}\n')
    with pytest.warns(UserWarning, match=r"bad.jsonl: skipped 1 line\(s\) that are not JSON \(line 2\)"):
        assert [r.status for r in load_results([tmp_path / "bad.jsonl"])] == ["measured", "error"]


def test_peak_rss_is_the_measured_process_own(tmp_path):
    """A harness started by a process that once held a lot of memory reports its own peak."""
    import subprocess
    import sys
    code = ("import numpy as np, subprocess, sys; a = np.ones(300 * 2**20 // 8); a.sum(); del a; "
            "print(subprocess.run([sys.executable, '-c', 'from crd_edge.bench.harness import peak_rss_mb; "
            "print(peak_rss_mb())'], capture_output=True, text=True).stdout)")
    child_peak = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    assert 5 < child_peak < 250  # the parent peaked above 300 MB


@pytest.mark.parametrize("option,value,message", [
    ("--delegate", "tpu", "--delegate tpu: choose one of xnnpack, gpu, nnapi, cpu"),
    ("--ov-device", "TPU", "--ov-device TPU: choose one of CPU, GPU, NPU, AUTO"),
    ("--ort-provider", "FooExecutionProvider", "--ort-provider FooExecutionProvider: not in this onnxruntime build"),
    ("--benchmark-binary", "/nowhere/benchmark_model", "--benchmark-binary /nowhere/benchmark_model: no such file"),
])
def test_unknown_runner_options_are_one_line_before_any_work(run_cli, exports, tmp_path, option, value, message):
    code, _, err = run_cli("bench", exports / "export", option, value, "--out", tmp_path / "b")
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


def test_an_onnxruntime_provider_reaches_the_session(exports, tmp_path):
    from crd_edge.bench.run import RunnerOptions, bench

    (r,) = bench([str(exports / "export")], out_dir=tmp_path, runs=2, max_seconds=0.1, roofline=False,
                 options=RunnerOptions(ort_providers=("CPUExecutionProvider",)))
    assert r.measured and r.runtime == "onnxruntime"


def test_each_runner_times_what_the_format_table_says():
    from crd_edge.artifacts import Artifact
    from crd_edge.bench.run import skip_reason

    def reason(kind: str, target: str):
        return skip_reason(kind, Artifact(Path("x"), "student", target, "fp32"))
    assert [reason(k, t) for k, t in [("local", "onnx"), ("ssh", "tensorrt"), ("adb", "tflite"), ("browser", "web"),
                                      ("local", "torch"), ("ssh", "openvino")]] == [None] * 6
    assert "macOS" in reason("local", "coreml") and "macOS" in reason("ssh", "coreml")
    assert "trtexec" in reason("local", "tensorrt")
    assert "--on browser" in reason("local", "web") and "--on browser" in reason("adb", "web")
    assert "benchmark_model" in reason("adb", "onnx") and "--target web" in reason("browser", "openvino")
