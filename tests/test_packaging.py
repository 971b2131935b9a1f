"""What pip sees: the dependency ranges that let a user keep the torch build they have."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML; 3.10 has no tomllib")
PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_torch_is_a_range_that_keeps_cuda_and_jetson_builds():
    (torch,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("torch")]
    for build in ("2.13.0", "2.13.0+cu128", "2.8.0a0+5228986c39.nv25.5", "2.4.1"):  # CPU, CUDA, NGC/Jetson
        assert torch.specifier.contains(Version(build), prereleases=True), build
    assert not torch.specifier.contains(Version("2.15.0"))  # beyond what the exporters accept


def test_the_all_extra_installs_every_backend_that_installs_on_linux():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(Requirement(extras["all"][0]).extras) == {"tflite", "coreml", "openvino", "demo"}
