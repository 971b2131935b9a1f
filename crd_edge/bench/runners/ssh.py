"""The ssh runner: measure an artifact on another Linux machine (a Jetson, a Raspberry Pi, a
server) reached with the system's OpenSSH client.

One measurement is four ssh/scp calls, each an argument list (no local shell), each with a
timeout:

1. a probe (fixed ``sh`` script; user values travel as positional parameters): ``uname -srm``,
   the remote user, ``/etc/nv_tegra_release`` (a Jetson), whether ``REMOTE_PYTHON -c "import
   crd_edge.bench.harness"`` works, where ``trtexec`` is, and a fresh ``mktemp -d`` folder;
2. ``scp`` of the artifact into that folder (``-r`` for folder artifacts such as ``.openvino``);
3. the measurement: (a) the same harness as the local runner when crd-edge is installed
   remotely, else (b) TensorRT's ``trtexec`` for ``.onnx``/``.engine`` artifacts, its output
   parsed into the harness's shape; else a UserError saying what to install;
4. ``rm -rf`` of the remote folder, always (``finally``).

``BatchMode=yes`` is always set: a password or host-key prompt fails at once with ssh's own
message instead of hanging. ``ConnectTimeout`` bounds the connection and the handshake,
``ServerAliveInterval`` x ``ServerAliveCountMax`` a session whose host stops answering, and the
probe (step 1) has its own short timeout: a host that accepts the connection and then stalls
costs seconds, not the measurement's timeout. A host that cannot be reached raises
``DeviceUnreachable``, which the benchmark reports once for the device. Set keys and known hosts up beforehand (``ssh-copy-id``, one
interactive ``ssh`` to accept the host key), or pass ``ssh_options``.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from crd_edge.artifacts import FORMATS
from crd_edge.bench.runners.local import harness_command, parse_harness_output
from crd_edge.errors import DeviceUnreachable, UserError

TARGET_FORM = "ssh:[USER@]HOST[:PORT] (e.g. ssh:jetson, ssh:pi@192.168.1.20:2222, ssh:me@[fe80::1]:22)"
# What trtexec runs: the TensorRT target's graph (ONNX: .trt.onnx ends with .onnx) or an engine.
TRTEXEC_SUFFIXES = (*FORMATS[FORMATS["tensorrt"].file_format].suffixes, *FORMATS["tensorrt"].device_suffixes)
PRECISIONS = ("fp32", "fp16", "int8")
JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
ALIVE_INTERVAL, ALIVE_COUNT = 5, 3  # a session whose host stops answering ends after ~15 s
PROBE_SECONDS = 30  # the probe's limit beyond the connection's (it runs a few shell commands)

_USER = r"[A-Za-z0-9_.][A-Za-z0-9_.$-]*"
_HOSTNAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # never starts with '-' (an ssh option)
_IPV6 = r"\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]"
_TARGET_RE = re.compile(rf"(?:(?P<user>{_USER})@)?(?:{_IPV6}|(?P<host>{_HOSTNAME}))(?::(?P<port>[0-9]{{1,5}}))?")
_REMOTE_TMP_RE = re.compile(r"/[A-Za-z0-9_./+-]*crd-edge\.[A-Za-z0-9]+")


@dataclass(frozen=True)
class SshTarget:
    """A remote machine: ``port``/``user`` None leave them to ssh (``~/.ssh/config``, port 22,
    the local user name)."""
    host: str
    port: int | None = None
    user: str | None = None

    @property
    def destination(self) -> str:
        """``[user@]host`` for ssh (an IPv6 address without brackets)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def scp_path(self, remote_path: str) -> str:
        """``[user@]host:path`` for scp (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}:{remote_path}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh:{self.user + '@' if self.user else ''}{host}{'' if self.port is None else f':{self.port}'}"


def parse_ssh_target(text: str) -> SshTarget:
    """``ssh:[USER@]HOST[:PORT]`` (or ``ssh://...``; IPv6 hosts in brackets) -> SshTarget."""
    raw = text.strip()
    body = raw[len("ssh://"):] if raw.startswith("ssh://") else raw[len("ssh:"):] if raw.startswith("ssh:") else None
    match = _TARGET_RE.fullmatch(body) if body is not None else None
    if match is None:
        hint = " (put an IPv6 address in brackets)" if body and body.count(":") > 1 and "[" not in body else ""
        raise UserError(f"bad ssh target {text!r}{hint}: expected {TARGET_FORM}")
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise UserError(f"bad ssh target {text!r}: port {port} is not in 1-65535; expected {TARGET_FORM}")
    return SshTarget(host=match["ipv6"] or match["host"], port=None if port is None else int(port), user=match["user"])


# --- the remote scripts: fixed text, user values as "$1" "$2"... ---------------------------------

# "~/venv/bin/python" works as typed: the tilde is expanded on the remote side.
_PY = 'py=$1; case $py in "~/"*) py="$HOME/${py#"~/"}";; esac; '

_PROBE = _PY + r'''
echo "uname=$(uname -srm 2>/dev/null)"
echo "user=$(id -un 2>/dev/null || whoami 2>/dev/null)"
if [ -r /etc/nv_tegra_release ]; then echo "tegra=$(head -n 1 /etc/nv_tegra_release)"; fi
if "$py" -c "import crd_edge.bench.harness" >/dev/null 2>&1; then echo "crd_edge=1"; fi
if [ -x "$2" ]; then echo "trtexec=$2"; elif t=$(command -v trtexec 2>/dev/null); then echo "trtexec=$t"; fi
d=$(mktemp -d "${TMPDIR:-/tmp}/crd-edge.XXXXXX") && echo "tmp=$d"
'''

_HARNESS = _PY + 'shift; export OMP_NUM_THREADS="$1"; shift; exec "$py" "$@"'


def _sh(script: str, *args: str) -> str:
    """The remote command line: ``sh -c SCRIPT sh ARGS...``, quoted for the remote login shell."""
    return shlex.join(["sh", "-c", script, "sh", *args])


class _Ssh:
    """The ssh/scp command lines for one target, and their error handling."""

    def __init__(self, target: SshTarget, identity: Path | None, ssh_options, connect_timeout: float,
                 timeout: float) -> None:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise UserError(f"{tool} not found on this machine: install OpenSSH's client "
                                f"(Debian/Ubuntu: apt-get install openssh-client)")
        if identity is not None and not Path(identity).expanduser().is_file():
            raise UserError(f"{identity}: no such ssh identity (private key) file")
        self.target, self.timeout = target, timeout
        self.connect_timeout = max(1, math.ceil(connect_timeout))
        common = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                  "-o", f"ServerAliveInterval={ALIVE_INTERVAL}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}"]
        if identity is not None:
            common += ["-i", str(Path(identity).expanduser())]
        for option in ssh_options:
            common += ["-o", option]
        port = [] if target.port is None else [str(target.port)]  # else ssh's config or 22
        self.ssh_base = ["ssh", *(["-p"] + port if port else []), *common]
        self.scp_base = ["scp", *(["-P"] + port if port else []), *common]

    def _call(self, argv: list[str], timeout: float, first_contact: bool = False) -> subprocess.CompletedProcess:
        """Run one ssh/scp line. Failures that say the host cannot be reached (the first contact
        timing out; ssh's own connection, login and host-key errors) raise DeviceUnreachable;
        a slow copy or measurement is that artifact's UserError."""
        host = self.target.host
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            error = DeviceUnreachable if first_contact else UserError
            raise error(f"{argv[0]} {host} timed out after {timeout:g}s") from None
        except FileNotFoundError:
            raise UserError(f"{argv[0]} not found on this machine: install OpenSSH's client "
                            f"(Debian/Ubuntu: apt-get install openssh-client)") from None
        if proc.returncode == 255 or (argv[0] == "scp" and proc.returncode != 0):
            line = _first_message(proc.stderr) or f"exit {proc.returncode}, no message"
            if "timed out" in line.lower():
                raise DeviceUnreachable(f"{argv[0]} {host} timed out after {self.connect_timeout}s ({line})")
            hint = ""
            if "permission denied" in line.lower():
                hint = f" (BatchMode is on: `ssh {self._manual()}` must log in with a key, without a prompt)"
            elif "host key verification failed" in line.lower():
                hint = f" (connect once with `ssh {self._manual()}` to accept its host key)"
            # 255 is ssh's own failure (connection, login, host key) unless the remote command
            # itself exited 255, which the harness and trtexec do not: the words decide.
            reached = not any(w in line.lower() for w in ("connect", "permission denied", "host key", "resolve"))
            error = UserError if reached and not first_contact else DeviceUnreachable
            raise error(f"{argv[0]} {self.target.destination}: {line}{hint}")
        return proc

    def _manual(self) -> str:
        return shlex.join([*(["-p", str(self.target.port)] if self.target.port is not None else []),
                           self.target.destination])

    def ssh(self, remote_command: str, timeout: float | None = None,
            first_contact: bool = False) -> subprocess.CompletedProcess:
        return self._call([*self.ssh_base, self.target.destination, "--", remote_command],
                          self.timeout if timeout is None else timeout, first_contact)

    def scp_to(self, local: Path, remote_path: str) -> subprocess.CompletedProcess:
        recursive = ["-r"] if local.is_dir() else []
        # Absolute local path: a relative one with a ':' in it would be read as HOST:PATH.
        return self._call([*self.scp_base, *recursive, "--", str(local.resolve()), self.target.scp_path(remote_path)],
                          self.timeout)


