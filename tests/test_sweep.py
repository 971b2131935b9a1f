"""`crd-edge sweep`: the student family exported and measured, one table that later runs extend."""

import json

import pytest

from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.models.family import FAMILY_BASE, Member, family_grid

pytestmark = pytest.mark.slow

ARGS = ["--blocks", "1", "--target", "onnx", "--size", "32", "--runs", "3", "--max-seconds", "0.2"]


def test_members_are_the_family_base_at_other_sizes():
    default = create_model(FAMILY_BASE)
    member = create_model(FAMILY_BASE, **Member(16, 9, "dw").kwargs())
    assert default.crd_spec == member.crd_spec  # w16-b9-dw is the family base itself
    assert Member(24, 6, "conv").name == "w24-b6-conv"
    assert [m.name for m in family_grid([16, 8], [3], ["dw", "conv"])] == ["w8-b3-conv", "w8-b3-dw", "w16-b3-conv",
                                                                        "w16-b3-dw"]
    plain, separable = (sum(p.numel() for p in create_model(FAMILY_BASE, **Member(16, 3, b).kwargs()).parameters())
                        for b in ("conv", "dw"))
    assert plain > 2 * separable
    with pytest.raises(UserError, match="--block sep: expected one of dw, conv"):
        family_grid([8], [3], ["sep"])


def test_wide_middle_and_shuffle_ends_are_members_too():
    import torch
    from torch import nn

    assert [m.name for m in family_grid([16], [3], ["conv"], [64, 96], ["conv7", "shuffle"])] == [
        "w16-b3-conv", "w16-b3-conv-shuffle", "w16-m96-b3-conv", "w16-m96-b3-conv-shuffle"]  # m64 = 4 x 16
    wide = create_model(FAMILY_BASE, **Member(16, 3, "conv", 96).kwargs())
    assert max(m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)) == 96
    # shuffle: not one convolution runs at the input's resolution, and the output keeps its size
    shuffle = create_model(FAMILY_BASE, **Member(16, 9, "dw", ends="shuffle").kwargs()).eval()
    sizes = []
    for m in shuffle.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert shuffle(x).shape == x.shape and max(sizes) == 32
    with pytest.raises(UserError, match="--ends full: expected one of conv7, shuffle"):
        family_grid([8], [3], ["dw"], ends=["full"])


def test_sweep_measures_each_member_once_and_extends_the_table(run_cli, tmp_path):
    out = tmp_path / "sweep"
    code, stdout, err = run_cli("sweep", "--widths", "8,12", *ARGS, "--out", out)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert [(r["member"]["name"], r["status"], r["artifact"]["target"]) for r in rows] == [
        ("w8-b1-dw", "measured", "onnx"), ("w12-b1-dw", "measured", "onnx")]
    assert rows[0]["model"]["macs_true"] < rows[1]["model"]["macs_true"] and rows[0]["input_size"] == [32, 32]
    assert "| w8-b1-dw | 8 | 32 | 1 | dw |" in stdout and "onnxruntime fp32 ms" in stdout
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A wider sweep measures only the new member; the table holds all three.
    code, out_json, err = run_cli("sweep", "--widths", "8,12,16", *ARGS, "--out", out, "--json")
    assert code == 0 and "2 already measured" in err
    assert len((out / "sweep.jsonl").read_text().splitlines()) == 3
    assert [r["member"]["name"] for r in json.loads(out_json)] == ["w8-b1-dw", "w12-b1-dw", "w16-b1-dw"]
    assert "| w16-b1-dw |" in (out / "sweep.md").read_text()
    # Another target for one member: only its new artifact is measured, the onnx row is kept.
    code, _, err = run_cli("sweep", "--widths", "8", *ARGS[:2], "--target", "onnx,openvino", *ARGS[4:], "--out", out)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert [(r["member"]["name"], r["artifact"]["target"]) for r in rows[3:]] == [("w8-b1-dw", "openvino")]


def test_a_table_from_another_machine_is_not_this_machines_latency(run_cli, tmp_path):
    from crd_edge.bench.sweep import choose_student

    out = tmp_path / "sweep"
    assert run_cli("sweep", "--widths", "8", *ARGS, "--out", out)[0] == 0
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    for r in rows:  # as if measured on another computer and copied here
        r["device"]["processor"] = "Some Other CPU"
    (out / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match="nothing measured on local \\(this machine\\)"):
        choose_student(out, 1e6)
    code, _, err = run_cli("sweep", "--widths", "8", *ARGS, "--out", out)
    assert code == 0 and "0 already measured" in err  # measured again, here
    assert choose_student(out, 1e6).chosen.name == "w8-b1-dw"


def test_a_latency_budget_picks_the_largest_member_within_it_and_says_why(run_cli, tmp_path, tiny_teacher):
    sweep = tmp_path / "sweep"
    assert run_cli("sweep", "--widths", "8,12", *ARGS, "--out", sweep)[0] == 0
    rows = [json.loads(line) for line in (sweep / "sweep.jsonl").read_text().splitlines()]
    generous = max(r["latency_ms"]["p50"] for r in rows) + 1000
    sets = [f"teacher.source={tiny_teacher}", "data.size=64", "data.load_size=72", "data.test_size=64",
            "data.views=64", "data.batch_size=2"]
    code, out, err = run_cli("distill", "--latency-budget", f"{generous}ms", "--latency-table", sweep, "--steps", 2,
                             "--runs-dir", tmp_path / "runs", "--name", "chosen", "--json",
                             *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    assert "student: w12-b1-dw" in err  # the most MACs within the budget
    run = tmp_path / "runs" / "chosen"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["student"]["kwargs"]["ngf"] == 12 and summary["student"]["kwargs"]["n_blocks"] == 1
    selection = summary["student"]["selection"]
    assert selection["chosen"]["name"] == "w12-b1-dw" and selection["runner_up"]["name"] == "w8-b1-dw"
    report = (run / "report.md").read_text()
    assert "## Why this student" in report and "Runner-up: w8-b1-dw" in report
    assert "![latency against MACs, with the budget](latency_choice.png)" in report
    assert (run / "latency_choice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Too tight a budget: one line naming the fastest member, before any run folder.
    code, _, err = run_cli("distill", "--latency-budget", "0.0001ms", "--latency-table", sweep,
                           "--runs-dir", tmp_path / "runs2")
    assert code == 2 and "--latency-budget 0.0001ms: no member" in err and "the fastest" in err
    assert not (tmp_path / "runs2").exists()
