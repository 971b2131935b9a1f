"""`crd-edge distill` end to end on tiny data: checkpoint, samples, metrics, report, resume,
Ctrl-C, bad input."""

import json

import pytest
import torch

from crd_edge.checkpoint import load_student
from crd_edge.training.progress import TrainProgress

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def eager_crd_kernel(monkeypatch):
    """These runs compare resumed weights bit for bit. The CRD angle kernel is torch.compile'd
    where it can be, else eager (losses._angle_kernel). On a loaded 2-core machine the signal
    tests failed compiled (last-bit differences after resuming, and one crash of the process)
    and passed eager; why the compiled path differs is not yet known. Eager keeps these tests
    about resuming."""
    monkeypatch.setenv("CRD_EDGE_COMPILE", "0")


def tiny_args(runs, name, teacher, steps=6):
    return ["distill", "--teacher", teacher, "--student", "mobile_resnet_9blocks", "--steps", steps,
            "--size", 64, "--runs-dir", runs, "--name", name, "--json",
            "--set", "student.kwargs.ngf=8", "--set", "data.load_size=72", "--set", "data.test_size=64",
            "--set", "data.views=0", "--set", "data.batch_size=1",  # the dataset path (tests/test_distill_views.py: views)
            "--set", "data.augment_views=2", "--set", "train.log_every=1", "--set", "train.sample_every=3", "--set", "train.save_every=3",
            # the VGG terms are off by default (built-in job); these tests cover them too
            "--set", "loss.style=0.01", "--set", "loss.feature=0.02"]


