"""The ssh runner end to end, against a real OpenSSH server on 127.0.0.1 (an unprivileged-port
sshd with throw-away keys): the harness branch (ONNX file, OpenVINO folder), the trtexec branch
(a stand-in trtexec on the remote PATH printing a recorded run), what neither finds, and the
connection errors (refused, black-holed, timed out, wrong key, no ssh client), target parsing.

Needs Debian's sshd: apt-get install -y openssh-server openssh-client
"""

import getpass
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crd_edge.bench.runners import ssh as ssh_runner
from crd_edge.bench.runners.ssh import SshTarget, parse_ssh_target, run_ssh
from crd_edge.errors import UserError

SSHD = "/usr/sbin/sshd"
CLIENT_OPTIONS = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR", "IdentitiesOnly=yes"]
# A trtexec run (TensorRT 8.5 on a Jetson Orin Nano), abridged, as trtexec prints it.
TRTEXEC_OUTPUT = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # /usr/src/tensorrt/bin/trtexec --onnx=student_256_fp32.onnx --fp16
[03/12/2024-10:15:02] [I] === Model Options ===
[03/12/2024-10:15:02] [I] Format: ONNX
[03/12/2024-10:15:02] [I] Model: student_256_fp32.onnx
[03/12/2024-10:15:02] [I] Precision: FP32+FP16
[03/12/2024-10:15:38] [I] Engine built in 35.9012 sec.
[03/12/2024-10:15:38] [I] Starting inference
[03/12/2024-10:15:41] [I] Warmup completed 84 queries over 200 ms
[03/12/2024-10:15:41] [I] Timing trace has 1238 queries over 3.00337 s
[03/12/2024-10:15:41] [I]
[03/12/2024-10:15:41] [I] === Trace details ===
[03/12/2024-10:15:41] [I] Trace averages of 5 runs:
[03/12/2024-10:15:41] [I] Average on 5 runs - GPU latency: 2.3372 ms - Host latency: 2.4601 ms (enqueue 0.6512 ms)
[03/12/2024-10:15:41] [I]
[03/12/2024-10:15:41] [I] === Performance summary ===
[03/12/2024-10:15:41] [I] Throughput: 412.53 qps
[03/12/2024-10:15:41] [I] Latency: min = 2.3862 ms, max = 3.1209 ms, mean = 2.4588 ms, median = 2.4410 ms, percentile(90%) = 2.5071 ms, percentile(95%) = 2.5533 ms, percentile(99%) = 2.9035 ms
[03/12/2024-10:15:41] [I] Enqueue Time: min = 0.6251 ms, max = 0.9874 ms, mean = 0.6502 ms, median = 0.6443 ms, percentile(90%) = 0.6712 ms, percentile(95%) = 0.6874 ms, percentile(99%) = 0.8120 ms
[03/12/2024-10:15:41] [I] H2D Latency: min = 0.0781 ms, max = 0.1143 ms, mean = 0.0825 ms, median = 0.0817 ms, percentile(90%) = 0.0862 ms, percentile(95%) = 0.0881 ms, percentile(99%) = 0.0975 ms
[03/12/2024-10:15:41] [I] GPU Compute Time: min = 2.2617 ms, max = 2.9904 ms, mean = 2.3349 ms, median = 2.3184 ms, percentile(90%) = 2.3818 ms, percentile(95%) = 2.4255 ms, percentile(99%) = 2.7817 ms
[03/12/2024-10:15:41] [I] D2H Latency: min = 0.0392 ms, max = 0.0567 ms, mean = 0.0414 ms, median = 0.0409 ms, percentile(90%) = 0.0431 ms, percentile(95%) = 0.0445 ms, percentile(99%) = 0.0498 ms
[03/12/2024-10:15:41] [I] Total Host Walltime: 3.00337 s
[03/12/2024-10:15:41] [I] Total GPU Compute Time: 2.89059 s
[03/12/2024-10:15:41] [I] Explanations of the performance metrics are printed in the verbose logs.
[03/12/2024-10:15:41] [I]
&&&& PASSED TensorRT.trtexec [TensorRT v8502] # /usr/src/tensorrt/bin/trtexec --onnx=student_256_fp32.onnx --fp16
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crd-edge-test", "-f", str(path)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An OpenSSH server on 127.0.0.1:PORT logging in the current user with a throw-away key.
    Its sessions get PATH=BIN:... (for a stand-in trtexec) and TMPDIR=RTMP (to see leftovers)."""
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} not found: apt-get install -y openssh-server openssh-client")
    if shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("ssh/scp not found: apt-get install -y openssh-client")
    root = tmp_path_factory.mktemp("sshd")
    server, client = root / "server", root / "client"
    bin_dir, remote_tmp = root / "bin", root / "rtmp"
    for d in (server, client, bin_dir, remote_tmp):
        d.mkdir()
    _keygen(server / "host_key")
    _keygen(client / "id")
    authorized = server / "authorized_keys"
    authorized.write_text((client / "id.pub").read_text())
    is_root = os.geteuid() == 0
    if is_root:  # sshd started as root insists on its privilege-separation folder
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    port = _free_port()
    config = server / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"HostKey {server / 'host_key'}", f"PidFile {server / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "StrictModes no", "UsePAM no",
        f"PermitRootLogin {'yes' if is_root else 'no'}", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UseDNS no", "PrintMotd no",
        "Subsystem sftp internal-sftp",
        f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin TMPDIR={remote_tmp}", ""]))
    log = open(server / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited ({proc.returncode}): {(server / 'sshd.log').read_text()[-1000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 10 s")
                time.sleep(0.05)
        yield {"port": port, "target": SshTarget("127.0.0.1", port, getpass.getuser()), "identity": client / "id",
               "options": CLIENT_OPTIONS, "bin": bin_dir, "remote_tmp": remote_tmp, "log": server / "sshd.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from crd_edge.models import create_model
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8, n_blocks=2).eval()
    path = tmp_path_factory.mktemp("onnx") / "student 64.onnx"  # a space: names are made safe remotely
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, input_names=["image"],
                      output_names=["output"], opset_version=17)
    return path


@pytest.fixture
def calls(monkeypatch):
    """Records every subprocess.run argv the runner makes (and still runs it)."""
    seen, real = [], subprocess.run

    def spy(argv, *args, **kwargs):
        seen.append(list(argv))
        return real(argv, *args, **kwargs)
    monkeypatch.setattr(ssh_runner.subprocess, "run", spy)
    return seen


def _run(sshd, artifact, **kw):
    kw = {"threads": 1, "warmup": 1, "runs": 5, "max_seconds": 1.0, "roofline": False,
          "remote_python": sys.executable, "identity": sshd["identity"], "ssh_options": sshd["options"],
          "connect_timeout": 5, "timeout": 120, **kw}
    return run_ssh(sshd["target"], artifact, **kw)


def _assert_clean(sshd):
    # (only our folders: onnxruntime itself drops a .ses file into $TMPDIR)
    assert list(sshd["remote_tmp"].glob("crd-edge.*")) == [], "the remote temp folder was left behind"


def test_onnx_measured_through_ssh_end_to_end(sshd, onnx_model, calls):
    result = _run(sshd, onnx_model)
    lat = result["latency_ms"]
    assert result["runtime"] == "onnxruntime" and result["input_size"] == [64, 64]
    assert lat["n"] >= 5 and 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert result["throughput_fps"] > 0 and result["threads"] == 1 and "matmul" not in result
    device = result["device"]
    assert device["kind"] == "ssh" and device["host"] == "127.0.0.1" and device["port"] == sshd["port"]
    assert device["user"] == getpass.getuser() and device["name"] == f"ssh:{getpass.getuser()}@127.0.0.1:{sshd['port']}"
    assert device["uname"].split()[0] == platform.system() and device["uname"].split()[-1] == platform.machine()
    assert device["jetson"] == (Path("/etc/nv_tegra_release").read_text().splitlines()[0]
                                if Path("/etc/nv_tegra_release").exists() else None)
    assert result["path"] == str(onnx_model)
    remote = Path(result["remote_path"])
    assert remote.name == "student_64.onnx" and remote.parent.parent == sshd["remote_tmp"]
    assert not remote.parent.exists()
    _assert_clean(sshd)
    # Argument lists only: ssh with BatchMode, the port, the key; scp -P, no -r for a file.
    assert [c[0] for c in calls] == ["ssh", "scp", "ssh", "ssh"]
    ssh_argv, scp_argv = calls[0], calls[1]
    assert ssh_argv[:3] == ["ssh", "-p", str(sshd["port"])] and "BatchMode=yes" in ssh_argv
    assert ssh_argv[ssh_argv.index("-i") + 1] == str(sshd["identity"])
    assert scp_argv[:3] == ["scp", "-P", str(sshd["port"])] and "-r" not in scp_argv
    assert calls[-1][-1] == f"rm -rf -- {remote.parent}"


def test_folder_artifact_is_copied_with_scp_r(sshd, onnx_model, tmp_path, calls):
    folder = tmp_path / "student.openvino"
    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov
        folder.mkdir()
        ov.save_model(ov.convert_model(str(onnx_model)), str(folder / "model.xml"))
        result = _run(sshd, folder)
        assert result["runtime"] == "openvino" and result["latency_ms"]["n"] >= 5
        assert Path(result["remote_path"]).name == "student.openvino"
    else:  # a folder that is no model: copied all the same, then the remote harness says why it fails
        folder.mkdir()
        (folder / "model.xml").write_text("not a model")
        with pytest.raises(UserError, match=r"^127\.0\.0\.1: .*OpenVINO"):
            _run(sshd, folder)
    (scp_argv,) = [c for c in calls if c[0] == "scp"]
    assert "-r" in scp_argv and scp_argv[-2] == str(folder.resolve())
    _assert_clean(sshd)


def test_trtexec_branch_without_crd_edge_remotely(sshd, onnx_model, tmp_path, calls):
    pytest.importorskip("crd_edge.bench.parsers")
    recorded, args_log = tmp_path / "trtexec.txt", tmp_path / "trtexec.args"
    recorded.write_text(TRTEXEC_OUTPUT)
    stand_in = sshd["bin"] / "trtexec"
    stand_in.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {args_log}\ncat {recorded}\n')
    stand_in.chmod(0o755)
    try:  # a python without crd-edge remotely: the harness branch is skipped
        result = _run(sshd, onnx_model, remote_python="/nonexistent/python3", precision="fp16", runs=5,
                      max_seconds=1.0)
    finally:
        stand_in.unlink()
    args = args_log.read_text().splitlines()
    assert args[0].startswith(f"--onnx={sshd['remote_tmp']}/crd-edge.") and args[0].endswith("/student_64.onnx")
    assert args[1:] == ["--fp16", "--iterations=5", "--avgRuns=5", "--duration=1"]
    assert result["runtime"] == "tensorrt (trtexec)" and result["precision"] == "fp16"
    assert result["throughput_fps"] == pytest.approx(412.53)
    lat = result["latency_ms"]
    assert lat["p50"] == pytest.approx(2.4410) and lat["p99"] == pytest.approx(2.9035)
    assert lat["min"] == pytest.approx(2.3862) and lat["max"] == pytest.approx(3.1209)
    assert result["gpu_compute_ms"]["p50"] == pytest.approx(2.3184)
    assert result["device"]["kind"] == "ssh" and result["device"]["port"] == sshd["port"]
    assert result["command"].startswith(f"{stand_in} --onnx=")
    _assert_clean(sshd)


def test_neither_crd_edge_nor_trtexec_remotely(sshd, onnx_model):
    expected = r"^127\.0\.0\.1 has neither crd-edge \(pip install crd-edge on it.*nor trtexec$"
    with pytest.raises(UserError, match=expected):
        _run(sshd, onnx_model, remote_python="/nonexistent/python3")
    _assert_clean(sshd)


def test_wrong_key_is_an_auth_error(sshd, onnx_model, tmp_path):
    _keygen(tmp_path / "other")
    with pytest.raises(UserError, match=rf"^ssh {re.escape(getpass.getuser())}@127\.0\.0\.1: .*Permission denied.*BatchMode"):
        _run(sshd, onnx_model, identity=tmp_path / "other")


def test_connection_refused_is_quick_and_clear(onnx_model):
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    expected = rf"^ssh 127\.0\.0\.1: ssh: connect to host 127\.0\.0\.1 port {port}: Connection refused$"
    with pytest.raises(UserError, match=expected):
        run_ssh(SshTarget("127.0.0.1", port), onnx_model, ssh_options=CLIENT_OPTIONS, connect_timeout=5)
    assert time.monotonic() - started < 3


def test_black_holed_host_times_out(onnx_model):
    with socket.socket() as silent:  # accepts TCP connections (kernel backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UserError, match=r"^ssh 127\.0\.0\.1 timed out after 2s"):
            run_ssh(SshTarget("127.0.0.1", port), onnx_model, ssh_options=CLIENT_OPTIONS, connect_timeout=2,
                    timeout=3)
        assert time.monotonic() - started < 4
        started = time.monotonic()  # the overall limit, when it is the shorter one
        with pytest.raises(UserError, match=r"^ssh 127\.0\.0\.1 timed out after 1s$"):
            run_ssh(SshTarget("127.0.0.1", port), onnx_model, ssh_options=CLIENT_OPTIONS, connect_timeout=10,
                    timeout=1)
        assert time.monotonic() - started < 3


def test_a_host_that_stalls_after_its_banner_costs_the_probe_limit_not_the_measurements(onnx_model, monkeypatch):
    """ssh's ConnectTimeout does not cover a key exchange that never finishes: the probe's own
    limit does (before, this waited for the measurement's timeout: 389 s in the fault probe)."""
    import threading
    monkeypatch.setattr(ssh_runner, "PROBE_SECONDS", 1)
    with socket.socket() as stalling:
        stalling.bind(("127.0.0.1", 0))
        stalling.listen(8)
        held = []

        def greet_then_stall():
            conn, _ = stalling.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            held.append(conn)
        threading.Thread(target=greet_then_stall, daemon=True).start()
        with pytest.raises(ssh_runner.DeviceUnreachable, match=r"^ssh 127\.0\.0\.1 timed out after 3s$"):
            run_ssh(SshTarget("127.0.0.1", stalling.getsockname()[1]), onnx_model, ssh_options=CLIENT_OPTIONS,
                    connect_timeout=2, timeout=600)
        for conn in held:
            conn.close()


def test_an_unreachable_device_fails_once_not_per_artifact(onnx_model, tmp_path):
    from crd_edge.bench.run import bench

    for name in ("b.onnx", "c.onnx"):
        shutil.copy(onnx_model, tmp_path / name)
    port = _free_port()  # nothing listens there
    results = list(bench([str(onnx_model), str(tmp_path / "b.onnx"), str(tmp_path / "c.onnx")],
                         devices=[f"ssh:127.0.0.1:{port}"], out_dir=tmp_path / "bench"))
    assert [r.status for r in results] == ["error"] * 3
    assert "Connection refused" in results[0].reason
    assert all(r.reason == f"not tried: {results[0].reason}" for r in results[1:])


def test_missing_ssh_client_names_the_package(monkeypatch, onnx_model):
    monkeypatch.setattr(ssh_runner.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="ssh not found.*apt-get install openssh-client"):
        run_ssh(SshTarget("127.0.0.1", 22), onnx_model)


@pytest.mark.parametrize("text, expected", [
    ("ssh:jetson", SshTarget("jetson")),
    ("ssh:pi@192.168.1.20", SshTarget("192.168.1.20", None, "pi")),
    ("ssh:pi@raspberrypi.local:2222", SshTarget("raspberrypi.local", 2222, "pi")),
    ("ssh://ubuntu@orin-nano:22", SshTarget("orin-nano", 22, "ubuntu")),
    ("ssh:user@[::1]:2222", SshTarget("::1", 2222, "user")),
    ("ssh:[fe80::1%eth0]", SshTarget("fe80::1%eth0")),
])
def test_parse_ssh_target(text, expected):
    target = parse_ssh_target(text)
    assert target == expected
    assert parse_ssh_target(str(target)) == target


def test_ssh_target_forms_for_ssh_and_scp():
    target = SshTarget("::1", 2222, "user")
    assert target.destination == "user@::1" and target.scp_path("/tmp/x") == "user@[::1]:/tmp/x"
    assert SshTarget("jetson").scp_path("/tmp/x") == "jetson:/tmp/x"


@pytest.mark.parametrize("text", ["jetson", "ssh:", "ssh:pi@", "ssh:host:port", "ssh:host:70000", "ssh:::1",
                                  "ssh:-oProxyCommand=touch /tmp/x", "ssh:a b", "ssh:user@host:22/path", "adb:123"])
def test_bad_ssh_target_shows_the_expected_form(text):
    with pytest.raises(UserError, match=r"expected ssh:\[USER@\]HOST\[:PORT\]"):
        parse_ssh_target(text)


def test_remote_harness_error_is_reported_and_cleaned_up(sshd, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(UserError, match=r"^127\.0\.0\.1: /.*/crd-edge\.\w+/bad\.onnx: not a loadable ONNX model, onnxruntime cannot load it"):
        _run(sshd, bad)
    _assert_clean(sshd)
