"""`crd-edge export --target onnx`: verified artifact, manifest, no silent overwrite, errors."""

import json

import numpy as np
import pytest
import torch

from crd_edge.models import create_model
from crd_edge.runtime import open_session
from crd_edge.training.checkpoint import atomic_torch_save, student_record

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
    assert record["path"] == "student_64.onnx" and record["target"] == "onnx" and record["precision"] == "fp32"
    v = record["verification"]
    assert v["status"] == "passed" and v["psnr_db_min"] >= 60 and v["images"] == 3
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["artifacts"] == [record]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["manifest.json", "student_64.onnx"]

    # The artifact runs through the runtime layer like the torch model (independent check).
    session = open_session(tmp_path / "exp" / "student_64.onnx")
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
    assert len(manifest["artifacts"]) == 1 and manifest["artifacts"][0]["source_checkpoint"].endswith("b.pt")
    assert not list(out.glob(".partial-*"))


@pytest.mark.parametrize("args,message", [
    (["--target", "onxx"], "did you mean 'onnx'"),
    (["--target", "tflite"], "not in this release"),
    (["--precision", "int4"], "supports fp32, fp16, int8"),
    (["--size", "30"], "multiple of 4"),
])
def test_bad_export_options(run_cli, tmp_path, args, message):
    _checkpoint(tmp_path / "c.pt")
    code, _, err = run_cli("export", tmp_path / "c.pt", "--out", tmp_path / "exp", *args)
    assert code == 2 and message in err and err.startswith("error: ")


def test_bad_export_inputs(run_cli, tmp_path):
    code, _, err = run_cli("export", tmp_path / "missing.pt")
    assert code == 2 and "no such checkpoint" in err
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_cli("export", tmp_path / "notes.txt")
    assert code == 2 and "not a readable checkpoint" in err
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
