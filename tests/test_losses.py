"""Tests for the CRD/RKD, perceptual and GAN losses (kornia-style: smoke, errors, gradcheck,
function == module, closed forms on tiny inputs, invariances)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from crd_edge.training.gan_losses import LSGANLoss, hinge_d_loss, hinge_g_loss, lsgan_loss
from crd_edge.training.losses import (
    CRDLoss,
    RKDLoss,
    angle_relations,
    columns_of,
    crd_loss,
    distance_relations,
    patches_of,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
    rows_of,
)
from crd_edge.training.perceptual import (
    FeatureLoss,
    StyleLoss,
    feature_loss,
    gram_matrix,
    style_loss,
)

TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float64: dict(rtol=1e-10, atol=1e-10),
}
DTYPES = list(TOL)
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def assert_close(actual, expected, dtype=torch.float64):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=dtype),
                               torch.as_tensor(expected, dtype=dtype), **TOL[dtype])


def random_items(n=2, m=6, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, m, d, generator=g, dtype=dtype)


# Three items in 2-D: a 3-4-5 right triangle (right angle at the first item) and an
# equilateral triangle of side 1.
RIGHT = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
EQUILATERAL = [[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]]


# --------------------------------------------------------------------------------------------
# slicing


def test_slicing_items_on_arange():
    x = torch.arange(24.0).reshape(1, 3, 2, 4)  # x[0, c, h, w] = 8c + 4h + w
    assert rows_of(x).tolist() == [[
        [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19],
        [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23],
    ]]
    assert columns_of(x).tolist() == [[
        [0, 4, 8, 12, 16, 20],
        [1, 5, 9, 13, 17, 21],
        [2, 6, 10, 14, 18, 22],
        [3, 7, 11, 15, 19, 23],
    ]]
    assert patches_of(x, 2).tolist() == [[
        [0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21],
        [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23],
    ]]
    # raster order over a 2x2 grid of patches
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert patches_of(y, 2).tolist() == [[
        [0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15],
    ]]


def test_slicing_shapes():
    x = torch.rand(2, 3, 64, 96)
    assert rows_of(x).shape == (2, 64, 3 * 96)
    assert columns_of(x).shape == (2, 96, 3 * 64)
    assert patches_of(x, 32).shape == (2, 2 * 3, 3 * 32 * 32)
    assert patches_of(x).shape == (2, 6, 3072)  # default patch = 32


def test_slicing_errors():
    with pytest.raises(ValueError, match=r"multiples of the patch size 32, got H=48, W=64"):
        patches_of(torch.rand(1, 3, 48, 64), 32)
    with pytest.raises(ValueError, match="patch size must be a positive int"):
        patches_of(torch.rand(1, 3, 64, 64), 0)
    with pytest.raises(ValueError, match=r"image batch of shape \(N, C, H, W\), got 3-D"):
        rows_of(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="expected a floating-point tensor"):
        columns_of(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# --------------------------------------------------------------------------------------------
# RKD: errors, smoke, gradcheck


def test_rkd_errors():
    with pytest.raises(ValueError, match=r"same number of images and items \(N, M\)"):
        rkd_loss(torch.rand(1, 5, 3), torch.rand(1, 4, 3))
    with pytest.raises(ValueError, match=r"same number of images and items \(N, M\)"):
        rkd_distance_loss(torch.rand(2, 5, 3), torch.rand(1, 5, 3))
    with pytest.raises(ValueError, match=r"student: expected items of shape \(N, M, D\), got 2"):
        rkd_angle_loss(torch.rand(5, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="teacher: expected a floating-point tensor"):
        rkd_loss(torch.rand(1, 5, 3), torch.ones(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="need at least 2 items per image"):
        rkd_loss(torch.rand(1, 1, 3), torch.rand(1, 1, 3))


def test_rkd_allows_different_feature_sizes():
    # relations do not depend on D, so student and teacher items may differ in size
    loss = rkd_loss(random_items(d=4), random_items(d=7, seed=1))
    assert loss.shape == () and torch.isfinite(loss)


def test_crd_errors():
    with pytest.raises(ValueError, match=r"same shape, got \(1, 3, 64, 64\) and \(1, 3, 64, 32\)"):
        crd_loss(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 32))
    with pytest.raises(ValueError, match=r"student: expected an image batch .* got 3-D"):
        crd_loss(torch.rand(3, 64, 64), torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="multiples of the patch size 32, got H=48, W=64"):
        crd_loss(torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64))
    # without the patch term, any size works
    assert set(crd_loss(torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64), patches=0)) == {
        "crd_rows", "crd_columns"}


def test_crd_smoke_and_shapes():
    s = torch.rand(2, 3, 64, 64, requires_grad=True)
    t = torch.rand(2, 3, 64, 64)
    terms = crd_loss(s, t)
    assert set(terms) == {"crd_rows", "crd_columns", "crd_patches"}
    for v in terms.values():
        assert v.shape == () and v.dtype == torch.float32 and torch.isfinite(v) and v > 0
    sum(terms.values()).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    # weights scale the terms; a zero weight skips the term
    half = crd_loss(s, t, rows=12.5, columns=0.0, patches=25.0, patch_size=16)
    assert set(half) == {"crd_rows", "crd_patches"}
    assert_close(half["crd_rows"], terms["crd_rows"] / 2, torch.float32)
    assert_close(half["crd_patches"] / 25, rkd_loss(patches_of(s, 16), patches_of(t, 16)),
                 torch.float32)


def test_teacher_gets_no_gradient():
    s = random_items().requires_grad_()
    t = random_items(seed=1).requires_grad_()
    rkd_loss(s, t).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("loss_fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss])
def test_gradcheck(loss_fn):
    s = random_items(n=2, m=4, d=3).requires_grad_()
    t = random_items(n=2, m=4, d=3, seed=1)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, t), (s,))


def test_function_equals_module():
    s, t = random_items(), random_items(seed=1)
    assert_close(RKDLoss(0.5, 3.0)(s, t), rkd_loss(s, t, 0.5, 3.0))
    si, ti = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    module = CRDLoss(rows=1.0, columns=2.0, patches=3.0, patch_size=8)
    func = crd_loss(si, ti, 1.0, 2.0, 3.0, 8)
    for k, v in module(si, ti).items():
        assert_close(v, func[k], torch.float32)


# --------------------------------------------------------------------------------------------
# RKD: closed forms and references


@pytest.mark.parametrize("dtype", DTYPES)
def test_closed_form_right_vs_equilateral_triangle(dtype):
    s = torch.tensor([RIGHT], dtype=dtype)
    t = torch.tensor([EQUILATERAL], dtype=dtype)
    # Distances. Teacher: all three sides 1, mean 1, normalised sides 1. Student: sides 3, 4, 5,
    # mean (3+4+5)/3 = 4, normalised 0.75, 1, 1.25. The 3x3 matrices differ by -0.25 (twice),
    # 0 (twice) and 0.25 (twice), 0 on the diagonal. smooth-L1 (beta 1) of 0.25 is
    # 0.5 * 0.25^2 = 0.03125; four such entries over 9: 0.125 / 9.
    expected_distance = 4 * 0.5 * 0.25**2 / 9
    # Angles (cosines at vertex j, 27 triplets). Per vertex j, 5 of the 9 (i, k) pairs are
    # degenerate (i == j or k == j: 0 for both), 2 have i == k (cosine 1 for both), and 2 are
    # the true angle at j: teacher cos 60 deg = 0.5; student cos 90 deg = 0 at the right
    # angle, 3/5 at the vertex (3, 0), 4/5 at the vertex (0, 4). Differences -0.5, 0.1, 0.3,
    # each twice: smooth-L1 sum 2 * 0.5 * (0.25 + 0.01 + 0.09) = 0.35, mean 0.35 / 27.
    expected_angle = 2 * 0.5 * (0.5**2 + 0.1**2 + 0.3**2) / 27
    assert_close(rkd_distance_loss(s, t), expected_distance, dtype)
    assert_close(rkd_angle_loss(s, t), expected_angle, dtype)
    assert_close(rkd_loss(s, t), expected_distance + 2 * expected_angle, dtype)
    # the relations themselves
    assert_close(distance_relations(s)[0, 0, 1:], [0.75, 1.0], dtype)
    assert_close(angle_relations(s)[0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype)
    assert_close(angle_relations(s)[0, 1, 0, 2], 0.6, dtype)
    assert_close(angle_relations(t)[0, 2, 0, 1], 0.5, dtype)


def naive_angle_loss(s, t):
    """Triple loop over the definition: cosine at j of (e_i - e_j, e_k - e_j), 0 if degenerate."""

    def cosines(e):
        m = e.shape[0]
        out = torch.zeros(m, m, m, dtype=e.dtype)
        for i, j, k in itertools.product(range(m), repeat=3):
            u, v = e[i] - e[j], e[k] - e[j]
            if u.norm() > 0 and v.norm() > 0:
                out[j, i, k] = u @ v / (u.norm() * v.norm())
        return out

    per_image = [F.smooth_l1_loss(cosines(a), cosines(b)) for a, b in zip(s, t)]
    return torch.stack(per_image).mean()


def naive_distance_loss(s, t):
    def dist(e):
        d = torch.cdist(e, e)
        return d / d[d > 0].mean()

    return torch.stack([F.smooth_l1_loss(dist(a), dist(b)) for a, b in zip(s, t)]).mean()


def assert_angle_kernel_matches_autograd(n: int, m: int = 20):
    """The fused float32 kernel's loss and gradient equal plain autograd through angle_relations."""
    s = random_items(n=n, m=m, d=7, dtype=torch.float32).requires_grad_(True)
    t = random_items(n=n, m=m, d=5, dtype=torch.float32, seed=1)
    loss = rkd_angle_loss(s, t)
    (grad,) = torch.autograd.grad(loss, s)
    s2 = s.detach().clone().requires_grad_(True)
    plain = F.smooth_l1_loss(angle_relations(s2), angle_relations(t), beta=1.0)
    (grad2,) = torch.autograd.grad(plain, s2)
    torch.testing.assert_close(loss, plain, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, grad2, rtol=1e-4, atol=1e-7)


