"""`crd-edge ablate` on tiny settings: every variant trains with its own loss terms (and only
those), is scored against the teacher, and lands in the table, the JSON lines and the plot;
a second call reuses the finished runs."""

import json

import pytest

from crd_edge.training.ablation import VARIANTS, render_table

pytestmark = pytest.mark.slow

TINY = ["--set", "student.arch=mobile_resnet_9blocks", "--set", "student.kwargs.ngf=8",
        "--set", "data.size=32", "--set", "data.load_size=32", "--set", "data.test_size=32",
        "--set", "train.sample_every=1000", "--set", "train.save_every=1000", "--set", "data.views=0",
        "--set", "data.batch_size=1"]


def test_ablation_trains_scores_and_reports_each_variant(run_cli, tmp_path, tiny_teacher):
    out = tmp_path / "abl"
    args = ["ablate", "--out", out, "--variant", "l1", "--variant", "crd-patches", "--steps", 2,
            "--eval-crop", 64, "--set", f"teacher.source={tiny_teacher}", *TINY]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["l1", "crd-patches"]
    assert all(r["images"] == 30 and r["psnr"] > 0 and r["fid"] is not None for r in rows)  # 3 photos x 10 crops
    assert rows[0]["copy_psnr"] == rows[1]["copy_psnr"] > 0  # the same crops and teacher for every variant
    terms = {r["variant"]: json.loads((tmp_path / "abl" / "runs" / f"{r['variant']}-s0" / "summary.json").read_text())
             ["loss_terms"] for r in rows}
    assert terms["l1"] == ["pixel_l1"]
    assert {"crd_rows", "crd_columns", "pixel_l1"} <= set(terms["crd-patches"])
    assert not {"crd_patches", "style", "feature"} & set(terms["crd-patches"])
    # the VGG terms only where a variant names them; every variant sets every weight
    assert [v for v in VARIANTS if VARIANTS[v]["loss.style"] > 0] == ["l1+perceptual", "crd+perceptual", "paper"]
    assert all({"loss.crd_rows", "loss.crd_patches", "loss.style", "loss.feature"} <= set(w) for w in VARIANTS.values())
    assert "| l1 |" in stdout and (out / "ablation.md").is_file() and (out / "ablation.png").stat().st_size > 1000
    code, out, err = run_cli(*args, "--json")  # finished runs are reused, not retrained
    assert code == 0 and err.count("reused") == 2
    assert [r["variant"] for r in json.loads(out)["rows"]] == ["l1", "crd-patches"]


def test_table_shows_mean_and_spread_over_seeds():
    rows = [{"variant": "crd", "seed": s, "steps": 10, "images": 30, "psnr": p, "ssim": 0.5, "vgg_dist": 0.1,
             "fid": 50.0, "heldout_psnr_whole": p, "heldout_copy_psnr_whole": 20.0, "copy_psnr": 19.5} for s, p in ((0, 24.0), (1, 26.0))]
    table = render_table(rows)
    assert "| crd | 25.00 ± 1.41 |" in table and "seeds 0, 1" in table and "19.50 dB on the crops" in table


def test_unknown_variant_is_one_line(run_cli, tmp_path):
    code, _, err = run_cli("ablate", "--out", tmp_path, "--variant", "crd-everything")
    assert code == 2 and "unknown" in err and all(v in err for v in VARIANTS)
