"""research/inherit_compare.py: the table and plot from finished runs (no training here)."""

import json

from research import inherit_compare


def _run(folder, kid, vgg, psnr, step=1500):
    folder.mkdir(parents=True)
    summary = {"run_dir": str(folder), "step": step, "total_steps": 1500, "interrupted": False, "train_seconds": 1.0,
               "heldout": {"student": {"kid": kid, "vgg_dist": vgg, "psnr": psnr},
                           "input": {"kid": 0.01, "vgg_dist": 0.3, "psnr": 21.0}}}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_finished_runs_become_ratios_to_copying_by_photos_and_first_weights(tmp_path):
    runs = tmp_path / "runs"
    _run(runs / "teacher-p205-s0", 0.003, 0.27, 24.0)
    _run(runs / "teacher-p205-s1", 0.005, 0.24, 23.0)
    _run(runs / "random-p205-s0", 0.009, 0.30, 22.0)
    _run(runs / "random-p102-s0", 0.010, 0.30, 21.5, step=700)  # interrupted: not counted
    _run(runs / "other-run", 0.001, 0.1, 30.0)                  # not one of the comparison's names
    rows = inherit_compare.collect(runs)
    assert sorted((r["init"], r["photos"], r["seed"]) for r in rows) == [
        ("random", 205, 0), ("teacher", 205, 0), ("teacher", 205, 1)]
    table = inherit_compare.render(rows)
    assert "| 205 | default | teacher | 0, 1 | 0.40x (0.30x to 0.50x) | 0.85x (0.80x to 0.90x) | +2.50 (+2.00 to +3.00) |" in table
    assert "| 205 | default | random | 0 | 0.90x | 1.00x | +1.00 |" in table
    assert inherit_compare.plot(rows, tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