def test_distill_writes_a_complete_run(run_cli, tiny_teacher, tmp_path):
    code, out, err = run_cli(*tiny_args(tmp_path, "e2e", tiny_teacher))
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    run = tmp_path / "e2e"
    assert result["run_dir"] == str(run) and result["step"] == 6
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "report.md", "summary.json", "teacher_cache.pt"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step_000003.png", "step_000006.png"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert {"crd_rows", "crd_columns", "crd_patches", "style", "feature"} <= set(metrics[0])
    assert "gan" not in metrics[0]  # built-in photos have no target domain: GAN term off
    summary = json.loads((run / "summary.json").read_text())
    assert "off: no real target-domain images" in summary["gan_note"]
    assert summary["heldout"]["images"] == 3  # the built-in test split
    assert "copy the input (baseline)" in (run / "report.md").read_text()

    # The checkpoint alone rebuilds the student and reproduces its outputs.
    student, ckpt = load_student(run / "checkpoint.pt")
    assert ckpt["student"]["kwargs"]["ngf"] == 8 and ckpt["teacher"]["sha256"]
    assert ckpt["config"]["train"]["steps"] == 6 and ckpt["final"]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.isfinite(student(x)).all()

    # `crd-edge profile` reads the checkpoint too.
    code, out, _ = run_cli("profile", run / "checkpoint.pt", "--size", 64, "--json")
    assert code == 0 and json.loads(out)["params"] == sum(p.numel() for p in student.parameters())

    # A second run with the same name gets a new folder, never overwriting the first.
    code, out, _ = run_cli(*tiny_args(tmp_path, "e2e", tiny_teacher, steps=1))
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["run_dir"] == str(tmp_path / "e2e-2")


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(run_cli, tiny_teacher, tmp_path, monkeypatch):
    code, _, err = run_cli(*tiny_args(tmp_path, "straight", tiny_teacher, steps=8))
    assert code == 0, err

    original = TrainProgress.update

    def interrupt_at_step_4(self, step, metrics=None):
        original(self, step, metrics)
        if step == 4:
            raise KeyboardInterrupt
    monkeypatch.setattr(TrainProgress, "update", interrupt_at_step_4)
    code, out, _ = run_cli(*tiny_args(tmp_path, "resumed", tiny_teacher, steps=8))
    assert code == 130
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 4
    monkeypatch.setattr(TrainProgress, "update", original)

    code, _, err = run_cli("distill", "--resume", tmp_path / "resumed", "--quiet")
    assert code == 0, err
    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "images_per_s"} for x in lines]
    assert strip(resumed) == strip(straight)  # identical losses, step for step
    a, _ = load_student(tmp_path / "straight" / "checkpoint.pt")
    b, _ = load_student(tmp_path / "resumed" / "checkpoint.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def _resume_and_compare(run_cli, run, reference) -> None:
    """Resume ``run`` to its end; its weights must equal the uninterrupted ``reference`` run's."""
    code, _, err = run_cli("distill", "--resume", run, "--quiet")
    assert code == 0, err
    a, _ = load_student(reference / "checkpoint.pt")
    b, _ = load_student(run / "checkpoint.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def _send_after_optimizer_step(monkeypatch, n: int, signals: tuple[str, ...]) -> None:
    """Deliver ``signals`` to this process right after the student optimiser's ``n``-th update,
    i.e. between the weights changing and the step counter moving on."""
    import os
    import signal

    original, calls = torch.optim.Adam.step, [0]

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            for name in signals:
                os.kill(os.getpid(), getattr(signal, name))  # handled before the next line runs
        return result
    monkeypatch.setattr(torch.optim.Adam, "step", step)


@pytest.mark.parametrize("signals,saved_step", [
    (("SIGINT",), 5),           # stop after the step: weights, optimiser and counter agree
    (("SIGTERM",), 5),          # what a scheduler or a container sends: the same as Ctrl-C
    (("SIGINT", "SIGINT"), 3),  # the second one cuts the step: nothing saved, the step-3 checkpoint stands
])
def test_interrupt_inside_a_step_resumes_to_an_uninterrupted_run(run_cli, tiny_teacher, tmp_path, monkeypatch,
                                                                 signals, saved_step):
    code, _, err = run_cli(*tiny_args(tmp_path, "straight", tiny_teacher, steps=8))
    assert code == 0, err
    with monkeypatch.context() as patch:
        _send_after_optimizer_step(patch, 5, signals)
        code, _, message = run_cli(*tiny_args(tmp_path, "cut", tiny_teacher, steps=8))
    assert code == 130
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == saved_step
    assert f"the checkpoint holds step {saved_step}; resume with" in message
    _resume_and_compare(run_cli, tmp_path / "cut", tmp_path / "straight")


def test_a_sigterm_after_the_last_step_saves_every_step(run_cli, tiny_teacher, tmp_path, monkeypatch):
    """A signal during the held-out scoring after the last step (once: no handler, the process
    died with no message and no final checkpoint) cuts the scoring, keeps every step, and says
    how to resume; the resumed run only scores."""
    import os
    import signal

    from crd_edge.training import loop
    scored = []

    def signalled(self):
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
        scored.append(self.step)
    with monkeypatch.context() as patch:
        patch.setattr(loop._Run, "_score_heldout", signalled)
        code, _, message = run_cli(*tiny_args(tmp_path, "late", tiny_teacher, steps=4))
    assert code == 130 and scored == []
    assert torch.load(tmp_path / "late" / "checkpoint.pt", weights_only=True)["step"] == 4
    assert "the checkpoint holds step 4; resume with" in message
    assert not list((tmp_path / "late").glob(".*.tmp"))
    code, _, err = run_cli("distill", "--resume", tmp_path / "late", "--quiet")
    assert code == 0, err
    assert not json.loads((tmp_path / "late" / "summary.json").read_text())["interrupted"]


def test_a_cut_before_the_first_checkpoint_leaves_no_run_folder(run_cli, tiny_teacher, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _send_after_optimizer_step(patch, 1, ("SIGINT", "SIGINT"))
        code, _, message = run_cli(*tiny_args(tmp_path, "early", tiny_teacher, steps=8))
    assert code == 130 and "nothing was saved" in message
    assert not (tmp_path / "early").exists()  # nothing to resume: no half run for the next name to dodge


def test_resume_survives_a_torn_metrics_line_a_damaged_cache_and_stale_temporaries(run_cli, tiny_teacher, tmp_path):
    code, _, err = run_cli(*tiny_args(tmp_path, "run", tiny_teacher, steps=3))
    assert code == 0, err
    run = tmp_path / "run"
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "loss": 0.1')  # a write cut short by a full disk or a kill
    (run / "teacher_cache.pt").write_bytes(b"PK\x03\x04 not a torch file")
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match="rebuilding the teacher cache"):
        code, _, err = run_cli("distill", "--resume", run, "--steps", 4, "--quiet")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert not list(run.glob(".*.tmp"))


def test_empty_data_folder_names_the_layout(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("distill", "--data", tmp_path / "empty", "--runs-dir", tmp_path / "runs")
    assert code == 2 and "trainA/" in err


def test_profile_prints_both_conventions(run_cli):
    code, out, _ = run_cli("profile", "mobile_resnet_9blocks_ngf16", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["params"] == 137_347 and report["paper_macs"] == 1_407_713_280
    code, out, _ = run_cli("profile", "--list")
    assert "mobile_resnet_9blocks_ngf16_edge" in out and "unet_256" in out


def test_offline_gan_term_trains_the_teacher_discriminator_on_real_targets(run_cli, tiny_teacher, unaligned, tmp_path):
    code, _, err = run_cli(*tiny_args(tmp_path / "runs", "gan", tiny_teacher, steps=3), "--data", unaligned)
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "runs" / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert all({"gan", "teacher_D"} <= set(m) for m in lines)
    ckpt = torch.load(tmp_path / "runs" / "gan" / "checkpoint.pt", weights_only=True)
    assert ckpt["train_state"]["discriminator"] is not None
    summary = json.loads((tmp_path / "runs" / "gan" / "summary.json").read_text())
    assert summary["gan_note"].startswith("on") and summary["heldout"]["images"] == 2  # testA


@pytest.mark.parametrize("args,message", [(["distill", "--bogus"], "No such option"),
                                          (["distill", "--steps", "abc"], "--steps")])
def test_usage_errors_exit_2_without_traceback(run_cli, args, message):
    code, _, err = run_cli(*args)
    assert code == 2 and message in err and "Traceback" not in err


def test_jittered_views_are_cached_exactly(run_cli, tiny_teacher, unaligned, tmp_path):
    # 2 training images x 2 cycled views = 4 distinct jittered crops, over 4 epochs (8 steps).
    code, _, err = run_cli(*tiny_args(tmp_path / "runs", "jitter", tiny_teacher, steps=8), "--data", unaligned,
                           "--set", "data.color_jitter=0.3", "--set", "loss.gan=0", "--set", "teacher.cache=exact")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "jitter" / "summary.json").read_text())
    assert "4 teacher passes" in summary["cache_note"]
    cache = torch.load(tmp_path / "runs" / "jitter" / "teacher_cache.pt", weights_only=True)
    assert len(cache) == 4 and {k.split(":")[-1] for k in cache} == {"0", "1"}


def test_pipeline_distils_then_exports_and_reports(run_cli, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the labelled views land there
    sets = [f"teacher.source={tiny_teacher}", "student.arch=mobile_resnet_9blocks", "student.kwargs.ngf=8",
            "data.size=64", "data.load_size=72", "data.test_size=64", f"runs_dir={tmp_path}",
            "data.views=64", "data.batch_size=2"]  # the main job's path (teacher-labelled views), tiny
    code, out, err = run_cli("pipeline", "--steps", 2, "--name", "job", "--target", "onnx", "--runs", 3,
                             "--max-seconds", 0.2, "--json", *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    run = tmp_path / "job"
    result = json.loads(out)  # --json: the whole stdout is one JSON document
    assert result["run_dir"] == str(run) and result["step"] == 2 and result["report"] == str(run / "report.md")
    assert [(e["path"], e["verification"]["status"]) for e in result["exports"]] == [("student_64_fp32.onnx", "passed")]
    assert result["bench_report"] == str(run / "bench" / "report.md")
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert [r["path"] for r in manifest["artifacts"]] == ["student_64_fp32.onnx"]
    assert manifest["artifacts"][0]["verification"]["status"] == "passed"
    report = (run / "report.md").read_text()
    assert "## Export" in report and "| student_64_fp32.onnx | onnx | fp32 |" in report
    # The teacher went through the same export (in onnxruntime fp32 only: its fp16 file computes
    # in fp32 on a CPU) and both were benchmarked in one table with the speed-up.
    teacher = json.loads((run / "export_teacher" / "manifest.json").read_text())["artifacts"]
    assert [r["path"] for r in teacher] == ["teacher_64_fp32.onnx"]
    bench = (run / "bench" / "report.md").read_text()
    assert "| teacher | teacher_64_fp32.onnx | onnxruntime |" in bench and "Student speed-up" in bench
    assert (run / "bench" / "latency_vs_macs.png").is_file()
    # Every report embeds its pictures: each link resolves to a PNG that decodes.
    embedded = {report: _decoded_images(report) for report in (run / "report.md", run / "bench" / "report.md")}
    assert {"heldout_grid.png", "loss_curve.png", "export/comparison.png", "bench/latency.png",
            "bench/latency_vs_macs.png"} <= set(embedded[run / "report.md"])
    assert {"latency.png", "latency_vs_macs.png"} <= set(embedded[run / "bench" / "report.md"])
    assert embedded[run / "report.md"]["export/comparison.png"][1] > 64 * 3  # input | torch | fp32 at least
    # Where the time went: each stage's wall seconds, in the JSON and as the report's last table.
    stages = ["distil: before the first step (teacher labels, inheritance)", "distil: training", "distil: held-out scoring",
              "export the student", "export the teacher", "benchmark"]
    assert list(result["seconds"]) == stages and all(v >= 0 for v in result["seconds"].values())
    assert result["seconds"]["distil: training"] == pytest.approx(json.loads((run / "summary.json").read_text())["train_seconds"], abs=0.1)
    times = report.split("## Time")[1]
    assert all(f"| {stage} | " in times for stage in stages) and "| **total** |" in times


def _decoded_images(report) -> dict[str, tuple[int, int]]:
    """{link: (height, width)} for every image the Markdown file embeds, each opened and decoded."""
    import re

    from PIL import Image

    found = {}
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text()):
        with Image.open(report.parent / link) as image:
            image.load()
            assert image.format == "PNG", link
            found[link] = (image.height, image.width)
    return found


def test_gradient_clipping_bounds_each_step(run_cli, tiny_teacher, tmp_path):
    # Clipped to a norm of 1e-12, Adam's steps shrink to ~lr * 1e-6 (its eps dominates), so the
    # second step leaves the weights where the first left them; unclipped, it moves them by ~lr.
    def weights(name, steps, clip):
        code, _, err = run_cli(*tiny_args(tmp_path, name, tiny_teacher, steps=steps),
                               "--set", "loss.style=0", "--set", "loss.feature=0", "--set", f"optim.grad_clip={clip}")
        assert code == 0, err
        ckpt = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True, map_location="cpu")
        return torch.cat([v.flatten().float() for v in ckpt["student"]["state_dict"].values()]), ckpt

    clipped1, _ = weights("clip1", 1, 1e-12)
    clipped2, ckpt = weights("clip2", 2, 1e-12)
    free1, _ = weights("free1", 1, 0)
    free2, _ = weights("free2", 2, 0)
    assert (clipped2 - clipped1).abs().max() < 1e-6
    assert (free2 - free1).abs().max() > 1e-4
    assert ckpt["config"]["optim"]["grad_clip"] == 1e-12
    metrics = [json.loads(line) for line in (tmp_path / "clip2" / "metrics.jsonl").read_text().splitlines()]
    free = [json.loads(line) for line in (tmp_path / "free2" / "metrics.jsonl").read_text().splitlines()]
    # the logged norm is the gradient's own (before clipping), the same in both runs at step 1
    assert metrics[0]["grad_norm"] == pytest.approx(free[0]["grad_norm"]) and metrics[0]["grad_norm"] > 1e-6
    assert "grad_norm" not in json.loads((tmp_path / "clip2" / "summary.json").read_text())["loss_terms"]


def test_the_library_resumes_with_the_saved_config_only(tmp_path, monkeypatch):
    from crd_edge.config import load_config
    from crd_edge.errors import UserError
    from crd_edge.training import loop

    with pytest.raises(UserError, match="resume= to continue one with its saved config"):
        loop.distill(load_config(), resume=tmp_path)
    seen = []

    class Started(Exception):
        pass

    def run(cfg, device, dist):
        seen.append(cfg)
        raise Started
    monkeypatch.setattr(loop, "_Run", run)
    with pytest.raises(Started):
        loop.distill()  # no config: the built-in job, as `crd-edge distill` with no options
    assert seen[0] == load_config()


def test_a_ctrl_c_during_the_checkpoint_write_leaves_a_consistent_run(run_cli, tiny_teacher, tmp_path, monkeypatch):
    code, _, err = run_cli(*tiny_args(tmp_path, "straight", tiny_teacher, steps=8))
    assert code == 0, err
    real_save, calls = torch.save, [0]

    def interrupted_save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:  # the first checkpoint write (step 3): half written, then Ctrl-C
            open(f, "wb").write(b"PK\x03\x04 half")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", interrupted_save)
        code, _, message = run_cli(*tiny_args(tmp_path, "cut", tiny_teacher, steps=8))
    assert code == 130 and "the checkpoint holds step 3" in message
    assert not list((tmp_path / "cut").glob(".*.tmp"))
    _resume_and_compare(run_cli, tmp_path / "cut", tmp_path / "straight")
