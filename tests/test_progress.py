"""Long commands show a progress bar (n/N, ETA) on a terminal and stay quiet in logs."""

import os
import pty
import subprocess
import sys

import pytest
import torch

from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record
from crd_edge.models import create_model

pytestmark = pytest.mark.slow
BAR = "━"  # rich's bar glyph


def _run(args, terminal: bool, columns: int = 160) -> str:
    command = [sys.executable, "-c", "from crd_edge.cli import main; main()", *map(str, args)]
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    if not terminal:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300).stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 32)}, folder / "c.pt")
    return folder / "c.pt"


def test_export_shows_a_bar_on_a_terminal_only(checkpoint, tmp_path):
    args = ["export", checkpoint, "--precision", "fp32,fp16", "--out"]
    shown = _run([*args, tmp_path / "tty"], terminal=True)
    assert BAR in shown and "2/2" in shown and "export" in shown
    assert "student_32_fp16.onnx" in shown and "|---|" not in shown  # a rich table, not Markdown source
    logged = subprocess.run([sys.executable, "-c", "from crd_edge.cli import main; main()", *map(str, args),
                             tmp_path / "log"], capture_output=True, text=True, timeout=300)
    assert BAR not in logged.stderr and "student_32_fp16.onnx: passed" in logged.stderr
    assert "| student_32_fp16.onnx | onnx | fp16 |" in logged.stdout  # piped: the Markdown


def test_bench_shows_a_bar_on_a_terminal(checkpoint, tmp_path):
    _run(["export", checkpoint, "--out", tmp_path / "exp"], terminal=False)
    shown = _run(["bench", tmp_path / "exp", "--runs", 2, "--max-seconds", 0.2, "--no-roofline"], terminal=True)
    assert BAR in shown and "1/1" in shown


def test_an_80_column_terminal_cuts_no_name(checkpoint, tmp_path):
    """rich's own Markdown tables cut every cell with an ellipsis when the terminal is narrow; a
    table wider than the terminal is printed whole, as its Markdown lines."""
    shown = _run(["export", checkpoint, "--precision", "fp32,fp16", "--out", tmp_path / "tty"], terminal=True,
                 columns=80)
    assert "student_32_fp32.onnx" in shown and "student_32_fp16.onnx" in shown and "…" not in shown


def test_the_training_bar_keeps_its_step_count_and_eta_on_80_columns():
    from rich.console import Console

    from crd_edge.training import progress
    console = Console(width=80, record=True, force_terminal=True)
    bar = progress.TrainProgress(1500, 0, console=console)
    bar.update(250, {"images_per_s": 24.41, "loss": 11.2, "crd_rows": 0.32, "crd_columns": 0.34,
                     "crd_patches": 0.125, "pixel_l1": 10.4})
    bar.bar.refresh()
    bar.close()
    line = "distill" + console.export_text().splitlines()[-1].split("distill")[-1]  # the last refresh
    assert " 250/1500" in line and "ETA" in line and "loss=11.2" in line and len(line) <= 80
