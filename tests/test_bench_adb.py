"""The adb runner against a stand-in ``adb`` on PATH: it records each argv as one JSON line
and replays a phone (get-state, getprop, push, shell ... benchmark_model -> a recorded
benchmark_model output). Checked: the exact command lines (a model path with a space stays
one quoted word for the phone's shell), the parsed result, and every error path."""

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from crd_edge.bench.parsers import ToolOutputError
from crd_edge.bench.runners.adb import benchmark_command, run_adb
from crd_edge.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
SERIAL = "R5CT1234ABC"
PROPS = {"ro.product.model": "Pixel 7", "ro.soc.model": "GS201", "ro.board.platform": "gs201",
         "ro.build.version.release": "14"}

# The stand-in: config in $FAKE_ADB_CONFIG, one JSON argv per call appended to $FAKE_ADB_LOG.
FAKE_ADB = """\
import json, os, shlex, sys, time
cfg = json.load(open(os.environ["FAKE_ADB_CONFIG"]))
argv = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
if cfg.get("hang"):
    time.sleep(60)
args = argv[2:] if argv[:1] == ["-s"] else argv
if args[0] == "get-state":
    if cfg["state"] == "device":
        print("device")
        sys.exit(0)
    sys.stderr.write(cfg["state"] + "\\n")
    sys.exit(1)
if args[0] == "push":
    if cfg.get("push_error"):
        sys.stderr.write(cfg["push_error"] + "\\n")
        sys.exit(1)
    print(f"{args[1]}: 1 file pushed, 0 skipped. 31.2 MB/s (1815552 bytes in 0.055s)")
    sys.exit(0)
words = shlex.split(" ".join(args[1:]))  # what the phone's sh would see
if words[0] == "getprop":
    print(cfg["props"].get(words[1], ""))
elif words[0] == "ls":
    if not cfg.get("default_binary", True):
        sys.stderr.write(f"ls: {words[1]}: No such file or directory\\n")
        sys.exit(1)
    print(words[1])
elif words[0] in ("mkdir", "chmod", "rm"):
    pass
elif words[0].endswith("/benchmark_model"):
    sys.stdout.write(open(cfg["output"]).read())
    sys.exit(cfg.get("rc", 0))
else:
    sys.stderr.write("unexpected command\\n")
    sys.exit(99)
"""


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """Put the stand-in adb first on PATH; returns (configure(**cfg), calls())."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "adb"
    script.write_text(f"#!{sys.executable}\n{FAKE_ADB}")
    script.chmod(0o755)
    config, log = tmp_path / "adb.json", tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ADB_CONFIG", str(config))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))

    def configure(output="benchmark_model_xnnpack_cpu.txt", **cfg):
        config.write_text(json.dumps({"state": "device", "props": PROPS, "output": str(FIXTURES / output), **cfg}))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    configure()
    return configure, calls


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "my exports"
    folder.mkdir()
    path = folder / "my student.tflite"
    path.write_bytes(b"TFL3 stand-in")
    return path


def test_pushed_binary_xnnpack_command_lines_and_result(phone, model, tmp_path):
    _, calls = phone
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(b"\x7fELF")
    r = run_adb(SERIAL, model, benchmark_binary=binary, threads=4, delegate="xnnpack", warmup=5, runs=50)

    remote_model = "/data/local/tmp/crd-edge/my student.tflite"
    run_line = ("/data/local/tmp/crd-edge/benchmark_model '--graph=/data/local/tmp/crd-edge/my student.tflite' "
                "--num_threads=4 --warmup_runs=5 --num_runs=50 --report_peak_memory_footprint=true "
                "--use_xnnpack=true 2>&1")
    s = ["-s", SERIAL]
    assert calls() == [
        [*s, "get-state"],
        [*s, "shell", "getprop ro.product.model"],
        [*s, "shell", "getprop ro.soc.model"],
        [*s, "shell", "getprop ro.build.version.release"],
        [*s, "shell", "mkdir -p /data/local/tmp/crd-edge"],
        [*s, "push", str(binary), "/data/local/tmp/crd-edge/benchmark_model"],
        [*s, "shell", "chmod +x /data/local/tmp/crd-edge/benchmark_model"],
        [*s, "push", str(model), remote_model],  # adb push: a plain argument, no remote shell
        [*s, "shell", run_line],
        [*s, "shell", "rm -f '/data/local/tmp/crd-edge/my student.tflite'"],
    ]
    # the phone's shell sees the graph path as one word
    assert shlex.split(run_line)[1] == f"--graph={remote_model}"

    assert r["runtime"] == "litert benchmark_model (xnnpack)" and r["threads"] == 4
    assert r["device"] == {"kind": "adb", "serial": SERIAL, "model": "Pixel 7", "soc": "GS201", "android": "14"}
    lat = r["latency_ms"]
    assert lat["n"] == 50 and lat["mean"] == pytest.approx(41.7945) and lat["min"] == pytest.approx(40.961)
    assert lat["p50"] is None and lat["p90"] is None and lat["p99"] is None
    assert r["load_ms"] == pytest.approx(61.226) and r["first_inference_ms"] == pytest.approx(52.13)
    assert r["throughput_fps"] == pytest.approx(1000 / 41.7945)
    assert r["peak_rss_mb"] == r["peak_memory_mb"] == pytest.approx(33.8672)
    assert r["delegate"]["name"] == "TfLiteXNNPackDelegate" and r["delegate"]["nodes_replaced"] == 52
    assert r["settings"] == {"warmup": 5, "runs": 50, "delegate": "xnnpack",
                             "binary": "/data/local/tmp/crd-edge/benchmark_model"}
    assert r["command"] == run_line.removesuffix(" 2>&1") and r["path"] == str(model)
    assert r["raw_tail"].splitlines()[-1] == "INFO: + RssFile + RssShmem : 9 MB"
    assert len(r["raw_tail"].splitlines()) == 20


def test_binary_already_on_phone_gpu_partial_and_board_platform(phone, model):
    configure, calls = phone
    configure(output="benchmark_model_gpu_partial.txt", props={**PROPS, "ro.soc.model": ""})
    r = run_adb(SERIAL, model, delegate="gpu", threads=2, warmup=3, runs=20)
    lines = [c[3] for c in calls() if c[2] == "shell"]
    assert "getprop ro.board.platform" in lines and "ls /data/local/tmp/benchmark_model" in lines
    assert "chmod +x /data/local/tmp/benchmark_model" in lines
    assert not any(c[2] == "push" and c[-1].endswith("/benchmark_model") for c in calls())
    assert ("/data/local/tmp/benchmark_model '--graph=/data/local/tmp/crd-edge/my student.tflite' --num_threads=2 "
            "--warmup_runs=3 --num_runs=20 --report_peak_memory_footprint=true --use_gpu=true 2>&1") in lines
    assert r["device"]["soc"] == "gs201" and r["runtime"] == "litert benchmark_model (gpu)"
    assert r["delegate"]["nodes_replaced"] == 40 and r["delegate"]["nodes_total"] == 52
    assert r["latency_ms"]["mean"] == pytest.approx(59.0463)


@pytest.mark.parametrize("delegate, flag", [("xnnpack", "--use_xnnpack=true"), ("gpu", "--use_gpu=true"),
                                            ("nnapi", "--use_nnapi=true"), ("cpu", "--use_xnnpack=false")])
def test_delegate_flags(delegate, flag):
    words = benchmark_command("/bm", "/m.tflite", 1, delegate, 0, 1)
    assert words == ["/bm", "--graph=/m.tflite", "--num_threads=1", "--warmup_runs=0", "--num_runs=1",
                     "--report_peak_memory_footprint=true", flag]


def test_a_file_name_cannot_inject_a_remote_command(phone, tmp_path):
    _, calls = phone
    evil = tmp_path / "x'; rm -rf sdcard; echo '.tflite"
    evil.write_bytes(b"TFL3")
    run_adb(SERIAL, evil)
    (run_line,) = [c[3] for c in calls() if c[2] == "shell" and "--graph=" in c[3]]
    words = shlex.split(run_line)  # the phone's sh: still one --graph word, then the fixed flags
    assert words[1] == "--graph=/data/local/tmp/crd-edge/x'; rm -rf sdcard; echo '.tflite"
    assert words[2:] == ["--num_threads=4", "--warmup_runs=5", "--num_runs=50", "--report_peak_memory_footprint=true",
                         "--use_xnnpack=true", "2>&1"]


def test_adb_missing_from_path(phone, model, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(UserError, match=r"^`adb` not found on PATH: install Android platform-tools"):
        run_adb(SERIAL, model)


@pytest.mark.parametrize("state", ["error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set",
                                   f"error: device '{SERIAL}' not found"])
def test_device_unauthorized_or_absent(phone, model, state):
    configure, calls = phone
    configure(state=state)
    with pytest.raises(UserError, match=rf"^device {SERIAL} not found or unauthorized \(adb: "
                                        rf"{state.splitlines()[0]}\); `adb devices` lists"):
        run_adb(SERIAL, model)
    assert calls() == [["-s", SERIAL, "get-state"]]  # nothing pushed


def test_hanging_adb_times_out_quickly(phone, model):
    configure, _ = phone
    configure(hang=True)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"^adb get-state timed out after 1s \(device busy or disconnected\?\)$"):
        run_adb(SERIAL, model, timeout=1)
    assert time.monotonic() - started < 5


def test_benchmark_failure_is_a_tool_output_error_and_the_model_is_removed(phone, model):
    configure, calls = phone
    configure(output="benchmark_model_model_not_found.txt", rc=1)
    with pytest.raises(ToolOutputError, match=r"^benchmark_model failed: Could not open "
                                              r"'/data/local/tmp/crd-edge/student_int8\.tflite'\.$"):
        run_adb(SERIAL, model)
    assert calls()[-1][2:] == ["shell", "rm -f '/data/local/tmp/crd-edge/my student.tflite'"]


def test_no_benchmark_model_on_the_phone(phone, model):
    configure, calls = phone
    configure(default_binary=False)
    with pytest.raises(UserError, match=r"^no benchmark_model on R5CT1234ABC at /data/local/tmp/benchmark_model: "
                                        r"pass benchmark_binary="):
        run_adb(SERIAL, model)
    assert not any(c[2] == "push" for c in calls())


def test_push_failure_quotes_adb(phone, model):
    configure, _ = phone
    configure(push_error="adb: error: failed to copy 'my student.tflite' to '/data/local/tmp/crd-edge/my "
                         "student.tflite': remote couldn't create file: No space left on device")
    with pytest.raises(UserError, match=r"^adb push my student\.tflite failed: adb: error: failed to copy .*"
                                        r"No space left on device$"):
        run_adb(SERIAL, model)


@pytest.mark.parametrize("kwargs, message", [
    ({"delegate": "hexagon"}, r"unknown delegate 'hexagon': choose one of xnnpack, gpu, nnapi, cpu"),
    ({"threads": 0}, r"threads and runs must be >= 1"),
    ({"serial": ""}, r"adb:SERIAL needs a device serial"),
    ({"benchmark_binary": Path("/nonexistent/benchmark_model")}, r"no such benchmark_model binary"),
])
def test_bad_arguments_fail_before_any_adb_call(phone, model, kwargs, message):
    _, calls = phone
    args = {"serial": SERIAL, "model": model, **kwargs}
    with pytest.raises(UserError, match=message):
        run_adb(**args)
    assert calls() == []


def test_model_must_be_an_existing_tflite(phone, tmp_path):
    with pytest.raises(UserError, match=r"no such model file"):
        run_adb(SERIAL, tmp_path / "missing.tflite")
    onnx = tmp_path / "student.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(UserError, match=r"benchmarks \.tflite files"):
        run_adb(SERIAL, onnx)


def test_crd_edge_bench_on_a_phone_through_the_cli(phone, model, run_cli, tmp_path):
    """`crd-edge bench EXPORTS --on adb:SERIAL`: the .tflite runs on the phone, the rest is
    listed as not measured, and the report names the phone and marks the mean latency."""
    folder = model.parent
    (folder / "student_fp32.onnx").write_bytes(b"onnx stand-in")
    records = [{"path": model.name, "target": "tflite", "precision": "fp32", "layout": "NHWC",
                "input": {"name": "x", "shape": [1, 256, 256, 3]}, "verification": {"psnr_db_min": 144.7, "status": "passed"}},
               {"path": "student_fp32.onnx", "target": "onnx", "precision": "fp32", "layout": "NCHW",
                "input": {"name": "image", "shape": [1, 3, 256, 256]}}]
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "artifacts": records}))
    code, out, err = run_cli("bench", folder, "--on", f"adb:{SERIAL}", "--out", tmp_path / "report")
    assert code == 0, err
    assert f"## {PROPS['ro.product.model']} (adb)" in out
    assert "| my student.tflite | litert benchmark_model (xnnpack) | fp32 | 256x256 |" in out and "(mean)" in out
    assert "student_fp32.onnx on adb:" in out and "benchmarks .tflite files" in out


def test_a_device_that_can_run_none_of_the_artifacts_is_an_error_before_any_work(phone, model, run_cli, tmp_path):
    onnx = tmp_path / "only" / "student_fp32.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"onnx stand-in")
    code, out, err = run_cli("bench", onnx, "--on", f"adb:{SERIAL}", "--out", tmp_path / "report")
    assert code == 2 and err.startswith(f"error: --on adb:{SERIAL}: none of the 1 artifacts can run there")
    assert not (tmp_path / "report").exists()


def test_the_bench_command_passes_the_delegate_to_the_phone(phone, model, run_cli, tmp_path):
    _, calls = phone
    code, _, err = run_cli("bench", model, "--on", f"adb:{SERIAL}", "--delegate", "gpu", "--out", tmp_path / "r")
    assert code == 0, err
    assert any("--use_gpu=true" in " ".join(call) for call in calls())
