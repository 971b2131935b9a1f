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


def _tiny_checkpoint(path):
    """A small student checkpoint at 32 px; returns its model."""
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 32)}, path)
    return model


def test_sizes_are_comma_separated_heights_by_widths():
    assert parse_sizes("256,480x640, 720x1280,256", None) == [(256, 256), (480, 640), (720, 1280)]
    assert parse_sizes(None, (64, 64)) == [(64, 64)]
    with pytest.raises(UserError, match="--size 480x642: the model needs a height and width that are multiples of 4"):
        parse_sizes("256,480x642", None)


@pytest.mark.slow
def test_export_at_two_sizes_then_bench_gives_a_cost_per_pixel_table(run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _tiny_checkpoint(tmp_path / "c.pt")
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


def test_dynamic_check_sizes_are_the_model_size_and_two_others():
    from crd_edge.export import dynamic_check_sizes, is_dynamic
    assert dynamic_check_sizes(256, 256) == [(256, 256), (192, 320), (320, 192)]
    assert dynamic_check_sizes(32, 32) == [(32, 32), (24, 40), (40, 24)]
    assert is_dynamic("Dynamic") and not is_dynamic("256") and not is_dynamic(None)


@pytest.mark.slow
def test_a_dynamic_export_runs_at_any_size_and_is_verified_at_three(run_cli, tmp_path):
    """``--size dynamic``: one file whose height and width are named dimensions, verified at the
    model's size and a landscape and a portrait one; a target without dynamic sizes is skipped
    with its reason, or refused before any work when it is the only one asked for."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    from crd_edge.runtime.model import open_model
    model = _tiny_checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("export", tmp_path / "c.pt", "--target", "onnx,tflite", "--size", "dynamic",
                             "--out", tmp_path / "exp", "--json")
    assert code == 0, err
    results = {r.get("path") or r["target"]: r for r in json.loads(out)}
    assert results["tflite"]["status"] == "skipped" and "no dynamic height and width" in results["tflite"]["reason"]
    record = results["student_dynamic_fp32.onnx"]
    assert record["input"]["shape"] == [1, 3, "height", "width"] == record["output"]["shape"]
    verification = record["verification"]
    assert verification["status"] == "passed" and set(verification["psnr_db_min_by_size"]) == {"32x32", "24x40", "40x24"}
    opened = open_model(tmp_path / "exp" / "student_dynamic_fp32.onnx")
    assert opened.static_size is None  # the demo feeds it frames at their own size
    x = torch.rand(1, 3, 40, 56) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(opened.run(x.numpy()) - expected).max() < 1e-4
    code, _, err = run_cli("export", tmp_path / "c.pt", "--target", "tflite", "--size", "dynamic", "--out",
                           tmp_path / "none")
    assert code == 2 and "--size dynamic: tflite exports fixed sizes only" in err and not (tmp_path / "none").exists()


@pytest.mark.slow
def test_bench_times_a_dynamic_artifact_at_each_size_asked(run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _tiny_checkpoint(tmp_path / "c.pt")
    assert run_cli("export", tmp_path / "c.pt", "--size", "dynamic", "--out", tmp_path / "exp")[0] == 0
    code, _, err = run_cli("bench", tmp_path / "exp", "--size", "32x32,48x64", "--runs", 3, "--max-seconds", 1,
                           "--no-roofline", "--no-op-profile")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "exp" / "bench" / "results.jsonl").read_text().splitlines()]
    assert sorted(tuple(r["input_size"]) for r in rows) == [(32, 32), (48, 64)]
    # end to end is frame in, frame out at the size asked: camera frames of that size, not VGA
    assert all(r["prepost_ms"]["frame"] == r["input_size"] for r in rows)
    report = (tmp_path / "exp" / "bench" / "report.md").read_text()
    assert "## Cost against pixels" in report and "| 48x64 |" in report
