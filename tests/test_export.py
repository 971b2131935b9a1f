"""`crd-edge export`: verified artifacts, manifest, names, sizes, teachers, no silent overwrite, errors
(ONNX, OpenVINO and the TensorRT-ready graph; TFLite and Core ML have their own files)."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crd_edge.models import create_model
from crd_edge.runtime import open_session
from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record

pytest.importorskip("onnxruntime")


def _checkpoint(path, seed=0, **kw):
    torch.manual_seed(seed)
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="convt4", input_skip=True, **kw).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 64)}, path)
    return model


def test_onnx_export_is_verified_on_real_photos(run_cli, tmp_path):
    model = _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    (record,) = json.loads(out[out.index("["):])
    assert record["path"] == "student_64_fp32.onnx" and record["target"] == "onnx" and record["precision"] == "fp32"
    v = record["verification"]
    assert v["status"] == "passed" and v["psnr_db_min"] >= 60 and v["images"] == 3
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["artifacts"] == [record]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["comparison.png", "manifest.json", "student_64_fp32.onnx"]

    # The artifact runs through the runtime layer like the torch model (independent check).
    assert record["source"]["kind"] == "crd-edge checkpoint" and record["rewrites"] == [{"name": "narrow_conv_to_space_to_depth", "layers": 1}]
    assert record["input"] == {"name": "image", "shape": [1, 3, 64, 64]} and record["layout"] == "NCHW"
    session = open_session(tmp_path / "exp" / "student_64_fp32.onnx")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    np.testing.assert_allclose(session.run(x.numpy()), model(x).detach().numpy(), atol=1e-4)


def test_reexport_never_silently_replaces_a_different_model(run_cli, tmp_path):
    _checkpoint(tmp_path / "a.pt", seed=0)
    _checkpoint(tmp_path / "b.pt", seed=1)
    out = tmp_path / "exp"
    assert run_cli("export", tmp_path / "a.pt", "--out", out)[0] == 0
    assert run_cli("export", tmp_path / "a.pt", "--out", out)[0] == 0  # same model: fine
    code, _, err = run_cli("export", tmp_path / "b.pt", "--out", out)
    assert code == 2 and "holds a different model" in err and "--force" in err
    assert run_cli("export", tmp_path / "b.pt", "--out", out, "--force")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == 1 and manifest["artifacts"][0]["source"]["path"].endswith("b.pt")
    assert not list(out.glob(".partial-*"))


@pytest.mark.parametrize("args,message", [
    (["--target", "onxx"], "did you mean 'onnx'"),
    (["--target", "openvino,tensorrtt"], "did you mean 'tensorrt'"),
    (["--precision", "int4"], "onnx supports fp32, fp16, int8"),
    (["--size", "30"], "multiples of 4"),
    (["--size", "64x"], "expected N or HxW"),
    (["--calib", "nowhere"], "does not exist"),
])
def test_bad_export_options(run_cli, tmp_path, args, message):
    _checkpoint(tmp_path / "c.pt")
    if "--calib" in args:
        args = [*args, "--precision", "int8"]
    code, _, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", *args)
    assert code == 2 and message in err and err.startswith("error: ")


def test_a_run_folder_exports_its_checkpoint_into_the_run(run_cli, tmp_path):
    run = tmp_path / "runs" / "main"
    run.mkdir(parents=True)
    _checkpoint(run / "checkpoint.pt")
    code, _, err = run_cli("export", run, "--target", "onnx", "--precision", "fp32")
    assert code == 0, err
    assert (run / "export" / "student_64_fp32.onnx").is_file()


def test_bad_export_inputs(run_cli, tmp_path):
    code, _, err = run_cli("export", tmp_path / "missing.pt")
    assert code == 2 and "no such checkpoint or model file" in err
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_cli("export", tmp_path / "notes.txt")
    assert code == 2 and "not a crd-edge checkpoint, TorchScript file, state dict or ONNX model" in err
    with pytest.raises(Exception, match="no runtime"):
        open_session(tmp_path / "notes.txt")


def test_fp16_export_meets_its_threshold(run_cli, tmp_path):
    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", "--precision", "fp16", "--json")
    assert code == 0, err
    (record,) = json.loads(out[out.index("["):])
    assert record["path"] == "student_64_fp16.onnx" and record["verification"]["psnr_db_min"] >= 40
    assert "float16" in record["conversion"]["method"]


def test_int8_export_is_kept_and_marked_by_its_verification(run_cli, tmp_path):
    _checkpoint(tmp_path / "c.pt")
    code, _, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", "--precision", "int8")
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    v = record["verification"]
    assert (tmp_path / "exp" / "student_64_int8.onnx").is_file()  # kept even when it fails
    assert v["threshold_db"] == 30 and v["status"] == ("passed" if v["psnr_db_min"] >= 30 else "failed")
    assert code == (0 if v["status"] == "passed" else 1)
    assert not list((tmp_path / "exp").glob(".partial-*"))


def test_int8_calibrates_on_the_given_folder(run_cli, tmp_path, unaligned):
    _checkpoint(tmp_path / "c.pt")
    (unaligned / "trainA" / "broken.jpg").write_bytes(b"not an image")  # skipped and counted, no crash
    code, _, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", "--precision", "int8",
                           "--calib", unaligned / "trainA")
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    assert "2 calibration images" in record["conversion"]["method"], record["conversion"]


def test_teacher_state_dict_exports_like_a_student(run_cli, tmp_path, tiny_teacher):
    code, out, err = run_cli("export", tiny_teacher, "--size", "64x96", "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    (record,) = json.loads(out[out.index("["):])
    assert record["path"] == "teacher_64x96_fp32.onnx" and record["source"]["kind"] == "state_dict"
    assert record["input"]["shape"] == [1, 3, 64, 96] and record["verification"]["status"] == "passed"
    assert open_session(tmp_path / "exp" / record["path"]).input_shape == (1, 3, 64, 96)
    # the architecture option has distill's name too (a wrong one is the same one-line error)
    code, _, err = run_cli("export", tiny_teacher, "--teacher-arch", "mobile_resnet_9blocks", "--out", tmp_path / "x")
    assert code == 2 and "check --teacher-arch" in err


def test_missing_backend_is_one_line_naming_the_extra(run_cli, tmp_path, monkeypatch):
    _checkpoint(tmp_path / "c.pt")
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    code, _, err = run_cli("export", tmp_path / "c.pt", "--target", "openvino", "--out", tmp_path / "exp")
    assert code == 2 and err.strip() == "error: this target needs openvino: pip install 'crd-edge[openvino]'"
    # With several targets, the missing one is skipped with its reason and the others still export.
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "onnx,openvino", "--out", tmp_path / "exp")
    assert code == 0, err
    assert "student_64_fp32.onnx" in out and "skipped: this target needs openvino" in out
    assert not list((tmp_path / "exp").glob(".partial-*"))


def test_openvino_export_is_verified(run_cli, tmp_path):
    pytest.importorskip("openvino")
    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "openvino", "--precision", "fp32,fp16",
                             "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    fp32, fp16 = json.loads(out[out.index("["):])
    assert fp32["path"] == "student_64_fp32.openvino" and fp32["verification"]["runtime"] == "openvino"
    assert fp32["verification"]["psnr_db_min"] >= 60 and fp16["verification"]["psnr_db_min"] >= 40
    folder = tmp_path / "exp" / "student_64_fp32.openvino"
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml"]
    assert fp32["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    # A folder artifact is replaced only with --force, like a file.
    _checkpoint(tmp_path / "c.pt", seed=1)
    code, _, err = run_cli("export", tmp_path / "c.pt", "--target", "openvino", "--out", tmp_path / "exp")
    assert code == 2 and "holds a different model" in err
    assert run_cli("export", tmp_path / "c.pt", "--target", "openvino", "--out", tmp_path / "exp", "--force")[0] == 0
    assert not [p for p in (tmp_path / "exp").iterdir() if p.name.startswith(".")]


def test_tensorrt_ready_graph_has_no_pad_and_a_trtexec_command(run_cli, tmp_path):
    import onnx
    _checkpoint(tmp_path / "c.pt")  # reflect pads everywhere
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "tensorrt", "--precision", "fp16",
                             "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    (record,) = json.loads(out[out.index("["):])
    assert record["path"] == "student_64_fp16.trt.onnx"
    assert record["rewrites"] == [{"name": "reflect_pad_to_slices", "layers": 20}]
    conversion = record["conversion"]
    assert conversion["trtexec"][1:] == ["--onnx=student_64_fp16.trt.onnx", "--saveEngine=student_64_fp16.engine", "--fp16"]
    graph = onnx.load(str(tmp_path / "exp" / record["path"])).graph
    assert "Pad" not in {n.op_type for n in graph.node} and conversion["pad_nodes"] == 0
    assert record["verification"]["psnr_db_min"] >= 60  # the graph itself, in fp32
    if importlib.util.find_spec("tensorrt") is None:
        assert conversion["engine"].startswith("not built here")


def test_the_shuffle_student_exports_verifies_and_ends_in_depth_to_space(run_cli, tmp_path):
    import onnx
    pytest.importorskip("openvino")
    from crd_edge.models.family import FAMILY_BASE
    torch.manual_seed(0)
    model = create_model(FAMILY_BASE, ngf=8, n_blocks=2, ends="shuffle").eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 64)}, tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "onnx,openvino,tensorrt",
                             "--precision", "fp32,int8", "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    records = json.loads(out[out.index("["):])
    assert len(records) == 6 and all(r["verification"]["status"] == "passed" for r in records), records
    for r in records:
        if r["target"] in ("onnx", "tensorrt"):
            ops = {n.op_type for n in onnx.load(str(tmp_path / "exp" / r["path"])).graph.node}
            assert "DepthToSpace" in ops, (r["path"], ops)


def test_tensorrt_graph_check_rejects_dynamic_shapes_and_unknown_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from crd_edge.errors import UserError
    from crd_edge.export.tensorrt import check_graph

    def save(op, dims, name):
        x = helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)
        graph = helper.make_graph([helper.make_node(op, ["image"], ["output"])], "g", [x], [y])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / name))
        return tmp_path / name

    assert check_graph(save("Relu", [1, 3, 8, 8], "ok.onnx"))["static_shapes"]
    with pytest.raises(UserError, match="dynamic dimensions"):
        check_graph(save("Relu", ["batch", 3, 8, 8], "dynamic.onnx"))
    with pytest.raises(UserError, match=r"ops \['Hardmax'\] are not TensorRT-ready"):
        check_graph(save("Hardmax", [1, 3, 8, 8], "odd.onnx"))


def test_target_all_writes_every_installed_target_with_one_table(run_cli, tmp_path):
    from crd_edge.artifacts import EXPORT_TARGETS as TARGETS
    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "all", "--precision", "fp32",
                             "--out", tmp_path / "exp")
    records = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    written = {r["target"] for r in records}
    from crd_edge._assets import web_runtime_files
    web = {"web": "onnxruntime-web", "web-litert": "litertjs"}  # target -> its runtime (an asset)
    missing = {t for t in TARGETS if t != "web" and importlib.util.find_spec(
        {"tflite": "litert_torch", "web-litert": "litert_torch", "coreml": "coremltools",
         "openvino": "openvino"}.get(t, "onnx")) is None}
    # the tests' own cache: no web runtime unless a test copied it there
    missing |= {t for t, runtime in web.items() if web_runtime_files(runtime) is None}
    assert written == set(TARGETS) - missing
    for target in missing:  # skipped with the extra or the asset to install, never silently
        fix = f"crd-edge[{target}]"
        if target in web:  # the runtime is checked first, then the converter (web-litert's is tflite's)
            fix = f"crd-edge assets install {web[target]}" if web_runtime_files(web[target]) is None else "crd-edge[tflite]"
        assert f"| - | {target} | fp32 |" in out and fix in out
    assert code == 0, err  # every artifact written here passed (Core ML: its spec)
    assert out.count("| student_64_fp32") == len(written)
    by_target = {r["target"]: r for r in records}
    if "coreml" in by_target:
        v = by_target["coreml"]["verification"]
        assert v["status"] == "spec-verified" and "macOS" in v["numerics"] and "psnr_db_min" not in v
    if "tflite" in by_target:
        assert by_target["tflite"]["input"]["shape"] == [1, 64, 64, 3] and by_target["tflite"]["layout"] == "NHWC"
    # one name for the input and the output in every format (LiteRT: its signature's)
    named = {(r["input"]["name"], r["output"]["name"]) for r in records}
    assert named == {("image", "output")}


def test_paper_exact_student_exports_to_every_target_through_rewrites(run_cli, tmp_path):
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()  # ConvTranspose k3 + reflect pads
    atomic_torch_save({"format_version": 1, "student": student_record(model, 64)}, tmp_path / "paper.pt")
    code, out, err = run_cli("export", tmp_path / "paper.pt", "--target", "all", "--precision", "fp32",
                             "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    records = {r["target"]: r for r in json.loads(out[out.index("["):]) if "verification" in r}
    assert {"onnx", "tensorrt"} <= set(records)
    for r in records.values():
        assert r["verification"]["status"] in ("passed", "spec-verified"), r
    assert records["tensorrt"]["rewrites"] == [{"name": "reflect_pad_to_slices", "layers": 20}]
    if "tflite" in records:
        assert records["tflite"]["rewrites"] == [{"name": "convtranspose_k3_to_k4", "layers": 2},
                                                 {"name": "reflect_pad_to_slices", "layers": 20},
                                                 {"name": "narrow_conv_to_space_to_depth", "layers": 1}]


def test_a_converter_that_aborts_costs_its_artifact_not_the_export(tmp_path, monkeypatch):
    """The TFLite converter runs in a child process: when it aborts, the export goes on with
    the next target, says what happened and leaves no partial file."""
    import importlib

    from crd_edge.export import run as export_run

    _checkpoint(tmp_path / "c.pt")
    aborting = importlib.import_module("fixtures.aborting_converter")
    real = export_run.target_module
    monkeypatch.setattr(export_run, "target_module", lambda t: aborting if t == "tflite" else real(t))
    results = list(export_run.export(tmp_path / "c.pt", ["tflite", "onnx"], "fp32", out_dir=tmp_path / "exp"))
    assert [(r.target, r.status) for r in results] == [("tflite", "error"), ("onnx", "passed")]
    assert "the converter crashed" in results[0].reason and "other targets are not affected" in results[0].reason
    # what the converter printed is not on the terminal but in the log its error names
    log = Path(re.search(r"its output: (\S+)\)", results[0].reason).group(1))
    assert log.read_text().split("\n")[:2] == ["converter noise on stdout", "WARNING: a C++ library's line on stderr"]
    log.unlink()
    assert results[0].path is None and results[1].path == tmp_path / "exp" / "student_64_fp32.onnx"
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["comparison.png", "manifest.json", "student_64_fp32.onnx"]


def test_what_a_killed_export_left_is_removed_by_the_next(run_cli, tmp_path):
    _checkpoint(tmp_path / "c.pt")
    out = tmp_path / "exp"
    out.mkdir()
    (out / ".partial-student_64_fp16.onnx").write_bytes(b"half")
    (out / ".manifest.json.x1y2.tmp").write_text("{")
    (out / "teacher_64_fp32.onnx").write_bytes(b"the new one")  # its commit finished...
    (out / ".replaced-teacher_64_fp32.onnx").write_bytes(b"the old one")  # ...before the old copy was removed
    (out / ".replaced-other_fp32.onnx").write_bytes(b"only copy")  # killed between the two renames
    code, _, err = run_cli("export", tmp_path / "c.pt", "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "manifest.json", "other_fp32.onnx",
                                                     "student_64_fp32.onnx", "teacher_64_fp32.onnx"]
    assert (out / "other_fp32.onnx").read_bytes() == b"only copy"  # put back, never deleted


def test_every_artifact_carries_its_contract_without_the_manifest(run_cli, tmp_path):
    """An app developer who receives only the file can read its layout, size, value range and
    colour order from it; crd-edge's commands read the same when no manifest lists it."""
    import shutil

    from crd_edge.artifacts import find_artifacts, format_of
    from crd_edge.artifacts.contract import read_contract

    _checkpoint(tmp_path / "c.pt")
    targets = [t for t, module in (("onnx", "onnxruntime"), ("tensorrt", "onnx"), ("openvino", "openvino"),
                                   ("tflite", "litert_torch"), ("coreml", "coremltools"))
               if importlib.util.find_spec(module)]
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", ",".join(targets), "--precision", "fp32",
                             "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    for record in json.loads(out):
        bare = tmp_path / "bare" / record["target"] / record["path"]  # the file alone: no manifest beside it
        bare.parent.mkdir(parents=True)
        (shutil.copytree if (tmp_path / "exp" / record["path"]).is_dir() else shutil.copy)(
            tmp_path / "exp" / record["path"], bare)
        contract = read_contract(bare, format_of(bare).target)
        assert contract["layout"] == record["layout"] and contract["input_size"] == "64x64", record["target"]
        assert (contract["value_range"], contract["color_order"], contract["role"], contract["precision"]) == \
            ("-1,1", "RGB", "student", "fp32")
        assert contract["preprocessing"] == "x = rgb_uint8 / 127.5 - 1"
        (artifact,) = find_artifacts(bare)
        assert (artifact.role, artifact.precision, artifact.input_hw) == ("student", "fp32", (64, 64))
        assert artifact.record["layout"] == record["layout"]
    assert {r["target"] for r in json.loads(out)} == set(targets)