def _first_message(stderr: str) -> str:
    """ssh's first meaningful stderr line (not its host-key and post-quantum notices)."""
    for line in stderr.splitlines():
        line = line.strip()
        if line and not line.startswith(("Warning: Permanently added", "**")):
            return line[:300]
    return ""


def _remote_name(artifact: Path) -> str:
    """The artifact's file name, safe as a remote path component (suffixes kept: they pick the runtime)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", artifact.name)
    return name if name[:1].isalnum() else f"m{name}"


def _parse_probe(stdout: str) -> dict:
    info = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("uname", "user", "tegra", "crd_edge", "trtexec", "tmp") and key not in info:
            info[key] = value.strip()
    return info


def run_ssh(target: SshTarget, artifact: Path, *, threads: int = 2, warmup: int = 5, runs: int = 50,
            max_seconds: float = 10.0, precision: str = "fp32", remote_python: str = "python3",
            identity: Path | None = None, ssh_options: list[str] = (), connect_timeout: float = 10,
            timeout: float = 600, roofline: bool = True, ov_device: str | None = None,
            ort_providers: list[str] = (), op_profile: bool = True, size: tuple[int, int] | None = None) -> dict:
    """Measure ``artifact`` on ``target`` (see the module docstring); returns the harness's
    result dict with ``device`` = {kind: ssh, host, port, user, uname, jetson, ...}.

    ``precision`` only matters to trtexec builds from ONNX (``--fp16``/``--int8``); the
    harness measures an artifact in the precision it was exported in. ``timeout`` bounds each
    ssh/scp call (the measurement included); ``connect_timeout`` the connection set-up.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise UserError(f"{artifact}: no such model file or folder")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if isinstance(target, str):
        target = parse_ssh_target(target)
    host = target.host
    conn = _Ssh(target, identity, list(ssh_options), connect_timeout, timeout)

    probe = conn.ssh(_sh(_PROBE, remote_python, JETSON_TRTEXEC), timeout=min(timeout, connect_timeout + PROBE_SECONDS),
                     first_contact=True)
    info = _parse_probe(probe.stdout)
    tmp = info.get("tmp", "")
    if not _REMOTE_TMP_RE.fullmatch(tmp) or ".." in tmp:
        detail = _first_message(probe.stderr) or f"probe said {probe.stdout.strip()[-200:]!r}"
        raise UserError(f"{host}: cannot create a temporary folder with mktemp -d ({detail})")
    remote_path = f"{tmp}/{_remote_name(artifact)}"
    trt_capable = artifact.name.lower().endswith(TRTEXEC_SUFFIXES)
    try:
        if info.get("crd_edge"):
            conn.scp_to(artifact, remote_path)
            result = _run_harness(conn, remote_python, remote_path, threads, warmup, runs, max_seconds, roofline,
                                  ov_device, list(ort_providers), op_profile, size)
        elif trt_capable and info.get("trtexec"):
            conn.scp_to(artifact, remote_path)
            result = _run_trtexec(conn, info["trtexec"], remote_path, precision, runs, max_seconds)
        elif info.get("trtexec"):
            raise UserError(f"{host} has no crd-edge for {remote_python} (pip install crd-edge on it), and its "
                            f"trtexec only runs {'/'.join(TRTEXEC_SUFFIXES)} files, not {artifact.name}")
        else:
            raise UserError(f"{host} has neither crd-edge (pip install crd-edge on it, or pass the remote python "
                            f"that has it; tried {remote_python}) nor trtexec")
    finally:
        try:
            conn.ssh(shlex.join(["rm", "-rf", "--", tmp]), timeout=min(timeout, connect_timeout + 30))
        except UserError:
            pass  # the measurement's own error (if any) is the one to report
    uname = info.get("uname", "")
    parts = uname.split()
    machine = result.pop("machine", None) or {"system": parts[0] if parts else "",
                                               "machine": parts[-1] if len(parts) > 1 else ""}
    result["path"], result["remote_path"] = str(artifact), remote_path
    result["device"] = {"kind": "ssh", "name": str(target), "host": host,
                        "port": 22 if target.port is None else target.port,
                        "user": info.get("user") or target.user, **machine,
                        "uname": uname, "jetson": info.get("tegra") or None}
    return result


