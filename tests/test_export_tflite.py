"""TFLite target: litert-torch conversion, NHWC I/O, ai-edge-quantizer precisions, LiteRT session.

Artifacts are checked through ``open_session`` against torch on held-out real photos, as the
export command verifies them. Small generators (ngf 8, 2 residual blocks, 64 px) keep each
conversion to a few seconds; every precision is converted once per module.
"""

from __future__ import annotations

import numpy as np
import pytest

import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from crd_edge.artifacts import FORMATS  # noqa: E402
from crd_edge.errors import UserError  # noqa: E402
from crd_edge.export import tflite  # noqa: E402
from crd_edge.export.base import ExportJob  # noqa: E402
from crd_edge.export.rewrites import apply_rewrites  # noqa: E402
from crd_edge.export.verify import calibration_images, verification_images  # noqa: E402
from crd_edge.models import create_model  # noqa: E402
from crd_edge.runtime import open_session  # noqa: E402

SIZE = 64


def small_generator(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mobile_resnet_9blocks", ngf=8, n_blocks=2, **kwargs).eval()


def export(model, precision, tmp_path_factory, rewrites=tflite.REWRITES):
    """Rewrite as the orchestrator does, export, return (path, details, rewritten model)."""
    model, _ = apply_rewrites(model, rewrites)
    work = tmp_path_factory.mktemp(f"tflite-{precision}")
    calibration = calibration_images(SIZE, count=4) if precision.startswith("int8") else None
    job = ExportJob(model, SIZE, SIZE, precision, calibration, work)
    path = work / (f"student_{precision}" + FORMATS["tflite"].suffix)
    return path, tflite.export(job, path), model


def psnr_on_photos(path, model) -> np.ndarray:
    images = verification_images(SIZE)
    with torch.no_grad():
        reference = model(images).numpy()
    session = open_session(path)
    output = session.run(images.numpy())
    mse = ((output - reference) ** 2).reshape(len(images), -1).mean(1)
    return 10 * np.log10(4.0 / np.maximum(mse, 1e-20))


@pytest.fixture(scope="module")
def edge_model():
    return small_generator(upsample="convt4", input_skip=True)


@pytest.fixture(scope="module")
def artifacts(edge_model, tmp_path_factory):
    """precision -> (path, details, model); each precision converted once, lazily."""
    cache = {}

    def get(precision):
        if precision not in cache:
            cache[precision] = export(edge_model, precision, tmp_path_factory)
        return cache[precision]
    return get


def test_fp32_is_nhwc_and_reproduces_torch(artifacts):
    path, details, model = artifacts("fp32")
    session = open_session(path)
    assert session.backend == "litert" and session.input_shape == (1, SIZE, SIZE, 3)
    assert details.layout == "NHWC"
    # the signature is named as in every format; the manifest keeps the file's tensor names too
    assert (details.input_name, details.output_name) == ("image", "output")
    assert details.conversion["io"]["tensors"] == {"input": session.input["name"], "output": session.output["name"]}
    assert set(details.tool_versions) == {"torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert"}
    assert psnr_on_photos(path, model).min() >= 60


def test_fp16_is_close_and_smaller(artifacts):
    path, details, model = artifacts("fp16")
    assert psnr_on_photos(path, model).min() >= 40
    assert path.stat().st_size < artifacts("fp32")[0].stat().st_size
    assert details.conversion["quantization"]["recipe"][0]["algorithm_key"] == "float_casting"


@pytest.mark.parametrize("precision", ["int8", "int8-dynamic", "int8-weight"])
def test_int8_modes_run_and_shrink(artifacts, precision):
    # The 30 dB acceptance threshold is applied by the export command on trained students;
    # random-weight generators only have to give a finite, sane figure here.
    path, details, model = artifacts(precision)
    assert np.isfinite(psnr_on_photos(path, model)).all()
    assert path.stat().st_size < artifacts("fp32")[0].stat().st_size
    name = details.conversion["quantization"]["recipe_name"]
    assert name == tflite.RECIPES[precision] or (precision == "int8" and "accuracy search" in name)


def test_full_integer_int8_has_quantized_io(edge_model, tmp_path_factory, monkeypatch):
    from crd_edge.export import int8_search
    monkeypatch.setattr(int8_search, "AIM_DB", 0.0)  # any full-integer file reaches it
    path, details, _ = export(edge_model, "int8", tmp_path_factory)
    session = open_session(path)
    assert session.input["dtype"] == np.int8 and session.output["dtype"] == np.int8
    found = details.conversion["quantization"]["accuracy_search"]
    assert found["float_layers"] == found["float_ops"] == []


def test_int8_short_of_the_aim_keeps_the_sensitive_layers_in_float(edge_model, tmp_path_factory, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    from crd_edge.export import int8_search
    monkeypatch.setattr(int8_search, "AIM_DB", 200.0)  # never reached: the search goes to its MAC cap
    path, details, model = export(edge_model, "int8", tmp_path_factory)
    found = details.conversion["quantization"]["accuracy_search"]
    assert found["float_ops"] == [int8_search.NON_CONVOLUTIONS] and 0 < found["float_mac_share"] <= 0.5
    io = details.conversion["io"]
    assert (io["input"], io["output"]) == ({"dtype": "float32"}, {"dtype": "float32"})
    # The file: int8 convolutions beside float ones, as many float as the search kept.
    interpreter = Interpreter(model_path=str(path))
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] in ("CONV_2D", "TRANSPOSE_CONV", "DEPTHWISE_CONV_2D")]
    weight = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1}
    kinds = [np.dtype(tensors[op["inputs"][weight[op["op_name"]]]]["dtype"]).name for op in convs]
    assert kinds.count("int8") and kinds.count("float32") == len(found["float_layers"]), kinds
    assert np.isfinite(psnr_on_photos(path, model)).all()


def test_paper_k3_upsampling_needs_the_rewrite(tmp_path_factory):
    paper = small_generator()  # ConvTranspose2d(k3, s2, p1, output_padding=1) upsampling
    with pytest.raises(UserError, match="convtranspose_k3_to_k4") as failure:
        export(paper, "fp32", tmp_path_factory, rewrites=())
    assert "\n" not in str(failure.value) and "model." in str(failure.value)  # names the layers
    path, _, rewritten = export(paper, "fp32", tmp_path_factory)
    assert psnr_on_photos(path, rewritten).min() >= 60


def test_unreadable_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="bad.tflite"):
        open_session(bad)
