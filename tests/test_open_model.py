"""``open_model``: one way to open a checkpoint, a teacher file or name, an artifact or an export
folder; every command that runs a model goes through it, so a spec means the same everywhere."""

import importlib.util

import numpy as np
import pytest
import torch

from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record
from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.runtime.model import open_model

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from crd_edge.export.run import export
    folder = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, SIZE)}, folder / "checkpoint.pt")
    results = list(export(folder / "checkpoint.pt", "onnx", ["fp32", "fp16"], out_dir=folder / "export"))
    assert [r.status for r in results] == ["passed", "passed"]
    return folder


def _x(size=SIZE):
    return np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)


def test_checkpoint_artifact_and_export_folder_are_the_same_model(exported):
    torch_model = open_model(exported / "checkpoint.pt")
    assert (torch_model.backend, torch_model.role, torch_model.native_size) == ("torch", "student", (SIZE, SIZE))
    assert torch_model.checkpoint["student"]["input_size"] == [SIZE, SIZE]
    folder = open_model(exported / "export")  # the export folder: its fp32 artifact for the fastest runtime here
    assert folder.artifact.path.name == f"student_{SIZE}_fp32.onnx" and folder.precision == "fp32"
    assert folder.static_size == (SIZE, SIZE) and folder.checkpoint is not None  # traced back through the manifest
    single = open_model(exported / "export" / f"student_{SIZE}_fp16.onnx")
    assert single.label == "student onnxruntime fp16"
    reference = torch_model.run(_x())
    assert np.abs(folder.run(_x()) - reference).max() < 1e-4
    assert np.abs(single.run(_x()) - reference).max() < 1e-2


def test_a_teacher_file_runs_as_torch_and_is_timed_by_bench(tiny_teacher):
    teacher = open_model(tiny_teacher)
    assert (teacher.role, teacher.backend, teacher.identity["arch"]) == ("teacher", "torch", "resnet_9blocks")
    assert teacher.run(_x()).shape == (1, 3, SIZE, SIZE)
    scripted = tiny_teacher.parent / "teacher_scripted.pt"
    torch.jit.trace(open_model(tiny_teacher).session.module, torch.zeros(1, 3, SIZE, SIZE)).save(str(scripted))
    from crd_edge.bench.harness import measure  # the harness opens what open_model opens
    result = measure(scripted, threads=1, warmup=1, runs=2, max_seconds=1.0, roofline=False)
    assert result["latency_ms"]["p50"] > 0


@pytest.mark.parametrize("runtime,message", [("litert", "cannot run with --runtime litert"),
                                             ("tensorrt", "--runtime tensorrt: expected one of")])
def test_wrong_runtime_is_one_line(exported, runtime, message):
    with pytest.raises(UserError, match=message):
        open_model(exported / "export" / f"student_{SIZE}_fp32.onnx", runtime=runtime)


def test_torch_model_refuses_an_artifact_runtime(exported):
    with pytest.raises(UserError, match="export it first: crd-edge export .* --target openvino"):
        open_model(exported / "checkpoint.pt", runtime="openvino")


@pytest.mark.skipif(importlib.util.find_spec("vintagify") is None, reason="vintagify not installed")
def test_builtin_teacher_by_name():
    model = open_model("vintagify")
    assert model.role == "teacher" and model.identity["kind"] == "state_dict"


def test_an_artifact_edited_after_export_loses_its_verification(exported, tmp_path):
    import shutil

    import onnx
    from onnx import numpy_helper

    from crd_edge.artifacts import CHANGED, find_artifacts
    from crd_edge.bench.run import _artifact_info

    folder = tmp_path / "export"
    shutil.copytree(exported / "export", folder)
    path = folder / f"student_{SIZE}_fp32.onnx"
    graph = onnx.load(path)
    weight = graph.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    onnx.save(graph, path)

    records = {a.path.name: a.record for a in find_artifacts(folder)}
    assert records[f"student_{SIZE}_fp32.onnx"]["verification"] == {"status": CHANGED}
    assert records[f"student_{SIZE}_fp16.onnx"]["verification"]["status"] == "passed"  # untouched
    assert find_artifacts(path)[0].record["changed"]
    with pytest.warns(UserWarning, match="changed after export"):
        open_model(str(path)).session.run(np.zeros((1, 3, SIZE, SIZE), np.float32))
    info = _artifact_info(find_artifacts(path)[0])
    assert info["verification_status"] == CHANGED and info["verification_psnr_db"] is None


def test_a_model_takes_pictures_and_gives_them_back_at_their_size(exported, tmp_path):
    """``model(picture)``: a uint8 RGB or BGR frame, a PIL image or a path, at any size, comes back
    as the same kind at the same size; the torch model runs at the frame's own size, the static
    ONNX artifact at its own and is resized back; a float NCHW batch is still ``run``."""
    from PIL import Image
    frame = np.random.default_rng(1).integers(0, 256, (37, 50, 3), dtype=np.uint8)  # not a multiple of 4
    torch_model, artifact = open_model(exported / "checkpoint.pt"), open_model(exported / "export")
    assert artifact.static_size == (SIZE, SIZE)
    for model in (torch_model, artifact):
        out = model(frame)
        assert out.shape == frame.shape and out.dtype == np.uint8
        assert np.array_equal(model(np.ascontiguousarray(frame[:, :, ::-1]), bgr=True)[:, :, ::-1], out)
        picture = model(Image.fromarray(frame))
        assert picture.size == (50, 37) and np.array_equal(np.asarray(picture), out)
        Image.fromarray(frame).save(tmp_path / "frame.png")
        assert np.array_equal(np.asarray(model(tmp_path / "frame.png")), out)
        assert model(_x()).shape == (1, 3, SIZE, SIZE)
    # the torch model runs at the frame's own size: a frame whose sides fit its stride is exactly a run
    from crd_edge.imaging import from_uint8, to_uint8
    fitting = frame[:36, :48]
    assert np.array_equal(torch_model(fitting), to_uint8(torch_model.run(from_uint8(fitting[None])))[0])
    with pytest.raises(TypeError, match="expected a uint8"):
        torch_model(frame.astype(np.float32))