def test_float32_angle_kernel_in_uneven_anchor_blocks_matches_autograd():
    # 20 items: blocks of 8, 8 and 4 anchors through the (compiled) kernel, one image a call.
    assert_angle_kernel_matches_autograd(n=2)


def test_a_traced_call_runs_the_eager_kernel_and_leaves_the_compiled_one_alone(monkeypatch):
    # The run's FLOP counter traces one training step: the compiled kernel traced under its
    # dispatch mode left every later step 1.5x slower, so traced calls run eager (same loss).
    from torch.utils.flop_counter import FlopCounterMode

    from crd_edge.training import losses

    monkeypatch.delenv("CRD_EDGE_COMPILE", raising=False)
    compiled = object()
    monkeypatch.setattr(losses, "_compiled_kernel", compiled)
    x = torch.zeros(1, 4, 4)
    with FlopCounterMode(display=False):
        assert losses._angle_kernel(x) is losses._angle_loss_and_grads
        assert_angle_kernel_matches_autograd(n=2)
    assert losses._angle_kernel(x) is compiled


@pytest.mark.parametrize("plan", [(3, 7), (2, 20), (1, 3)])
def test_angle_kernel_over_blocks_of_images_matches_autograd(monkeypatch, plan):
    # The GPU plan (several images per call, anchors in blocks that leave a remainder), forced
    # on the CPU: the same loss and gradient as plain autograd.
    from crd_edge.training import losses

    monkeypatch.setattr(losses, "_blocking", lambda x: plan)
    assert_angle_kernel_matches_autograd(n=5)


