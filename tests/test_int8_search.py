"""Accuracy-aware int8 (crd_edge.export.int8_search): the sensitivity ranking, the search for the
fewest float layers, and each target keeping the chosen layers in float."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from crd_edge.export import int8_search
from crd_edge.export.int8_search import CONVOLUTION_OUTPUTS, NON_CONVOLUTIONS, NORM_INPUTS, rank_layers, search


class TwoConvs(nn.Module):
    """``wide`` reads an input with one huge outlier channel: rounding that input to 8 bits over
    its whole range loses the small values, so it is the sensitive layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.narrow = nn.Conv2d(3, 4, 3, padding=1)
        self.wide = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = self.narrow(x)
        y = y * torch.tensor([1.0, 1.0, 1.0, 500.0]).view(1, 4, 1, 1)
        return torch.tanh(self.wide(y) / 100)


def test_the_ranking_puts_the_layer_with_the_wide_input_first():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    layers = rank_layers(TwoConvs().eval(), images)
    assert [layer.key for layer in layers] == ["wide", "narrow"]
    assert layers[0].psnr_db < layers[1].psnr_db
    # MACs per image: kernel x in x out x output pixels.
    assert {layer.key: layer.macs for layer in layers} == {"narrow": 9 * 3 * 4 * 256, "wide": 4 * 3 * 256}


class Stack(nn.Module):
    def __init__(self, n=8):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1) for _ in range(n))

    def forward(self, x):
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return x


def _fake_target(error_per_int8_layer, n=8):
    """A target whose output error shrinks with each layer kept in float, as a real one's does."""
    model = Stack(n).eval()
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        reference = model(images).numpy()
    calls = []

    def quantize(keys):
        calls.append(list(keys))
        return len(keys)  # stands for the written artifact

    def run(float_count, batch):
        int8_layers = n + 1 - float_count  # n convolutions plus the lead unit
        return reference + error_per_int8_layer * int8_layers * np.sign(np.random.default_rng(0).normal(size=reference.shape))

    return model, images, quantize, run, calls


def test_the_search_finds_the_fewest_float_layers_that_reach_the_aim():
    # PSNR = 10 log10(4 / e^2): 40 dB needs an error of at most 0.02, here 0.0035 per int8 unit: at
    # most 5 of the 9 units (lead + 8 convs) left in int8, so 4 in float.
    model, images, quantize, run, calls = _fake_target(0.0035)
    chosen, record = search(model, images, quantize, lead=(NON_CONVOLUTIONS,), run=run)
    assert calls[0] == []  # all-int8 first
    # Each conv has the same MACs: at most half of them (4 of 8) in float, with the lead unit 5 units.
    assert record["max_float_mac_share"] == 0.5
    assert record["float_ops"] == [NON_CONVOLUTIONS] and len(record["float_layers"]) == 3 and chosen == 4
    assert record["psnr_db_mean"] >= 40 and record["float_mac_share"] == pytest.approx(3 / 8)
    # All int8, the lead unit, then 1, 2 and 4 ranked layers more (the cap), then the bisection.
    assert [t["float_units"] for t in record["tried"]] == [0, 1, 2, 3, 4, 5]
    assert set(record["sensitivity_db"]) == {f"convs.{i}" for i in range(8)}


def test_the_search_goes_on_until_the_worst_photo_reaches_its_aim_too():
    # Three of four photos are exact; the fourth's error shrinks with each float unit. The mean
    # reaches 40 dB long before the worst photo reaches 36 dB: the worst one decides.
    model, images, quantize, _, calls = _fake_target(0.0)
    with torch.no_grad():
        reference = model(images).numpy()

    def run(float_count, batch):
        out = reference.copy()
        out[0] += 0.004 * (9 - float_count)  # PSNR 10 log10(4 / e^2): 36 dB needs e <= 0.0317
        return out

    chosen, record = search(model, images, quantize, lead=(NON_CONVOLUTIONS,), run=run)
    assert record["aim_worst_db"] == int8_search.AIM_WORST_DB == 36.0
    assert record["tried"][0]["psnr_db_mean"] >= 40 > 36 > record["tried"][0]["psnr_db_min"]
    assert chosen == 2 and record["psnr_db_min"] >= 36  # 0.004 x 7 = 0.028
    assert [t["float_units"] for t in record["tried"]] == [0, 1, 2]


def test_a_model_that_passes_all_int8_is_not_searched():
    model, images, quantize, run, calls = _fake_target(0.0001)
    chosen, record = search(model, images, quantize, lead=(NON_CONVOLUTIONS,), run=run)
    assert calls == [[]] and chosen == 0 and record["float_layers"] == record["float_ops"] == []
    assert "sensitivity_db" not in record


