"""Counting for `crd-edge profile` and `crd-edge bench`: activation memory of torch modules,
params / MACs / activation memory read from ONNX graphs, closed-form values on tiny graphs and
the same figures from a model and from its export."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from crd_edge.analysis.macs import count_macs, count_params
from crd_edge.analysis.memory import count_activations
from crd_edge.analysis.onnx_counts import count_onnx
from crd_edge.errors import UserError
from crd_edge.export.rewrites import apply_rewrites
from crd_edge.models import LITE_STUDENT, create_model

F32 = 4  # bytes


def conv_relu_conv(inplace: bool) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(8, 4, 3, padding=1))


def to_onnx(model: nn.Module, shape, path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(shape),), str(path), input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False, **kwargs)
    return path


# -- torch: activation memory -------------------------------------------------------------------

@pytest.mark.parametrize("inplace", [False, True])
def test_activation_memory_closed_form(inplace):
    """conv1 (8 ch) -> ReLU -> conv2 (4 ch) at 16x16: while the ReLU runs, conv1's output and
    the ReLU's are alive (an in-place ReLU makes no tensor); conv1's goes before conv2 runs."""
    pixels = 16 * 16
    c1, relu, c2 = 8 * pixels * F32, 8 * pixels * F32, 4 * pixels * F32
    m = count_activations(conv_relu_conv(inplace), (1, 3, 16, 16))
    if inplace:
        assert (m.peak_bytes, m.total_bytes) == (c1 + c2, c1 + c2)
    else:
        assert (m.peak_bytes, m.total_bytes) == (max(c1 + relu, relu + c2), c1 + relu + c2)
    assert m.input_bytes == 3 * pixels * F32  # counted apart, not in the peak
    double = count_activations(conv_relu_conv(inplace), (1, 3, 32, 32))
    assert (double.peak_bytes, double.total_bytes, double.input_bytes) == (
        4 * m.peak_bytes, 4 * m.total_bytes, 4 * m.input_bytes)


def test_views_parameters_and_input_are_not_activations():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.register_buffer("table", torch.ones(1000))

        def forward(self, x):
            x = x.flatten(2)[:, :, :64]  # views of the input: nothing new
            return self.conv(x.view(1, 3, 8, 8)).flatten(1)  # one conv output, then a view of it

    m = count_activations(Net(), (1, 3, 8, 8))
    assert m.peak_bytes == m.total_bytes == 2 * 64 * F32


def test_peak_matches_torch_mem_tracker():
    """torch's own (private) MemTracker, forward-pass ACT peak, on the default student."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    model, x = create_model(LITE_STUDENT).eval(), torch.zeros(1, 3, 64, 64)
    tracker = mem_tracker.MemTracker()
    tracker.track_external(model, x)
    with tracker, torch.no_grad():
        model(x)
    acts = {str(k): v for k, v in tracker.get_tracker_snapshot("peak")[torch.device("cpu")].items()}
    assert count_activations(model, (1, 3, 64, 64)).peak_bytes == acts["_MemRefType.ACT"]


# -- ONNX: tiny graphs ----------------------------------------------------------------------------

