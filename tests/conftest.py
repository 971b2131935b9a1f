import os
import sys

# The built-in photos without the optional Debian packages (opencv-doc, gcompris-qt-data): the
# suite's expectations (a 3-photo test split) must not depend on what else a machine has.
os.environ.setdefault("CRD_EDGE_BUILTIN_PHOTOS", "bundled")
# crd-edge's cache folder ($XDG_CACHE_HOME/crd-edge: view banks, held-out labels, Inception
# features, installed assets) points at a fresh folder for the session: a user's own caches
# must not change what the tests see. Packaged assets are still found in site-packages.
import tempfile  # noqa: E402

USER_CACHE = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")  # read by the web tests only
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="crd-edge-tests-cache-")

import numpy as np
import pytest
import torch
from PIL import Image

from crd_edge import cli
from crd_edge.data.builtin import builtin_photos
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


def _photo(i, size=80):
    img = builtin_photos()[i % 5].image
    return Image.fromarray(img).resize((size, size))


@pytest.fixture
def unaligned(tmp_path):
    for split in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / split).mkdir()
        for i in range(2):
            _photo(i + (2 if "B" in split else 0)).save(tmp_path / split / f"{i}.png")
    return tmp_path


@pytest.fixture
def aligned(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for i in range(2):
            a, b = np.asarray(_photo(i)), np.asarray(_photo(i + 2))
            Image.fromarray(np.concatenate([a, b], axis=1)).save(tmp_path / split / f"{i}.png")
    return tmp_path