def test_the_tflite_file_carries_the_standard_metadata_android_reads(run_cli, tmp_path):
    """Besides crd-edge's own entry, a TFLITE_METADATA entry (a ModelMetadata flatbuffer, file
    identifier M001): both tensors RGB images, normalised with mean 127.5 and std 127.5."""
    pytest.importorskip("litert_torch")
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers.table import Table

    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "tflite", "--precision", "fp32",
                             "--out", tmp_path / "exp")
    assert code == 0, err
    model = schema.Model.GetRootAs((tmp_path / "exp" / "student_64_fp32.tflite").read_bytes(), 0)
    entries = {model.Metadata(i).Name().decode(): model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
               for i in range(model.MetadataLength())}
    assert {"crd_edge", "TFLITE_METADATA"} <= set(entries)
    data = bytearray(entries["TFLITE_METADATA"])
    assert data[4:8] == b"M001"

    def table(tab: Table, slot: int) -> Table:  # a sub-table field (metadata_schema.fbs slots)
        return Table(tab.Bytes, tab.Indirect(tab.Offset(4 + 2 * slot) + tab.Pos))

    def element(tab: Table, slot: int, i: int = 0) -> Table:  # a vector-of-tables field's element
        start = tab.Vector(tab.Offset(4 + 2 * slot))
        return Table(tab.Bytes, tab.Indirect(start + 4 * i))

    def text(tab: Table, slot: int) -> str:
        return tab.String(tab.Offset(4 + 2 * slot) + tab.Pos).decode()

    root = Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    assert text(root, 0) == "crd-edge student" and text(root, 7) == "1.0.0"  # name, min_parser_version
    subgraph = element(root, 3)
    for slot, name in ((2, "image"), (3, "output")):  # input_tensor_metadata, output_tensor_metadata
        tensor = element(subgraph, slot)
        assert text(tensor, 0) == name and "RGB image, 64x64, NHWC" in text(tensor, 1)
        content = table(tensor, 3)
        assert content.Get(flatbuffers.number_types.Uint8Flags, content.Offset(4) + content.Pos) == 2  # ImageProperties
        assert table(content, 1).Get(flatbuffers.number_types.Int8Flags, table(content, 1).Offset(4) + table(content, 1).Pos) == 1  # RGB
        unit = element(tensor, 4)
        assert unit.Get(flatbuffers.number_types.Uint8Flags, unit.Offset(4) + unit.Pos) == 1  # NormalizationOptions
        options = table(unit, 1)
        for field in (0, 1):  # mean, std
            vector = options.Vector(options.Offset(4 + 2 * field))
            assert options.Get(flatbuffers.number_types.Float32Flags, vector) == 127.5
