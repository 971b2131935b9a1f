"""DDP correctness under torchrun: 2 CPU processes (gloo) with batch 1 each train the same
student as one process with batch 2 (same items per step, gradients averaged)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from crd_edge.checkpoint import load_student

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(runs, name, teacher, batch):
    return ["distill", "--teacher", str(teacher), "--student", "mobile_resnet_9blocks", "--steps", "4",
            "--size", "64", "--batch-size", str(batch), "--runs-dir", str(runs), "--name", name, "--quiet",
            "--set", "student.kwargs.ngf=8", "--set", "data.load_size=72", "--set", "data.test_size=64",
            "--set", "train.log_every=1", "--set", "train.sample_every=0", "--set", "train.save_every=0",
            "--set", "optim.lr=0.0002", "--set", "data.views=0",
            # the VGG terms are off in the built-in job's defaults; the reduction is checked for them too
            "--set", "loss.style=0.01", "--set", "loss.feature=0.02"]


def test_two_process_ddp_equals_single_process_double_batch(tiny_teacher, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    single = subprocess.run([sys.executable, "-m", "crd_edge.cli", *_args(tmp_path, "single", tiny_teacher, 2)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          "-m", "crd_edge.cli", *_args(tmp_path, "ddp", tiny_teacher, 1)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-2000:]

    # Rank 0 alone writes: one run folder, one metrics line per step.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    ref = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    # Metrics all-reduced over ranks = the batch-2 means of the single process: equal to float
    # precision at step 1; later steps drift by ~1e-4 because Adam turns float-noise gradients
    # (reduction order differs) into full-size updates.
    for key in ("loss", "crd_rows", "crd_columns", "crd_patches", "style", "feature"):
        assert lines[0][key] == pytest.approx(ref[0][key], rel=1e-5), key
    for a, b in zip(lines[1:], ref[1:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3)
    a, _ = load_student(tmp_path / "ddp" / "checkpoint.pt")
    b, _ = load_student(tmp_path / "single" / "checkpoint.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=4 * 2e-4 * 2, msg=name)  # <= 2 lr (2e-4) per step
