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
    assert set(Requirement(extras["all"][0]).extras) == {"onnxruntime", "tflite", "coreml", "openvino", "demo"}


def _closure(extra: str) -> set[str]:
    """The distributions an extra brings, following crd-edge[...] references."""
    names = set()
    for text in PYPROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(text)
        names |= set().union(*map(_closure, req.extras)) if req.name == "crd-edge" else {req.name}
    return names


def test_onnxruntime_cpu_and_gpu_builds_are_never_both_required():
    # Both install the module `onnxruntime`: a GPU user must be able to have only the GPU build.
    core = {Requirement(r).name for r in PYPROJECT["project"]["dependencies"]}
    assert not core & {"onnxruntime", "onnxruntime-gpu"}
    assert "onnxruntime" in _closure("all") and "onnxruntime-gpu" not in _closure("all")
    assert "onnxruntime-gpu" in _closure("all-gpu") and "onnxruntime" not in _closure("all-gpu")


def test_without_onnxruntime_the_error_names_the_extras(monkeypatch, tmp_path):
    import sys

    from crd_edge.errors import UserError
    from crd_edge.runtime.onnxruntime_session import OnnxRuntimeSession

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"model.onnx: running .onnx files needs onnxruntime: pip install "
                                        r"'crd-edge\[onnxruntime\]' \(or 'crd-edge\[onnxruntime-gpu\]'"):
        OnnxRuntimeSession(tmp_path / "model.onnx")
