"""Teachers from TorchScript, ONNX, state dicts (CycleGAN / vintagify layouts) and checkpoints."""

import importlib.util

import pytest
import torch

from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.runtime.teachers import adapt_cyclegan_state_dict, infer_resnet_kwargs, load_teacher
from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import load_student, read_checkpoint, student_record

X = torch.rand(2, 3, 64, 64) * 2 - 1


def _small_resnet(**kw):
    torch.manual_seed(1)
    return create_model("resnet_9blocks", ngf=8, **kw).eval()


def test_original_cyclegan_layout_with_dataparallel_prefix(tmp_path):
    model = _small_resnet()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.model.2.running_mean"] = torch.zeros(8)  # stale buffer old PyTorch saved
    torch.save(state, tmp_path / "latest_net_G.pth")
    teacher = load_teacher(str(tmp_path / "latest_net_G.pth"))
    assert teacher.identity["kind"] == "state_dict"
    assert teacher.identity["arch"]["kwargs"]["ngf"] == 8
    torch.testing.assert_close(teacher(X), model(X))


def test_vintagify_layout_block_keys_and_affine_norm(tmp_path):
    model = _small_resnet(norm_affine=True)
    state = {k.replace(".conv_block.", ".block."): v for k, v in model.state_dict().items()}
    kwargs = infer_resnet_kwargs(adapt_cyclegan_state_dict(state))
    assert kwargs == {"ngf": 8, "in_channels": 3, "n_blocks": 9, "out_channels": 3, "mobile": False,
                      "norm_affine": True}
    torch.save(state, tmp_path / "g.pth")
    torch.testing.assert_close(load_teacher(str(tmp_path / "g.pth"))(X), model(X))


@pytest.mark.skipif(importlib.util.find_spec("vintagify") is None, reason="vintagify not installed")
def test_real_vintagify_teacher():
    teacher = load_teacher("vintagify")
    assert sum(p.numel() for p in teacher.module.parameters()) == 11_388_675  # ResNet-9blocks ngf 64 with affine norms
    y = teacher(X[:1])
    assert y.shape == (1, 3, 64, 64) and y.abs().max() <= 1


def test_torchscript_teacher(tmp_path):
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    torch.jit.trace(model, X[:1]).save(str(tmp_path / "t.pt"))
    teacher = load_teacher(str(tmp_path / "t.pt"))
    assert teacher.identity["kind"] == "torchscript"
    torch.testing.assert_close(teacher(X), model(X))


def test_onnx_teacher_is_a_black_box(tmp_path):
    pytest.importorskip("onnxruntime")
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    torch.onnx.export(model, (X[:1],), str(tmp_path / "t.onnx"), input_names=["image"], dynamo=False)
    teacher = load_teacher(str(tmp_path / "t.onnx"))
    assert teacher.identity["kind"] == "onnx" and teacher.module is None
    torch.testing.assert_close(teacher(X), model(X), atol=1e-4, rtol=1e-4)


def test_checkpoint_as_teacher_and_roundtrip(tmp_path):
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 64)}, tmp_path / "c.pt")
    rebuilt, ckpt = load_student(tmp_path / "c.pt")
    torch.testing.assert_close(rebuilt(X), model(X))
    torch.testing.assert_close(load_teacher(str(tmp_path / "c.pt"))(X), model(X))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_bad_teacher_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_teacher(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="not a crd-edge checkpoint, TorchScript file, state dict or ONNX model"):
        load_teacher(str(junk))
    onnx_junk = tmp_path / "junk.onnx"
    onnx_junk.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        load_teacher(str(onnx_junk))
    torch.save(_small_resnet().state_dict(), tmp_path / "g.pth")
    with pytest.raises(UserError, match="do not fit"):
        load_teacher(str(tmp_path / "g.pth"), arch="mobile_resnet_9blocks")


def test_bad_checkpoints(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a crd-edge checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save({"format_version": 99, "student": {}}, tmp_path / "new.pt")
    with pytest.raises(UserError, match="newer than this"):
        read_checkpoint(tmp_path / "new.pt")
