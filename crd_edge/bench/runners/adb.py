"""The adb runner: benchmark a ``.tflite`` on an Android phone with LiteRT's ``benchmark_model``.

One measurement is a handful of adb calls, each an argument list (no local shell) with a timeout:

1. ``adb -s SERIAL get-state`` must answer ``device`` (not absent, ``unauthorized``, ``offline``);
2. ``getprop`` for the phone's model, SoC and Android version;
3. the ``benchmark_model`` binary: pushed to ``/data/local/tmp/crd-edge/`` when given, else the
   one at ``/data/local/tmp/benchmark_model`` (checked with ``ls``), then ``chmod +x``;
4. the model pushed next to it, ``benchmark_model --graph=...`` run, its output parsed by
   ``parse_benchmark_model``, and the pushed model removed again.

``adb shell`` joins its arguments with spaces into one command line for the phone's ``sh``, so
every remote command is built with ``shlex.quote`` around each part: a model named
``my student.tflite`` stays one argument, and no file name can inject a command.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from crd_edge.bench.parsers import parse_benchmark_model
from crd_edge.artifacts import target_of
from crd_edge.errors import DeviceUnreachable, UserError

REMOTE_DIR = "/data/local/tmp/crd-edge"
DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
# "cpu" means TFLite's own kernels: without --use_xnnpack=false the runtime applies XNNPACK anyway.
DELEGATE_FLAGS = {"xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"],
                  "cpu": ["--use_xnnpack=false"]}
QUICK_TIMEOUT = 30.0  # get-state, getprop, ls, chmod: seconds, unless the caller's timeout is shorter
INSTALL_ADB = ("install Android platform-tools (https://developer.android.com/tools/releases/platform-tools; "
               "Debian/Ubuntu: apt-get install adb, macOS: brew install android-platform-tools) "
               "or pass the adb executable's path")
GET_BINARY = ("pass benchmark_binary= (LiteRT's prebuilt android_aarch64_benchmark_model, from the "
              "LiteRT benchmark tools page) to push one")


def _first_line(*texts: str) -> str:
    """adb's most useful line: the first that mentions an error, else the first non-empty one."""
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else "no output")[:300]


