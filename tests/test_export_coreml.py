"""Core ML target: conversion of the paper's layers, spec-only verification (prediction needs
macOS), weight precision per artifact, errors."""

import sys

import pytest

import torch

from crd_edge.artifacts import FORMATS
from crd_edge.errors import UserError
from crd_edge.export import coreml
from crd_edge.export.base import ExportJob
from crd_edge.artifacts import artifact_bytes, artifact_sha256
from crd_edge.export.rewrites import apply_rewrites
from crd_edge.models import create_model
from crd_edge.runtime import open_session

ct = pytest.importorskip("coremltools")

SIZE = 64
ARCHS = ("mobile_resnet_9blocks", "resnet_9blocks")  # paper student (k3 transposed convs) and teacher layout


def _job(model, precision, tmp, height=SIZE, width=SIZE):
    return ExportJob(model, height, width, precision, None, tmp)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {arch: create_model(arch, ngf=8, n_blocks=2).eval() for arch in ARCHS}


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """{(arch, precision): (job, path, details)}, each converted once, as the orchestrator does."""
    out = tmp_path_factory.mktemp("coreml")
    result = {}
    for arch, source in models.items():
        model, applied = apply_rewrites(source, coreml.REWRITES)
        assert applied == []  # coremltools 9 takes reflect pads, InstanceNorm, k3 transposed convs as they are
        for precision in FORMATS["coreml"].precisions:
            job = _job(model, precision, out)
            path = out / f"{arch}_{precision}.mlpackage"
            result[arch, precision] = job, path, coreml.export(job, path)
    return result


def _pad_modes(path):
    """The mode of every MIL pad op, read from the saved spec."""
    function = ct.models.MLModel(str(path), skip_model_load=True).get_spec().mlProgram.functions["main"]
    ops = function.block_specializations[function.opset].operations
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}
    return [consts[op.inputs["mode"].arguments[0].name].attributes["val"].immediateValue.tensor.strings.values[0]
            for op in ops if op.type == "pad"]


@pytest.mark.parametrize("precision", FORMATS["coreml"].precisions)
@pytest.mark.parametrize("arch", ARCHS)
def test_export_is_spec_verified(exported, arch, precision):
    job, path, details = exported[arch, precision]
    assert path.is_dir() and (path / "Manifest.json").exists()
    assert (details.input_name, details.output_name, details.layout) == ("image", "output", "NCHW")
    assert set(details.tool_versions) == {"torch", "coremltools"}
    assert "torch.jit.trace" in details.conversion["method"]
    assert any("tested with torch up to" in note for note in details.conversion["notes"])

    report = coreml.inspect(path, job)
    assert report["status"] == "spec-verified", report["problems"]
    assert report["numerics"].startswith("not verified")
    shape = [1, 3, SIZE, SIZE]
    assert report["inputs"] == [{"name": "image", "shape": shape, "dtype": "FLOAT32"}]
    assert report["outputs"] == [{"name": "output", "shape": shape, "dtype": "FLOAT32"}]
    assert report["weight_precision"] == precision
    assert set(report["weight_elements"]) <= ({"int8", "fp16"} if precision == "int8" else {precision})
    # The paper's layers arrive as native Core ML ops (no rewrite, no decomposition).
    assert {"pad", "instance_norm", "conv_transpose"} <= set(report["ops"])
    assert set(_pad_modes(path)) == {"reflect"}
    if precision == "int8":
        assert report["ops"]["constexpr_affine_dequantize"] > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_lower_precisions_are_smaller(exported, arch):
    sizes = [artifact_bytes(exported[arch, p][1]) for p in ("int8", "fp16", "fp32")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3, sizes


def test_reexport_gives_the_same_bytes(exported, tmp_path):
    """The manifest tells a re-export of the same model from a different model by the hash
    (the first copy has also been opened by inspect since: opening must not change it)."""
    job, path, _ = exported["mobile_resnet_9blocks", "int8"]
    coreml.export(job, tmp_path / "again.mlpackage")
    assert artifact_sha256(tmp_path / "again.mlpackage") == artifact_sha256(path)


def test_inspect_fails_when_the_file_does_not_match_the_job(exported, tmp_path):
    job, path, _ = exported["mobile_resnet_9blocks", "fp16"]
    report = coreml.inspect(path, _job(job.model, "fp16", tmp_path, height=SIZE + 32))
    assert report["status"] == "failed"
    assert any(p.startswith("inputs:") and "96" in p for p in report["problems"])
    report = coreml.inspect(path, _job(job.model, "fp32", tmp_path))
    assert report["status"] == "failed" and any(p.startswith("weights:") for p in report["problems"])
    assert coreml.inspect(tmp_path / "missing.mlpackage", job)["status"] == "failed"


def test_export_prints_nothing(models, tmp_path, capfd):
    """The converter's warnings and progress bars end up in the notes, not on the terminal."""
    details = coreml.export(_job(models["resnet_9blocks"], "fp32", tmp_path), tmp_path / "m.mlpackage")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert any("deprecated" in note for note in details.conversion["notes"])  # torch.jit.trace's own warning


def test_unsupported_op_is_a_one_line_user_error(tmp_path):
    class Erfinv(torch.nn.Module):
        def forward(self, x):
            return torch.erfinv(x)

    with pytest.raises(UserError, match=r"at torch op 'erfinv'") as info:
        coreml.export(_job(Erfinv(), "fp32", tmp_path), tmp_path / "e.mlpackage")
    assert "\n" not in str(info.value)


def test_missing_coremltools_names_the_extra(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes the import fail
    with pytest.raises(UserError, match=r"crd-edge\[coreml\]"):
        coreml.export(_job(models["resnet_9blocks"], "fp32", tmp_path), tmp_path / "m.mlpackage")
    monkeypatch.setattr(sys, "platform", "darwin")
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(UserError, match=r"crd-edge\[coreml\]"):
        open_session(tmp_path / "m.mlpackage")


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs there")
def test_session_needs_macos(exported):
    _, path, _ = exported["mobile_resnet_9blocks", "fp32"]
    with pytest.raises(UserError, match="run only on macOS; on this machine its spec can be inspected"):
        open_session(path)