def test_the_search_stops_at_half_the_macs_in_float_and_keeps_the_best_it_found():
    model, images, quantize, run, calls = _fake_target(0.05)  # 40 dB would need nearly all in float
    chosen, record = search(model, images, quantize, lead=(NON_CONVOLUTIONS,), run=run)
    assert record["psnr_db_mean"] < 40 and record["float_mac_share"] <= 0.5
    assert chosen == max(t["float_units"] for t in record["tried"]) == 5  # lead + 4 of 8 equal convs


@pytest.fixture
def checkpoint(tmp_path):
    from crd_edge._io import atomic_torch_save
    from crd_edge.checkpoint import student_record
    from crd_edge.models import create_model
    torch.manual_seed(0)
    model = create_model("resnet_9blocks_inherited").eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 64)}, tmp_path / "c.pt")
    return tmp_path / "c.pt"


def _float_convs_in_onnx(path):
    """Conv nodes whose weight is not behind a DequantizeLinear: computed in float."""
    import onnx
    graph = onnx.load(str(path)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    return {node.input[1].removesuffix(".weight").removesuffix("_DequantizeLinear_Output")
            for node in graph.node if node.op_type in ("Conv", "ConvTranspose") and node.input[1] not in dequantized}


def test_onnx_int8_keeps_the_searched_layers_in_float(run_cli, checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    # An aim this high makes the search keep layers in float even on a small model.
    monkeypatch.setattr(int8_search, "AIM_DB", 200.0)
    code, out, err = run_cli("export", checkpoint, "--out", tmp_path / "exp", "--precision", "int8")
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    found = record["conversion"]["accuracy_search"]
    assert found["float_ops"] == [CONVOLUTION_OUTPUTS] and 0 < found["float_mac_share"] <= 0.5
    convs = len(found["float_layers"])
    assert f"{CONVOLUTION_OUTPUTS} + {convs} convs in float" in out + err  # the verification table says so
    float_convs = set(found["float_layers"])
    assert float_convs and float_convs <= _float_convs_in_onnx(tmp_path / "exp" / "student_64_int8.onnx")
    ranked = sorted(found["sensitivity_db"], key=found["sensitivity_db"].get)
    assert found["float_layers"] == ranked[:len(float_convs)]  # the most sensitive ones
    assert record["verification"]["status"] == ("passed" if record["verification"]["psnr_db_min"] >= 30 else "failed")


def test_openvino_int8_keeps_the_searched_layers_in_float(run_cli, checkpoint, tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    monkeypatch.setattr(int8_search, "AIM_DB", 200.0)
    run_cli("export", checkpoint, "--out", tmp_path / "exp", "--target", "openvino", "--precision", "int8")
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    found = record["conversion"]["accuracy_search"]
    assert found["float_ops"] == [NORM_INPUTS]  # NNCF's other int8 inputs are the convolutions' own
    model = ov.Core().read_model(str(tmp_path / "exp" / "student_64_int8.openvino" / "model.xml"))
    float_convs = {key for key, name in _weights_of_convs(model).items() if name == "Constant"}
    assert set(found["float_layers"]) <= float_convs and len(float_convs) < len(_weights_of_convs(model))


def _weights_of_convs(model):
    """Each convolution's weight source type, by friendly name (a float conv reads a Constant)."""
    from crd_edge.export.openvino import CONVOLUTIONS
    kinds = {}
    for op in model.get_ops():
        if op.get_type_name() in CONVOLUTIONS:
            source = op.input_value(1).get_node()
            name = source.get_friendly_name() if source.get_type_name() == "Constant" else op.get_friendly_name()
            kinds[name.removesuffix(".weight")] = source.get_type_name()
    return kinds


def test_litert_names_every_convolution_so_the_search_can_keep_it_in_float(tmp_path):
    """LiteRT's selective quantisation finds a layer by a regex over tensor names that
    litert-torch derives from the module path: each convolution of the exported student must
    match some tensor of the converted file, and the file's signature is named as in every
    other format (``image`` in, ``output`` out)."""
    pytest.importorskip("litert_torch")
    import re

    from ai_edge_litert.interpreter import Interpreter
    from torch import nn

    from crd_edge.export import tflite
    from crd_edge.export.base import ExportJob
    from crd_edge.export.rewrites import apply_rewrites
    from crd_edge.models import create_model
    torch.manual_seed(0)
    model, _ = apply_rewrites(create_model("resnet_9blocks_inherited").eval(), tflite.REWRITES)
    job = ExportJob(model, 64, 64, "fp32", None, tmp_path, {})
    tflite._convert(job, tmp_path / "m.tflite")
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["output"]}}
    names = [t["name"] for t in interpreter.get_tensor_details()]
    called = []  # the convolutions that run (a rewrite keeps the layer it replaced, unused)
    hooks = [m.register_forward_hook(lambda m, i, o, key=key: called.append(key))
             for key, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(job.example())
    for hook in hooks:
        hook.remove()
    convs = list(dict.fromkeys(called))
    unmatched = [key for key in convs if not any(re.search(tflite.scope_regex(model, key), n) for n in names)]
    assert convs and not unmatched
