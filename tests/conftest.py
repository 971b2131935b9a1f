import sys

import pytest
import torch

from crd_edge import cli
from crd_edge.models import create_model


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``crd-edge ARGS`` through the real entry point (error handling included);
    returns (exit_code, stdout, stderr)."""
    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["crd-edge", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A small CycleGAN-layout ResNet teacher (state dict), fast enough for end-to-end runs."""
    torch.manual_seed(123)
    model = create_model("resnet_9blocks", ngf=8, n_blocks=2)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    torch.save(model.state_dict(), path)
    return path