def _run_harness(conn: _Ssh, remote_python: str, remote_path: str, threads: int, warmup: int, runs: int,
                 max_seconds: float, roofline: bool, ov_device: str | None, ort_providers: list[str],
                 op_profile: bool, size: tuple[int, int] | None = None) -> dict:
    argv = harness_command("python", remote_path, threads, warmup, runs, max_seconds, roofline, ov_device,
                           ort_providers, op_profile, size)[1:]
    proc = conn.ssh(_sh(_HARNESS, remote_python, str(threads), *argv))
    host = conn.target.host
    if proc.returncode not in (0, 2):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise UserError(f"{host}: the remote benchmark failed (exit {proc.returncode}): {tail}")
    try:
        return parse_harness_output(proc.stdout, host)
    except json.JSONDecodeError:
        raise UserError(f"{host}: the remote harness printed no JSON ({proc.stdout.strip()[-200:]!r})") from None
    except UserError as exc:
        message = str(exc)
        raise UserError(message if message.startswith(host) else f"{host}: {message}") from None


def _run_trtexec(conn: _Ssh, trtexec: str, remote_path: str, precision: str, runs: int, max_seconds: float) -> dict:
    from crd_edge.bench.parsers import parse_trtexec  # lazily: only this branch needs it

    model = (f"--loadEngine={remote_path}" if remote_path.lower().endswith(FORMATS["tensorrt"].device_suffixes)
             else f"--onnx={remote_path}")
    argv = [trtexec, model, *({"fp16": ["--fp16"], "int8": ["--int8"]}.get(precision, [])),
            f"--iterations={runs}", f"--avgRuns={runs}", f"--duration={max(1, math.ceil(max_seconds))}"]
    proc = conn.ssh(shlex.join(argv))
    host = conn.target.host
    if proc.returncode != 0:
        lines = (proc.stdout + "\n" + proc.stderr).splitlines()
        errors = [line.strip() for line in lines if "[E]" in line or "error" in line.lower()]
        tail = (errors or [line.strip() for line in lines if line.strip()] or ["no output"])[0][:200]
        raise UserError(f"{host}: trtexec failed (exit {proc.returncode}): {tail}")
    parsed = parse_trtexec(proc.stdout)
    latency = dict(parsed["latency_ms"])
    qps = parsed.get("throughput_qps")
    return {"runtime": "tensorrt (trtexec)", "precision": precision, "latency_ms": latency,
            "throughput_fps": qps if qps else 1e3 / latency["p50"],
            "gpu_compute_ms": parsed.get("gpu_compute_ms"), "trtexec": parsed,
            "command": shlex.join(argv), "settings": {"runs": runs, "max_seconds": max_seconds}}


__all__ = ["SshTarget", "parse_ssh_target", "run_ssh"]
