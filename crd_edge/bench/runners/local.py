"""The local runner: the harness in a fresh child process per artifact (clean peak RSS, load
time and thread settings for each model), on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from crd_edge.errors import UserError


def harness_command(python: str, artifact: str, threads: int, warmup: int, runs: int, max_seconds: float,
                    roofline: bool, ov_device: str | None = None, ort_providers: list[str] = (),
                    op_profile: bool = True, size: tuple[int, int] | None = None) -> list[str]:
    cmd = [python, "-m", "crd_edge.bench.harness", artifact, "--threads", str(threads), "--warmup", str(warmup),
           "--runs", str(runs), "--max-seconds", str(max_seconds)]
    if size:
        cmd += ["--size", f"{size[0]}x{size[1]}"]
    if ov_device:
        cmd += ["--ov-device", ov_device]
    for provider in ort_providers:
        cmd += ["--ort-provider", provider]
    if not op_profile:
        cmd.append("--no-op-profile")
    return cmd if roofline else [*cmd, "--no-roofline"]


def parse_harness_output(stdout: str, where: str) -> dict:
    """The harness prints one JSON object on its last line (an ``error`` key for user errors)."""
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise UserError(f"{where}: the harness printed no result ({stdout.strip()[-200:] or 'no output'})")
    result = json.loads(lines[-1])
    if "error" in result:
        raise UserError(result["error"])
    return result


def run_local(artifact: Path, threads: int = 2, warmup: int = 5, runs: int = 50, max_seconds: float = 10.0,
              roofline: bool = True, timeout: float = 900, ov_device: str | None = None,
              ort_providers: list[str] = (), op_profile: bool = True, size: tuple[int, int] | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # before the runtimes start their pools
    cmd = harness_command(sys.executable, str(artifact), threads, warmup, runs, max_seconds, roofline,
                          ov_device, ort_providers, op_profile, size)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"{artifact}: benchmark timed out after {timeout:.0f} s") from None
    if proc.returncode not in (0, 2):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise UserError(f"{artifact}: the benchmark process failed (exit {proc.returncode}): {tail}")
    result = parse_harness_output(proc.stdout, str(artifact))
    return {**result, "device": {"kind": "local", "name": "local", **result.pop("machine", {})}}