def test_gpu_blocking_bounds_the_cubic_block():
    from crd_edge.training.losses import GPU_BLOCK_ELEMENTS, _blocking

    assert _blocking(torch.zeros(64, 128, 3)) == (1, 8)  # CPU: one image, cache-sized blocks
    meta = torch.zeros(64, 128, 3, device="meta")
    images, anchors = _blocking(meta)
    assert images == 64 and anchors * 64 * 128 * 128 <= GPU_BLOCK_ELEMENTS and anchors == 16
    assert _blocking(torch.zeros(2, 16, 3, device="meta")) == (2, 16)  # every anchor in one call


def test_vectorised_losses_match_naive_reference():
    s, t = random_items(n=2, m=5, d=4), random_items(n=2, m=5, d=3, seed=1)
    assert_close(rkd_angle_loss(s, t), naive_angle_loss(s, t))
    assert_close(rkd_distance_loss(s, t), naive_distance_loss(s, t))


@pytest.mark.parametrize("loss_fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss])
def test_zero_when_student_equals_teacher(loss_fn):
    s = random_items()
    assert loss_fn(s, s.clone()).item() == 0.0


@pytest.mark.parametrize("loss_fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss])
def test_invariant_to_scale_and_translation_of_student(loss_fn):
    s, t = random_items(), random_items(seed=1)
    expected = loss_fn(s, t)
    assert_close(loss_fn(3.7 * s, t), expected)
    assert_close(loss_fn(s + torch.randn(1, 1, s.shape[2], dtype=s.dtype), t), expected)


@pytest.mark.parametrize("loss_fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss])
def test_invariant_to_common_permutation_of_items(loss_fn):
    s, t = random_items(m=7), random_items(m=7, seed=1)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    assert_close(loss_fn(s[:, perm], t[:, perm]), loss_fn(s, t))


@pytest.mark.parametrize("loss_fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss])
def test_batch_is_mean_of_single_image_losses(loss_fn):
    s, t = random_items(n=3), random_items(n=3, seed=1)
    singles = torch.stack([loss_fn(s[i:i + 1], t[i:i + 1]) for i in range(3)])
    assert_close(loss_fn(s, t), singles.mean())


def test_crd_batch_is_mean_of_single_image_losses():
    s, t = (torch.rand(3, 3, 32, 32, dtype=torch.float64) for _ in range(2))
    batch = crd_loss(s, t, patch_size=8)
    singles = [crd_loss(s[i:i + 1], t[i:i + 1], patch_size=8) for i in range(3)]
    for k, v in batch.items():
        assert_close(v, sum(x[k] for x in singles) / 3)


def test_no_nan_when_items_coincide():
    # student items 0 and 1 coincide: degenerate pairs give 0, not NaN, in value and gradient
    s = random_items(m=5)
    s[:, 1] = s[:, 0]
    s.requires_grad_()
    t = random_items(m=5, seed=1)
    loss = rkd_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert angle_relations(s.detach())[:, 0, 1].abs().max() == 0  # side 0->1 has no length
    # constant images: every item coincides
    const = torch.full((2, 3, 32, 32), 0.3, requires_grad=True)
    terms = crd_loss(const, torch.rand(2, 3, 32, 32), patch_size=8)
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(const.grad).all()
    both_const = crd_loss(const, const.detach(), patch_size=8)
    assert all(v.item() == 0.0 for v in both_const.values())


def test_low_precision_inputs_are_computed_in_float32():
    s, t = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    expected = crd_loss(s, t, patch_size=8)
    low = crd_loss(s.bfloat16(), t.bfloat16(), patch_size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = crd_loss(s, t, patch_size=8)
    for k, v in expected.items():
        assert low[k].dtype == torch.float32 and autocast[k].dtype == torch.float32
        torch.testing.assert_close(autocast[k], v, **TOL[torch.float32])
        torch.testing.assert_close(low[k], v, rtol=5e-2, atol=1e-3)  # bf16 rounds the inputs


# --------------------------------------------------------------------------------------------
# perceptual


def test_gram_matrix_closed_form():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # N=1, C=2, H=1, W=2
    # F = [[1, 2], [3, 4]]; F F^T = [[1+4, 3+8], [3+8, 9+16]]; divided by C*H*W = 4
    assert_close(gram_matrix(f), [[[5 / 4, 11 / 4], [11 / 4, 25 / 4]]], torch.float32)
    assert gram_matrix(f.half()).dtype == torch.float32
    assert gram_matrix(torch.rand(3, 4, 5, 6, dtype=torch.float64)).shape == (3, 4, 4)


def feats(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    sizes = {"relu1_2": (4, 16), "relu2_2": (8, 8), "relu3_3": (16, 4), "relu4_3": (32, 2)}
    return {k: torch.rand(2, c, s, s, generator=g, dtype=dtype) for k, (c, s) in sizes.items()}


def test_style_and_feature_losses():
    s, t = feats(), feats(seed=1)
    assert style_loss(s, dict(s)).item() == 0.0 and feature_loss(s, dict(s)).item() == 0.0
    # closed forms: a constant offset of 0.5 gives feature L1 0.5, times weight 10
    shifted = {k: v + 0.5 for k, v in s.items()}
    assert_close(feature_loss(shifted, s), 5.0, torch.float32)
    expected = sum(1e4 * (gram_matrix(s[k]) - gram_matrix(t[k])).abs().mean() for k in LAYERS)
    assert_close(style_loss(s, t), expected, torch.float32)
    assert_close(StyleLoss(["relu2_2"], 2.0)(s, t), style_loss(s, t, ["relu2_2"], 2.0),
                 torch.float32)
    assert_close(FeatureLoss("relu3_3", 1.0)(s, t), feature_loss(s, t, "relu3_3", 1.0),
                 torch.float32)


def test_perceptual_teacher_detached_and_errors():
    s = {k: v.requires_grad_() for k, v in feats().items()}
    t = {k: v.requires_grad_() for k, v in feats(seed=1).items()}
    (style_loss(s, t) + feature_loss(s, t)).backward()
    assert all(v.grad is None for v in t.values()) and s["relu1_2"].grad is not None
    with pytest.raises(ValueError, match="teacher features have no layer 'relu5_3'"):
        feature_loss({"relu5_3": torch.rand(1, 2, 3, 3)}, s, layer="relu5_3")
    with pytest.raises(ValueError, match=r"layer 'relu2_2': student and teacher features must "
                                         r"have the same shape"):
        feature_loss({"relu2_2": torch.rand(1, 2, 3, 3)}, {"relu2_2": torch.rand(1, 2, 3, 4)})
    with pytest.raises(ValueError, match=r"expected features of shape \(N, C, H, W\), got 3-D"):
        gram_matrix(torch.rand(2, 3, 4))


# --------------------------------------------------------------------------------------------
# GAN losses


def test_gan_losses_closed_form():
    zeros, twos = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0)
    assert lsgan_loss(zeros, True).item() == 1.0 and lsgan_loss(zeros, False).item() == 0.0
    assert lsgan_loss(twos, True).item() == 1.0 and lsgan_loss(twos, False).item() == 4.0
    # a list is the mean over discriminators: (1 + 4) / 2
    assert lsgan_loss([zeros, twos], False).item() == 2.0
    assert LSGANLoss()(twos, False).item() == 4.0
    # hinge: D(real) = 2 and D(fake) = -2 are past the margins; at 0 each side costs 1
    assert hinge_d_loss(twos, -twos).item() == 0.0
    assert hinge_d_loss(zeros, zeros).item() == 2.0
    assert hinge_g_loss(twos).item() == -2.0
    assert lsgan_loss(zeros.half(), True).dtype == torch.float32
    with pytest.raises(ValueError, match="non-empty list"):
        lsgan_loss([], True)


def test_float32_angles_stay_sane_for_near_duplicate_rows():
    # Smooth regions give near-identical rows; float32 Gram-matrix cancellation must not blow up.
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256, dtype=torch.float64)
    for k in range(10):
        x[:, :, 100 + k, :] = x[:, :, 100, :] + 1e-3 * torch.randn(1, 3, 256, dtype=torch.float64)
    cos32 = angle_relations(rows_of(x.float()))
    # Before the relative degeneracy threshold, float32 cosines reached 2.7 here. Pairs under it
    # count as coinciding (cosine 0), so single entries differ from float64 by design; the loss
    # over all 256^3 triplets must agree.
    assert cos32.abs().max() <= 1.01
    t = torch.rand(1, 3, 256, 256, dtype=torch.float64)
    loss64 = rkd_angle_loss(rows_of(x), rows_of(t))
    loss32 = rkd_angle_loss(rows_of(x.float()), rows_of(t.float()))
    assert loss32.item() == pytest.approx(loss64.item(), rel=1e-2)
