"""Conventions every command shares: -h, --version, --debug before or after the command."""

import subprocess
import sys

import pytest

import crd_edge


@pytest.mark.parametrize("args", [["-h"], ["export", "-h"], ["data", "download", "-h"]])
def test_short_help_everywhere(run_cli, args):
    code, out, _ = run_cli(*args)
    assert code == 0 and "Usage:" in out and "--help" in out


@pytest.mark.parametrize("command", [["distill"], ["export"], ["bench"], ["assets", "install"]])
def test_flags_do_not_look_like_they_take_a_value(run_cli, command):
    code, out, _ = run_cli(*command, "-h")
    flags = [line for line in out.splitlines() if "--json" in line or "--quiet" in line or "--help" in line]
    assert code == 0 and flags and not any("<bool>" in line for line in flags), flags
    assert "<bool>" not in out


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"crd-edge {crd_edge.__version__}"


def test_python_dash_m_runs_the_same_command_line():
    # For a Python whose scripts folder is not on PATH (a container's system Python).
    done = subprocess.run([sys.executable, "-m", "crd_edge", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"crd-edge {crd_edge.__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(run_cli, tmp_path, where):
    from crd_edge.cli import _state
    args = ["export", tmp_path / "missing.pt"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    try:
        with pytest.raises(crd_edge.errors.UserError, match="missing.pt: no such checkpoint"):
            run_cli(*args)
    finally:
        _state["debug"] = False
    code, _, err = run_cli("export", tmp_path / "missing.pt")  # without it: one line, exit 2
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1