def hand_graph(nodes, inits, in_shape, out_name="y", out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
                              initializer=[numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_conv_relu_conv_closed_form():
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),   # an alias: no new bytes
             helper.make_node("Reshape", ["flat", "back"], ["r2"]),
             helper.make_node("Conv", ["r2", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    model = hand_graph(nodes, [("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (4, 8, 3, 3)), ("b2", (4,))], [1, 3, 16, 16])
    model.graph.initializer.extend([numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
                                    numpy_helper.from_array(np.array([1, 8, 16, 16], np.int64), "back")])
    c = count_onnx(model)
    pixels = 16 * 16
    assert c.macs.params == 8 * 27 + 8 + 4 * 72 + 4  # the int64 shape vectors are not parameters
    assert c.macs.conv_macs == c.macs.paper_macs == pixels * (8 * 27 + 4 * 72) and c.macs.norm_ops == 0
    c1, relu, c2 = 8 * pixels * F32, 8 * pixels * F32, 4 * pixels * F32
    assert (c.memory.peak_bytes, c.memory.total_bytes) == (max(c1 + relu, relu + c2), c1 + relu + c2)
    assert c.memory.input_bytes == 3 * pixels * F32 and c.folded == ()


def test_onnx_dynamic_input_needs_a_size_and_scales():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    model = hand_graph(nodes, [("w", (4, 3, 3, 3))], ["batch", 3, "height", "width"])
    with pytest.raises(UserError, match="dynamic dimensions; give a size"):
        count_onnx(model)
    small, large = count_onnx(model, 16), count_onnx(model, (32, 32))
    assert small.macs.input_shape == (1, 3, 16, 16) and large.macs.input_shape == (1, 3, 32, 32)
    assert small.macs.conv_macs == 16 * 16 * 4 * 27 and large.macs.conv_macs == 4 * small.macs.conv_macs
    assert large.memory.peak_bytes == 4 * small.memory.peak_bytes == 4 * 16 * 16 * 4 * F32


@pytest.mark.parametrize("module,shape", [
    (conv_relu_conv(False), (1, 3, 16, 16)),
    (nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), (1, 8, 16, 16)),  # paper = 4x true
    (nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.InstanceNorm2d(4)), (1, 3, 10, 10)),   # 4 ops/element
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, affine=True)), (1, 3, 10, 10)),  # 5
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.ReLU(), nn.BatchNorm2d(4)), (1, 4, 10, 10)),  # 2 at inference
    (nn.Sequential(nn.Flatten(), nn.Linear(48, 10)), (1, 3, 4, 4)),                        # Gemm
])
def test_onnx_counts_equal_torch_counts(tmp_path, module, shape):
    torch.manual_seed(0)
    torch_macs = count_macs(module, shape)
    counts = count_onnx(to_onnx(module, shape, tmp_path / "m.onnx"))
    assert counts.macs == torch_macs
    assert counts.graph_params == torch_macs.params and counts.graph_conv_macs == torch_macs.conv_macs


def test_onnx_transposed_conv_conventions(tmp_path):
    counts = count_onnx(to_onnx(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
                                (1, 8, 16, 16), tmp_path / "t.onnx")).macs
    assert counts.conv_macs == 16 * 16 * 8 * 4 * 9 and counts.paper_macs == 4 * counts.conv_macs


def test_reflect_pads_as_pad_or_slices_count_the_same_macs(tmp_path):
    model = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 4, 7), nn.ReLU()).eval()
    sliced, _ = apply_rewrites(model, ("reflect_pad_to_slices",))
    a = count_onnx(to_onnx(model, (1, 3, 16, 16), tmp_path / "pad.onnx"))
    b = count_onnx(to_onnx(sliced, (1, 3, 16, 16), tmp_path / "slices.onnx"))
    assert a.macs == b.macs == count_macs(model, (1, 3, 16, 16))
    padded = 3 * 22 * 22 * F32
    assert a.memory.total_bytes == padded + 2 * 4 * 16 * 16 * F32   # pad, conv, relu
    assert b.memory.total_bytes > a.memory.total_bytes              # one-pixel slices and concats


# -- the default student through the project's ONNX export path -----------------------------------

@pytest.fixture(scope="module")
def student_export(tmp_path_factory):
    from crd_edge.export import onnx as onnx_target
    from crd_edge.export.base import ExportJob
    root = tmp_path_factory.mktemp("counts")
    torch.manual_seed(0)
    # The InstanceNorm student: its norms exercise the norm-op counts, and with no in-place ReLU
    # after a conv its activation peak is the same in torch and ONNX.
    model = create_model("mobile_resnet_9blocks_ngf16_edge").eval()
    rewritten, applied = apply_rewrites(model, onnx_target.REWRITES)
    assert applied == [{"name": "narrow_conv_to_space_to_depth", "layers": 1}]
    path = root / "student_64_fp32.onnx"
    onnx_target.write_fp32(ExportJob(rewritten, 64, 64, "fp32", None, root), path)
    return model, rewritten, path