def _call(argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run one adb command line; a hang or a missing executable becomes a one-line UserError."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        # Only the first contact says the device is gone; a slow push or benchmark is this artifact's.
        error = DeviceUnreachable if what == "get-state" else UserError
        raise error(f"adb {what} timed out after {timeout:g}s (device busy or disconnected?)") from None
    except FileNotFoundError:
        raise UserError(f"{argv[0]} not found: {INSTALL_ADB}") from None


def _checked(argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    proc = _call(argv, timeout, what)
    if proc.returncode != 0:
        raise UserError(f"adb {what} failed: {_first_line(proc.stderr, proc.stdout)}")
    return proc


def benchmark_command(binary: str, remote_model: str, threads: int, delegate: str, warmup: int,
                      runs: int) -> list[str]:
    """The ``benchmark_model`` argument list that runs on the phone (quote it with shlex.join).

    benchmark_model also keeps going for ``--warmup_min_secs`` (0.5 s) and ``--min_secs`` (1 s)
    by default, so it may run more than ``warmup``/``runs`` times: ``latency_ms["n"]`` is what ran.
    """
    return [binary, f"--graph={remote_model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
            f"--num_runs={runs}", "--report_peak_memory_footprint=true", *DELEGATE_FLAGS[delegate]]


class _Adb:
    """adb command lines for one device serial."""

    def __init__(self, adb: str, serial: str, timeout: float) -> None:
        self.adb, self.serial, self.timeout = adb, serial, timeout
        self.quick = min(timeout, QUICK_TIMEOUT)

    def argv(self, *args: str) -> list[str]:
        return [self.adb, "-s", self.serial, *args]

    def shell_argv(self, words: list[str], suffix: str = "") -> list[str]:
        """``adb shell`` with one pre-quoted command (adb would join separate args unquoted)."""
        return self.argv("shell", shlex.join(words) + suffix)

    def state(self) -> None:
        proc = _call(self.argv("get-state"), self.quick, "get-state")
        if proc.returncode == 0 and proc.stdout.strip() == "device":
            return
        said = proc.stdout.strip() if proc.returncode == 0 else _first_line(proc.stderr, proc.stdout)
        raise DeviceUnreachable(f"device {self.serial} not found or unauthorized (adb: {said}); `adb devices` lists the "
                        "attached devices: connect the phone, enable USB debugging and accept its "
                        "'Allow USB debugging?' prompt")

    def getprop(self, name: str) -> str | None:
        proc = _call(self.shell_argv(["getprop", name]), self.quick, f"shell getprop {name}")
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    def shell(self, words: list[str], what: str) -> subprocess.CompletedProcess:
        return _checked(self.shell_argv(words), self.quick, what)

    def push(self, local: Path, remote: str) -> None:
        # push takes the remote path as a plain argument (adb's sync protocol, no remote shell)
        _checked(self.argv("push", str(local), remote), self.timeout, f"push {local.name}")


def _device_info(conn: _Adb) -> dict:
    """The phone's model, SoC (``ro.soc.model`` from Android 12, else the board platform) and
    Android version; None where the property is empty."""
    model = conn.getprop("ro.product.model")
    soc = conn.getprop("ro.soc.model") or conn.getprop("ro.board.platform")
    return {"kind": "adb", "serial": conn.serial, "model": model, "soc": soc,
            "android": conn.getprop("ro.build.version.release")}


def _check_inputs(serial: str, model: Path, benchmark_binary: Path | None, threads: int, delegate: str,
                  warmup: int, runs: int) -> None:
    if not serial:
        raise UserError("adb:SERIAL needs a device serial: `adb devices` lists them")
    if not model.is_file():
        raise UserError(f"{model}: no such model file")
    if target_of(model) != "tflite":
        raise UserError(f"{model}: the adb runner benchmarks .tflite files with LiteRT's benchmark_model")
    if benchmark_binary is not None and not benchmark_binary.is_file():
        raise UserError(f"{benchmark_binary}: no such benchmark_model binary")
    if delegate not in DELEGATE_FLAGS:
        raise UserError(f"unknown delegate {delegate!r}: choose one of {', '.join(DELEGATE_FLAGS)}")
    if threads < 1 or runs < 1 or warmup < 0:
        raise UserError(f"threads and runs must be >= 1 and warmup >= 0 (got threads={threads}, runs={runs}, "
                        f"warmup={warmup})")


def run_adb(serial: str, model: Path, benchmark_binary: Path | None = None, threads: int = 4,
            delegate: Literal["xnnpack", "gpu", "nnapi", "cpu"] = "xnnpack", warmup: int = 5, runs: int = 50,
            timeout: float = 300, adb: str = "adb") -> dict:
    """Benchmark ``model`` on the phone ``serial`` (see the module docstring).

    Returns the harness's measurement shape from ``parse_benchmark_model`` (p50/p90/p99 are None:
    benchmark_model prints mean/std/min/max only; ``peak_rss_mb`` is its periodically sampled
    peak memory footprint) plus ``runtime`` "litert benchmark_model (<delegate>)", ``device``
    {kind: adb, serial, model, soc, android}, ``command`` (the remote command line) and
    ``raw_tail`` (the last 20 lines of the tool's output). ``timeout`` bounds each push and the
    run; a failed run raises ``ToolOutputError`` quoting the tool's first error line.
    """
    model = Path(model)
    benchmark_binary = Path(benchmark_binary) if benchmark_binary is not None else None
    _check_inputs(serial, model, benchmark_binary, threads, delegate, warmup, runs)
    adb_path = shutil.which(adb)
    if adb_path is None:
        raise UserError(f"`{adb}` not found on PATH: {INSTALL_ADB}")
    conn = _Adb(adb_path, serial, timeout)

    conn.state()
    device = _device_info(conn)
    conn.shell(["mkdir", "-p", REMOTE_DIR], "shell mkdir")
    if benchmark_binary is not None:
        binary = f"{REMOTE_DIR}/benchmark_model"
        conn.push(benchmark_binary, binary)
    else:
        binary = DEFAULT_BINARY
        proc = _call(conn.shell_argv(["ls", binary]), conn.quick, "shell ls")
        if proc.returncode != 0 or "No such file" in proc.stdout + proc.stderr:
            raise UserError(f"no benchmark_model on {serial} at {binary}: {GET_BINARY}")
    conn.shell(["chmod", "+x", binary], "shell chmod")

    remote_model = f"{REMOTE_DIR}/{model.name}"
    words = benchmark_command(binary, remote_model, threads, delegate, warmup, runs)
    try:
        conn.push(model, remote_model)
        # 2>&1 on the phone: the tool logs to stderr, and one stream keeps its lines in order.
        proc = _call(conn.shell_argv(words, " 2>&1"), timeout, "shell benchmark_model")
    finally:
        try:
            _call(conn.shell_argv(["rm", "-f", remote_model]), min(conn.quick, 10.0), "shell rm")
        except UserError:
            pass  # the measurement's own error, if any, is the one to report
    text = proc.stdout + (f"\n{proc.stderr}" if proc.stderr.strip() else "")
    result = parse_benchmark_model(text)  # raises ToolOutputError with the tool's first error line
    if proc.returncode != 0:  # e.g. a crash while tearing the GPU delegate down, after the summary
        result["warnings"].append(f"benchmark_model exited with status {proc.returncode} after its summary")
    return {"path": str(model), "runtime": f"litert benchmark_model ({delegate})", "threads": threads,
            "input_size": None, **result, "peak_rss_mb": result["peak_memory_mb"],
            "settings": {"warmup": warmup, "runs": runs, "delegate": delegate, "binary": binary},
            "command": shlex.join(words), "device": device,
            "raw_tail": "\n".join(text.strip().splitlines()[-20:])}


__all__ = ["benchmark_command", "run_adb"]
