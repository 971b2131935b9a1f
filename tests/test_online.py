"""The online scheme (teacher trained alongside the student) on tiny CycleGAN and pix2pix data."""

import json

import pytest

pytestmark = pytest.mark.slow


def _online_args(data, runs, recipe, steps, extra=()):
    return ["distill", "--online", "--data", data, "--student", "mobile_resnet_9blocks", "--steps", steps,
            "--size", 64, "--batch-size", 1, "--runs-dir", runs, "--name", recipe, "--quiet",
            "--set", f"teacher.recipe={recipe}", "--set", "teacher.arch=resnet_9blocks",
            "--set", "teacher.kwargs={ngf: 8, n_blocks: 2}", "--set", "student.kwargs.ngf=8",
            "--set", "data.load_size=72", "--set", "data.test_size=64", "--set", "train.log_every=1",
            "--set", "loss.style=0", "--set", "loss.feature=0", *extra]


def test_online_cyclegan_alternates_teacher_and_student_phases(run_cli, unaligned, tmp_path):
    # 2 images per epoch; 1 teacher epoch then 1 student epoch, twice.
    code, _, err = run_cli(*_online_args(unaligned, tmp_path / "runs", "cyclegan", 8,
                                         ["--set", "teacher.save_epoch_freq=1", "--set", "teacher.n_dis=1"]))
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "runs" / "cyclegan" / "metrics.jsonl").read_text().splitlines()]
    teacher_steps = [m["step"] for m in lines if "teacher_cycle" in m]
    student_steps = [m["step"] for m in lines if "crd_rows" in m]
    assert teacher_steps == [1, 2, 5, 6] and student_steps == [3, 4, 7, 8]
    assert all("gan" in m for m in lines if "crd_rows" in m)  # through the teacher's D_B
    summary = json.loads((tmp_path / "runs" / "cyclegan" / "summary.json").read_text())
    assert summary["teacher"]["kind"] == "online" and summary["heldout"]["images"] == 2


def test_online_pix2pix_updates_everything_every_step(run_cli, aligned, tmp_path):
    code, _, err = run_cli(*_online_args(aligned, tmp_path / "runs", "pix2pix", 3,
                                         ["--layout", "aligned", "--set", "loss.crd_patches=0"]))
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "runs" / "pix2pix" / "metrics.jsonl").read_text().splitlines()]
    assert all({"teacher_l1", "teacher_D", "crd_rows", "gan"} <= set(m) for m in lines)


def test_online_recipe_must_match_the_data(run_cli, aligned, tmp_path):
    code, _, err = run_cli(*_online_args(aligned, tmp_path / "runs", "cyclegan", 1, ["--layout", "aligned"]))
    assert code == 2 and "unaligned" in err