def test_student_export_counts_like_the_torch_model(student_export):
    model, rewritten, path = student_export
    shape = (1, 3, 64, 64)
    counts, torch_macs = count_onnx(path), count_macs(model, shape)
    # The space-to-depth last conv is counted as the 7x7 conv it replaces: all figures exact.
    assert counts.macs == torch_macs
    assert len(counts.folded) == 1 and counts.folded[0].startswith("narrow_conv_to_space_to_depth: ")
    assert counts.folded[0].endswith("model.26/strided/Conv")
    # What the file executes and stores: the rewritten torch model (which also keeps the original
    # conv as an unused submodule; its 48-value bias is a buffer there, an initializer here).
    executed = count_macs(rewritten, shape)
    last = rewritten.model[26]
    assert counts.graph_conv_macs == executed.conv_macs == torch_macs.conv_macs + 64 * 64 * 3 * 16 * (100 - 49)
    assert counts.graph_params == executed.params - count_params(last.original) + last.bias.numel()
    # Activations: the same peak; ONNX has no in-place ReLU, so its total holds their outputs too.
    torch_mem = count_activations(model, shape)
    assert counts.memory.peak_bytes == torch_mem.peak_bytes and counts.memory.input_bytes == torch_mem.input_bytes
    assert torch_mem.total_bytes < counts.memory.total_bytes < 1.3 * torch_mem.total_bytes


def test_default_student_export_counts_like_the_torch_model(tmp_path):
    # No norms, zero padding: the space-to-depth rewrite keeps the last conv's zero padding.
    from crd_edge.export import onnx as onnx_target
    from crd_edge.export.base import ExportJob
    model = create_model(LITE_STUDENT).eval()
    rewritten, applied = apply_rewrites(model, onnx_target.REWRITES)
    assert applied == [{"name": "narrow_conv_to_space_to_depth", "layers": 1}]
    onnx_target.write_fp32(ExportJob(rewritten, 64, 64, "fp32", None, tmp_path), tmp_path / "lite.onnx")
    counts = count_onnx(tmp_path / "lite.onnx")
    assert counts.macs == count_macs(model, (1, 3, 64, 64)) and counts.macs.norm_ops == 0
    assert len(counts.folded) == 1 and counts.graph_conv_macs > counts.macs.conv_macs


def test_student_fp16_and_int8_exports(student_export, tmp_path):
    from crd_edge.export import onnx as onnx_target
    model, _, path = student_export
    fp32 = count_onnx(path)
    onnx_target.to_fp16(path, tmp_path / "fp16.onnx")
    fp16 = count_onnx(tmp_path / "fp16.onnx")
    assert fp16.macs == fp32.macs and fp16.folded == fp32.folded
    assert fp16.memory.peak_bytes == fp32.memory.peak_bytes // 2 and fp16.memory.input_bytes == fp32.memory.input_bytes
    onnx_target.to_int8(path, tmp_path / "int8.onnx", torch.rand(1, 3, 64, 64) * 2 - 1)
    int8 = count_onnx(tmp_path / "int8.onnx")  # QDQ: weights int8, scales not parameters
    assert int8.macs == fp32.macs and int8.graph_params == fp32.graph_params


# -- wiring: profile and bench --------------------------------------------------------------------

