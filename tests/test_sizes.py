"""Camera sizes: one export writes and verifies an artifact per size (``--size 256,480x640``),
bench measures each, and the report states the cost against pixels in a table and a plot."""

import json

import pytest
import torch

from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record
from crd_edge.errors import UserError
from crd_edge.export import parse_sizes
from crd_edge.models import create_model


def test_sizes_are_comma_separated_heights_by_widths():
    assert parse_sizes("256,480x640, 720x1280,256", None) == [(256, 256), (480, 640), (720, 1280)]
    assert parse_sizes(None, (64, 64)) == [(64, 64)]
    with pytest.raises(UserError, match="--size 480x642: the model needs a height and width that are multiples of 4"):
        parse_sizes("256,480x642", None)


@pytest.mark.slow
def test_export_at_two_sizes_then_bench_gives_a_cost_per_pixel_table(run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 32)}, tmp_path / "c.pt")
    code, _, err = run_cli("export", tmp_path / "c.pt", "--size", "32,32x48", "--out", tmp_path / "exp")
    assert code == 0, err
    records = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    shapes = {r["path"]: r["input"]["shape"] for r in records}
    assert shapes == {"student_32_fp32.onnx": [1, 3, 32, 32], "student_32x48_fp32.onnx": [1, 3, 32, 48]}
    assert all(r["verification"]["status"] == "passed" for r in records)  # each at its own size
    code, _, err = run_cli("bench", tmp_path / "exp", "--runs", 3, "--max-seconds", 1, "--no-roofline")
    assert code == 0, err
    report = (tmp_path / "exp" / "bench" / "report.md").read_text()
    section = report.split("## Cost against pixels")[1].split("\n## ")[0]
    assert "| student | onnxruntime | fp32 | 32x32 | 0.001 |" in section and "| 32x48 | 0.002 |" in section
    assert (tmp_path / "exp" / "bench" / "latency_vs_pixels.png").is_file()


def test_each_row_is_measured_against_the_ceiling_of_its_own_precision():
    """An int8 row against the fp32 matmul once read 521%: int8 rows (and OpenVINO's fp16, which
    computes in bf16 on AMX CPUs) use their runtime's own ceiling, or show no share at all."""
    from crd_edge.bench.ceilings import measure_ceiling, needs_own_ceiling
    from crd_edge.bench.records import BenchRow
    from crd_edge.bench.results import ceiling_of, efficiency
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    own = measure_ceiling("onnxruntime", "int8", threads=1, seconds=0.2)
    assert own["gmacs_per_s"] > 0 and own["precision"] == "int8" and "QDQ" in own["probe"]
    assert measure_ceiling("onnxruntime", "fp32", threads=1) is None  # fp32 keeps the matmul roofline
    assert needs_own_ceiling("openvino", "fp16") and not needs_own_ceiling("onnxruntime", "fp16")

    def row(runtime, precision, ceiling=None):
        r = {"status": "measured", "runtime": runtime, "artifact": {"name": "m", "precision": precision},
             "roofline_gmacs_per_s": 100.0, "model": {"macs_true": 1e9}, "latency_ms": {"p50": 20.0}}
        return BenchRow.from_json({**r, "ceiling": ceiling} if ceiling else r)
    assert ceiling_of(row("onnxruntime", "fp32")) == 100.0 and efficiency(row("onnxruntime", "fp32")) == 0.5
    assert ceiling_of(row("litert", "int8")) is None and efficiency(row("litert", "int8")) is None
    assert efficiency(row("onnxruntime", "int8", own)) == pytest.approx(50 / own["gmacs_per_s"])
