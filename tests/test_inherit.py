"""Students that inherit the teacher's weights (crd_edge/models/inherit.py): the pruned layout,
which channels are kept, the exact k3 -> k4 transposed conv, the least-squares re-fit, and
what is refused (black-box and mobile teachers) before any work."""

import json

import pytest
import torch
from torch import nn

from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.models.inherit import _zero_insert, channel_importance, inherit_into, inheritable, layout_mismatch


def small_teacher(seed=0, **kwargs):
    torch.manual_seed(seed)
    teacher = create_model("resnet_9blocks", ngf=8, n_blocks=2, norm_affine=True, **kwargs)
    with torch.no_grad():  # trained teachers' affine norms are not the identity
        for m in teacher.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return teacher.eval()


def images(n=6, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    smooth = nn.functional.interpolate(torch.rand(n, 3, size // 4, size // 4, generator=g), size=(size, size),
                                       mode="bilinear", align_corners=False)
    return (smooth * 2 - 1).clamp(-1, 1)


def student_for(channels, **kwargs):
    return create_model("resnet_9blocks_inherited", n_blocks=2, channels=channels, **kwargs)


def test_full_width_inheritance_is_the_teacher_itself():
    """Keeping every channel with the teacher's padding reproduces it exactly, through the
    k3 -> k4 transposed-conv conversion; the order of the kept channels does not matter."""
    teacher = small_teacher()
    student = student_for([8, 16, 32, 32, 32, 16, 8], padding="reflect", input_skip=False,
                          global_colour=False).eval()
    plan = inherit_into(student, teacher, images(), refit=False)
    assert plan.kept["stream"] == list(range(32))
    x = images(2, seed=5)
    with torch.no_grad():
        assert (student(x) - teacher(x)).abs().max() < 1e-5
    assert [m.kernel_size for m in student.modules() if isinstance(m, nn.ConvTranspose2d)] == [(4, 4)] * 2


def test_zero_insert_writes_the_k4_transposed_conv_as_a_conv():
    conv_t = nn.ConvTranspose2d(5, 7, 4, stride=2, padding=1)
    x = torch.randn(2, 5, 6, 6)
    as_conv = nn.functional.conv2d(_zero_insert(x), conv_t.weight.flip(-1, -2).transpose(0, 1), conv_t.bias,
                                   padding=2)
    assert torch.allclose(as_conv, conv_t(x), atol=1e-5)


def test_pruning_keeps_the_most_important_channels():
    teacher = small_teacher()
    x = images()
    scores = channel_importance(teacher, x)
    assert {"stem", "down1", "stream", "block0", "block1", "up1", "up2"} == set(scores)
    assert len(scores["stream"]) == 32 and len(scores["block1"]) == 32 and (scores["stem"] >= 0).all()
    # Silence one stream channel everywhere it is written: it can no longer be among the kept.
    with torch.no_grad():
        for conv in (teacher.model[7], teacher.model[10].conv_block[5], teacher.model[11].conv_block[5]):
            assert conv.out_channels == 32
        norms = [teacher.model[8], teacher.model[10].conv_block[6], teacher.model[11].conv_block[6]]
        for norm in norms:
            norm.weight[3] = 0
            norm.bias[3] = 0
    student = student_for([4, 8, 8, 4, 4, 8, 4])
    plan = inherit_into(student, teacher, x, refit=False)
    assert 3 not in plan.kept["stream"] and len(plan.kept["stream"]) == 8
    assert plan.kept["stream"] == sorted(channel_importance(teacher, x)["stream"].topk(8).indices.tolist())
    # The kept channels' weights are the teacher's (stem: its first 4 kept filters).
    assert torch.equal(student.model[0].weight, teacher.model[1].weight[plan.kept["stem"]])


def errors_without_and_with_refit(make_student, check=None):
    """{refit: the inherited student's mean squared error to the teacher on held-out images}."""
    teacher = small_teacher(seed=3)
    x, held = images(8, seed=1), images(4, seed=9)
    with torch.no_grad():
        target = teacher(held)
    errors = {}
    for refit in (False, True):
        torch.manual_seed(0)
        student = make_student().eval()
        plan = inherit_into(student, teacher, x, refit=refit)
        if check:
            check(student, teacher, plan, refit)
        with torch.no_grad():
            errors[refit] = float((student(held) - target).pow(2).mean())
    return errors


def test_refit_starts_closer_to_the_teacher_than_slicing():
    errors = errors_without_and_with_refit(lambda: student_for([4, 8, 12, 6, 6, 8, 4]))
    assert errors[True] < errors[False]


def test_shuffle_ends_inherit_the_middle_and_fit_the_ends():
    """A shuffle-ended student (no full-resolution layers) slices every layer the teacher has
    (down2, the blocks, up1) and starts its two new end convs from the least-squares fit: with
    the fit it is closer to the teacher than with the ends left at random."""
    def check(student, teacher, plan, refit):
        assert set(plan.kept) == {"down1", "stream", "block0", "block1", "up1"}
        assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (7, 7) for m in student.modules())
        if not refit:  # the residual blocks are the teacher's kept weights, as sliced
            sliced = teacher.model[10].conv_block[1].weight[plan.kept["block0"]][:, plan.kept["stream"]]
            assert torch.equal(student.model[7].conv_block[0].weight, sliced)

    errors = errors_without_and_with_refit(
        lambda: create_model("resnet_9blocks_inherited_shuffle", n_blocks=2, channels=[8, 12, 6, 6, 8]), check)
    assert errors[True] < errors[False]
    teacher, x = small_teacher(seed=3), images(8, seed=1)
    # the shuffle student's widths are [down1, stream, blocks, up1]; each checked against the teacher's
    with pytest.raises(UserError, match="down1 width 17 must be 1-16"):
        inherit_into(create_model("resnet_9blocks_inherited_shuffle", n_blocks=2, channels=[17, 12, 6, 6, 8]),
                     teacher, x, refit=False)
    with pytest.raises(ValueError, match="expected 5 widths .down1, stream, 2 block widths, up1."):
        create_model("resnet_9blocks_inherited_shuffle", n_blocks=2, channels=[4, 8, 12, 6, 6, 8, 4])


def test_what_cannot_be_inherited_says_why():
    assert "black box" in inheritable(None)
    assert "depthwise" in inheritable(create_model("mobile_resnet_9blocks_ngf16"))
    assert "InstanceNorm" in inheritable(create_model("resnet_9blocks", ngf=8, n_blocks=2, norm="none"))
    assert "resizing" in inheritable(create_model("resnet_9blocks", ngf=8, n_blocks=2, upsample="nearest"))
    assert inheritable(small_teacher()) is None
    assert "resizing" in layout_mismatch(student_for([4, 8, 8, 4, 4, 8, 4], upsample="nearest"), small_teacher())
    nine_blocks = create_model("resnet_9blocks_inherited")
    with pytest.raises(UserError, match="9 residual blocks, the teacher 2"):
        inherit_into(nine_blocks, small_teacher(), images(), refit=False)
    with pytest.raises(UserError, match="must be 1-8"):
        inherit_into(student_for([9, 8, 8, 4, 4, 8, 4]), small_teacher(), images(), refit=False)
    with pytest.raises(UserError, match="per-layer widths"):
        inherit_into(create_model("resnet_9blocks", ngf=4, n_blocks=2), small_teacher(), images(), refit=False)


# -- distill --init: end to end on a tiny teacher ------------------------------------------------

def _views_run(run_cli, tmp_path, name, teacher, *extra):
    from tests.test_distill_views import photo_folder, views_args
    data = tmp_path / "photos"
    if not data.exists():
        photo_folder(data, n=12)
    return run_cli(*views_args(tmp_path / "runs", name, teacher, data, 2, "--set", "train.eval_every=0",
                               "--set", "loss.gan=0", *extra))


TINY_STUDENT = ("--student", "resnet_9blocks_inherited", "--set", "student.kwargs.n_blocks=2",
                "--set", "student.kwargs.channels=[4,8,8,4,4,8,4]")


@pytest.mark.slow
def test_distill_init_teacher_starts_from_the_pruned_teacher_and_resumes(run_cli, tiny_teacher, tmp_path,
                                                                        monkeypatch):
    from crd_edge.checkpoint import load_student
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = _views_run(run_cli, tmp_path, "inh", tiny_teacher, *TINY_STUDENT, "--init", "teacher",
                              "--set", "optim.lr=0")  # lr 0: the checkpoint holds the inherited weights
    assert code == 0, err
    run = tmp_path / "runs" / "inh"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["student"]["init"] == "teacher"
    kept = json.loads((run / "inherit.json").read_text())["kept"]
    assert len(kept["stream"]) == 8 and kept == summary["student"]["inherited"]["kept"]
    report = (run / "report.md").read_text()
    assert "the teacher's own, pruned" in report
    # the step's counted FLOPs against the matmul roofline measured in the same process
    compute = summary["compute"]
    assert compute["gflop_per_image"] > 0 and compute["matmul_gflops"] > 0
    assert compute["share"] == pytest.approx(compute["gflops"] / compute["matmul_gflops"])
    # ... in the precision the step computed in: bf16 where the CPU has it (autocast), else fp32
    assert compute["precision"] == (summary["autocast"] or "fp32")
    assert f"of this CPU's {compute['precision']} matmul roofline" in report
    student, _ = load_student(run / "checkpoint.pt")
    teacher = torch.load(tiny_teacher, weights_only=True)
    # the RGB input conv keeps all three input channels and the teacher's kept filters (re-fitted)
    assert student.model[0].weight.shape == (4, 3, 7, 7)
    assert not torch.allclose(student.model[0].weight, torch.zeros(4, 3, 7, 7))
    assert teacher["model.1.weight"].shape[0] == 8
    # a resumed run takes its weights from the checkpoint, not from a new pruning
    code, _, err = run_cli("distill", "--resume", run, "--steps", 3, "--quiet")
    assert code == 0, err


@pytest.mark.slow
def test_init_teacher_refusals_are_one_line_before_any_work(run_cli, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # a student of the from-scratch family is not a pruned teacher layout
    code, _, err = _views_run(run_cli, tmp_path, "a", tiny_teacher, "--student", "mobile_resnet_9blocks_ngf16_colour",
                              "--init", "teacher")
    assert code == 2 and "resnet_9blocks_inherited" in err and len(err.strip().splitlines()) == 1
    # a black-box teacher cannot be pruned
    pytest.importorskip("onnxruntime")
    model = create_model("resnet_9blocks", ngf=8, n_blocks=2).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(tmp_path / "t.onnx"), input_names=["image"],
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    code, _, err = _views_run(run_cli, tmp_path, "b", tmp_path / "t.onnx", *TINY_STUDENT, "--init", "teacher")
    assert code == 2 and "black box" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, _, err = _views_run(run_cli, tmp_path, "c", tiny_teacher, "--init", "parent")
    assert code == 2 and "student.init" in err


@pytest.mark.slow
def test_init_auto_falls_back_to_random_with_a_note(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mobile = tmp_path / "mobile.pth"
    torch.save(create_model("mobile_resnet_9blocks", ngf=8, n_blocks=2).state_dict(), mobile)
    with pytest.warns(UserWarning, match="depthwise"):
        code, _, err = _views_run(run_cli, tmp_path, "m", mobile, *TINY_STUDENT)
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "m" / "summary.json").read_text())
    assert summary["student"]["init"].startswith("random (") and summary["student"]["inherited"] is None