def test_profile_reads_onnx_files_and_prints_activations(run_cli, student_export):
    _, _, path = student_export
    code, out, err = run_cli("profile", path, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params"] == 155_267 and report["input_shape"] == [1, 3, 64, 64] and report["act_peak_bytes"] > 0
    code, out, _ = run_cli("profile", path)
    assert code == 0 and "MACs (paper)" in out and "activations   peak" in out and "as stored" in out
    code, out, _ = run_cli("profile", "mobile_resnet_9blocks_ngf8", "--size", 64)
    assert code == 0 and "activations   peak" in out and "MACs (true)" in out
    code, _, err = run_cli("profile", path.parent / "missing.onnx")
    assert code == 2 and "no such ONNX file" in err


def test_bench_counts_a_bare_onnx_from_its_graph(student_export, tmp_path):
    from crd_edge.artifacts import find_artifacts as collect
    from crd_edge.bench.run import model_counts
    model, _, path = student_export
    bare = tmp_path / "bare.onnx"
    shutil.copy(path, bare)  # no manifest beside it: no architecture to count
    (item,) = collect(bare)
    counts = model_counts(item, (64, 64))
    torch_macs = count_macs(model, (1, 3, 64, 64))
    assert counts["counted_from"] == "onnx" and counts["params"] == torch_macs.params
    assert counts["macs_true"] == torch_macs.true_macs and counts["macs_paper"] == torch_macs.paper_macs
    assert counts["act_peak_bytes"] == count_activations(model, (1, 3, 64, 64)).peak_bytes
    item.record = {"source": {"arch": "mobile_resnet_9blocks", "kwargs": {"ngf": 8, "n_blocks": 2}}}
    counts = model_counts(item, (64, 64))
    assert counts["counted_from"] == "torch" and counts["act_total_bytes"] > counts["act_peak_bytes"] > 0


def test_report_shows_activation_memory():
    from crd_edge.bench.records import BenchRow
    from crd_edge.bench.results import render_markdown
    row = BenchRow.from_json({"status": "measured", "artifact": {"name": "s.onnx", "role": "student", "precision": "fp32"}, "runtime": "onnxruntime",
           "threads": 2, "input_size": [64, 64], "latency_ms": {"p50": 2.0, "p90": 2.5},
           "model": {"params": 10, "macs_true": 2e9, "act_peak_bytes": 9_373_952}})
    report = render_markdown([row], [])
    assert "| true GMACs | act. MB |" in report and "| 10 | 2.000 | 9.4 | 2.0 |" in report


def test_plots_mark_failed_and_unverified_artifacts(tmp_path, monkeypatch):
    from crd_edge.bench import results
    from crd_edge.bench.records import BenchRow

    def row(name, precision, status, psnr=None):
        return BenchRow.from_json({"status": "measured", "artifact": {"name": name, "role": "student", "precision": precision, "verification_status": status,
                             "verification_psnr_db": psnr},
                "runtime": "openvino", "threads": 2, "input_size": [64, 64], "latency_ms": {"p50": 2.0, "p90": 2.5},
                "model": {"params": 10, "macs_true": 2e9}})
    rows = [row("a.openvino", "fp32", "passed"), row("b.openvino", "int8", "failed", 29.21),
            row("c.onnx", "fp16", None), row("d.mlpackage", "fp32", "spec-verified")]
    assert [r.artifact.unverified_note() for r in rows] == ["", " [failed 29.2 dB]", " [unverified]",
                                                           " [spec-verified]"]
    drawn = []
    import matplotlib.axes
    original = matplotlib.axes.Axes.barh
    monkeypatch.setattr(matplotlib.axes.Axes, "barh", lambda self, labels, *a, **k: drawn.append(list(labels))
                        or original(self, labels, *a, **k))
    written = results.plot(rows, tmp_path)
    assert [p.name for p in written] == ["latency_vs_macs.png", "latency.png"]
    assert drawn == [["student openvino fp16 [unverified]", "student openvino fp32 (a.openvino)",
                      "student openvino fp32 (d.mlpackage) [spec-verified]", "student openvino int8 [failed 29.2 dB]"]]
