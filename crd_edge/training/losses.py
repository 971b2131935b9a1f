"""Content Relationship Distillation losses (CRD, You et al. 2022, arXiv 2212.11091).

The student generator imitates the *relationships between parts of the teacher's output
image* — its pixel rows, pixel columns and non-overlapping patches — measured with the
relational KD loss of Park et al. (RKD, CVPR 2019): pairwise distances and triplet angles.

Tensor convention: a set of items is ``(N, M, D)``: ``N`` images, ``M`` items per image and
``D`` values per item. Relations are formed between the items of one image only; a batch
loss is the mean of its per-image losses.

Every loss is a pure function (maths in the docstring) plus a thin ``nn.Module`` that only
stores options, in the style of kornia.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "rows_of",
    "columns_of",
    "patches_of",
    "distance_relations",
    "angle_relations",
    "rkd_distance_loss",
    "rkd_angle_loss",
    "rkd_loss",
    "crd_loss",
    "RKDLoss",
    "CRDLoss",
]


# --------------------------------------------------------------------------------------------
# input checks


def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected an image batch of shape (N, C, H, W), "
                         f"got {x.dim()}-D shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def _check_pair_images(student: Tensor, teacher: Tensor) -> None:
    _check_images(student, "student")
    _check_images(teacher, "teacher")
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher images must have the same shape, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.device != teacher.device:
        raise ValueError(f"student and teacher must be on the same device, got "
                         f"{student.device} and {teacher.device}")


def _check_items(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name}: expected items of shape (N, M, D), "
                         f"got {x.dim()}-D shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.shape[1] < 2:
        raise ValueError(f"{name}: need at least 2 items per image to form relations, "
                         f"got shape {tuple(x.shape)}")


def _check_pair_items(student: Tensor, teacher: Tensor) -> None:
    _check_items(student, "student")
    _check_items(teacher, "teacher")
    # D may differ (relations do not depend on it, as in RKD); N and M must match.
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"student and teacher must have the same number of images and items "
                         f"(N, M), got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.device != teacher.device:
        raise ValueError(f"student and teacher must be on the same device, got "
                         f"{student.device} and {teacher.device}")


def _check_patch(patch: int, h: int, w: int) -> None:
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch size must be a positive int, got {patch!r}")
    if h % patch or w % patch:
        raise ValueError(f"image height and width must be multiples of the patch size "
                         f"{patch}, got H={h}, W={w}")


# --------------------------------------------------------------------------------------------
# slicing an image into items


def rows_of(x: Tensor) -> Tensor:
    """Pixel rows as items: ``(N, C, H, W) -> (N, H, C*W)``.

    Item ``h`` is the concatenation ``[x[n, 0, h, :], ..., x[n, C-1, h, :]]`` (``3*W`` values
    for RGB). Rows carry the global structure of the image (CRD, section 3).
    """
    _check_images(x, "x")
    n, c, h, w = x.shape
    # permute makes the tensor non-contiguous; reshape copies where needed (.view would crash).
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


def columns_of(x: Tensor) -> Tensor:
    """Pixel columns as items: ``(N, C, H, W) -> (N, W, C*H)``.

    Item ``w`` is ``[x[n, 0, :, w], ..., x[n, C-1, :, w]]`` (``3*H`` values for RGB).
    """
    _check_images(x, "x")
    n, c, h, w = x.shape
    return x.permute(0, 3, 1, 2).reshape(n, w, c * h)


def patches_of(x: Tensor, patch: int = 32) -> Tensor:
    """Non-overlapping ``patch x patch`` patches as items: ``(N, C, H, W) -> (N, M, C*patch^2)``.

    ``M = (H / patch) * (W / patch)``; patches are in raster order (left to right, then top to
    bottom) and each is flattened channel-major (``[c, dy, dx]``). ``H`` and ``W`` must be
    multiples of ``patch``: silently cropping would drop image content from the loss.
    """
    _check_images(x, "x")
    n, c, h, w = x.shape
    _check_patch(patch, h, w)
    gh, gw = h // patch, w // patch
    x = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, gh * gw, c * patch * patch)


# --------------------------------------------------------------------------------------------
# relations


def _compute_dtype(x: Tensor) -> torch.dtype:
    # Relations are numerically sensitive (differences of Gram entries): never below fp32.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _centred_gram(items: Tensor) -> Tensor:
    """``G = E E^T`` per image, ``(N, M, M)``, of the items centred on their mean.

    Distances and angles are translation invariant, so centring changes no relation; it
    shrinks the norms and with them the cancellation error of ``G_ii + G_jj - 2 G_ij``.
    """
    e = items.to(_compute_dtype(items))
    e = e - e.mean(dim=1, keepdim=True)
    return torch.bmm(e, e.transpose(1, 2))


def _squared_distances(gram: Tensor) -> Tensor:
    """``|e_i - e_j|^2 = G_ii + G_jj - 2 G_ij``, clamped at 0, exactly 0 on the diagonal."""
    sq = gram.diagonal(dim1=1, dim2=2)
    d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * gram).clamp_min(0)
    eye = torch.eye(gram.shape[1], dtype=torch.bool, device=gram.device)
    return d2.masked_fill(eye, 0)


# Below this fraction of |e_i|^2 + |e_j|^2 (centred items), a float32 squared distance is mostly
# rounding error of G_ii + G_jj - 2 G_ij, and so would be any angle built on it: such pairs count
# as coinciding. Measured on a 256x256 image with near-duplicate rows, the float32 cosines were
# off by up to 2.7 without this; float64 needs no such guard.
_RELATIVE_EPS = {torch.float32: 1e-5, torch.float64: 0.0}


def _degenerate_below(gram: Tensor, eps: float) -> Tensor:
    """Per-pair threshold on squared distances under which a pair counts as coinciding."""
    sq = gram.diagonal(dim1=1, dim2=2)
    return eps + _RELATIVE_EPS.get(gram.dtype, 1e-5) * (sq.unsqueeze(2) + sq.unsqueeze(1))


def _safe_pow(d2: Tensor, exponent: float, eps: float | Tensor) -> Tensor:
    """``d2 ** exponent`` where ``d2 > eps`` and exactly 0 elsewhere, with finite gradients.

    The inner ``where`` keeps sqrt/rsqrt away from 0 so its backward never produces
    inf * 0 = NaN for the masked entries (the "double where" trick).
    """
    ok = d2 > eps
    safe = torch.where(ok, d2, torch.ones_like(d2))
    return torch.where(ok, safe.pow(exponent), torch.zeros_like(d2))


def distance_relations(items: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Normalised pairwise distances between the items of each image, ``(N, M, M)``.

    .. math::
        \psi_D(e_i, e_j) = \frac{\lVert e_i - e_j \rVert_2}{\mu},\qquad
        \mu = \operatorname{mean}\{\lVert e_a - e_b \rVert_2 : a \neq b,\ \lVert e_a - e_b
        \rVert_2 > 0\}

    with ``mu`` computed per image. Pairs whose squared distance is ``<= eps`` (the diagonal,
    coinciding items) get distance 0 and no gradient. Computed in at least float32.
    """
    with torch.autocast(device_type=items.device.type, enabled=False):
        gram = _centred_gram(items)
        d = _safe_pow(_squared_distances(gram), 0.5, _degenerate_below(gram, eps))
        count = (d > 0).sum(dim=(1, 2), keepdim=True).clamp_min(1)
        mean = d.sum(dim=(1, 2), keepdim=True) / count
        # An image whose items all coincide has mean 0: its relations stay 0 instead of NaN.
        return d / mean.clamp_min(eps)


def angle_relations(items: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Cosines of all triplet angles per image, ``(N, M, M, M)`` indexed ``[n, j, i, k]``.

    .. math::
        \psi_A(e_i, e_j, e_k) = \left\langle \frac{e_i - e_j}{\lVert e_i - e_j \rVert},
        \frac{e_k - e_j}{\lVert e_k - e_j \rVert} \right\rangle
        = \frac{G_{ik} - G_{ij} - G_{jk} + G_{jj}}
               {\sqrt{(G_{ii} - 2G_{ij} + G_{jj})(G_{kk} - 2G_{kj} + G_{jj})}}

    with ``G = E E^T`` the Gram matrix of the (centred) items: the ``(M, M, M)`` tensor comes
    from the ``(M, M)`` Gram matrix by broadcasting, never materialising the ``(M, M, D)``
    difference vectors of the usual implementation (256 rows x 768 values: 3x less memory,
    and the ``D`` dimension drops out of the cubic term). A degenerate side (``i == j``,
    ``k == j`` or coinciding items, squared length ``<= eps``) gives cosine 0. Computed in at
    least float32, even under autocast.
    """
    with torch.autocast(device_type=items.device.type, enabled=False):
        gram = _centred_gram(items)
        inv_len = _safe_pow(_squared_distances(gram), -0.5, _degenerate_below(gram, eps))  # 1/|e_i - e_j|
        diag = gram.diagonal(dim1=1, dim2=2)
        # dot[n, j, i, k] = <e_i - e_j, e_k - e_j>; G is symmetric so G_ij = gram[n, j, i].
        dot = gram.unsqueeze(1) - gram.unsqueeze(3)
        dot = dot - gram.unsqueeze(2)
        dot = dot + diag[:, :, None, None]
        return dot * inv_len.unsqueeze(3) * inv_len.unsqueeze(2)


# --------------------------------------------------------------------------------------------
# RKD


def rkd_distance_loss(student: Tensor, teacher: Tensor, eps: float = 1e-12) -> Tensor:
    r"""RKD distance term (Park et al., "Relational Knowledge Distillation", CVPR 2019).

    .. math::
        \mathcal{L}_D = \frac{1}{N} \sum_n \frac{1}{M^2} \sum_{i,j}
        \ell_\delta\big(\psi_D(s^n_i, s^n_j) - \psi_D(t^n_i, t^n_j)\big)

    with :func:`distance_relations` as :math:`\psi_D` and :math:`\ell_\delta` the smooth-L1
    (Huber) function with ``beta = 1``. All images have ``M`` items, so the mean over the
    ``N * M^2`` entries equals the mean over images of the per-image means.

    Args:
        student: ``(N, M, D_s)`` student items.
        teacher: ``(N, M, D_t)`` teacher items; carries no gradient.
        eps: squared distances ``<= eps`` count as zero.

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs).
    """
    _check_pair_items(student, teacher)
    with torch.no_grad():
        t = distance_relations(teacher.detach(), eps)
    s = distance_relations(student, eps)
    return F.smooth_l1_loss(s, t, beta=1.0, reduction="mean")


def _angle_parts(items: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(G, a, r)`` with ``cos[n, j, i, k] = r_ji r_jk (G_ik - a_ji - a_jk)``:
    ``a_ji = G_ji - G_jj / 2`` and ``r_ji = 1 / |e_i - e_j|`` (0 for a degenerate side)."""
    gram = _centred_gram(items)
    inv_len = _safe_pow(_squared_distances(gram), -0.5, _degenerate_below(gram, eps))
    return gram, gram - gram.diagonal(dim1=1, dim2=2).unsqueeze(2) / 2, inv_len


def _cosines(gram: Tensor, a: Tensor, r: Tensor) -> Tensor:
    """``cos[..., j, i, k]`` for a block of anchors ``j``: ``gram`` ``(..., M, M)``, ``a``/``r``
    ``(..., C, M)`` (the leading dimension, when present, is a block of images)."""
    return (gram.unsqueeze(-3) - a.unsqueeze(-1) - a.unsqueeze(-2)) * r.unsqueeze(-1) * r.unsqueeze(-2)


def _angle_loss_and_grads(g: Tensor, a_s: Tensor, rs: Tensor, gt: Tensor, a_t: Tensor, rt: Tensor):
    """For a block of images and of anchors ``j`` (``a``/``r``: ``(B, C, M)``; Gram matrices
    ``(B, M, M)``): the smooth-L1 sum over the block's triplets and its gradients w.r.t.
    ``(G, a, r)`` of the student, in one pass over the ``(B, C, M, M)`` cubic block. With ``S``/``T``
    the student/teacher cosines, ``R = clamp(S - T, -1, 1)`` (the Huber derivative) and
    ``W = R r_ji r_jk``: ``dL/dG_ik = sum_j W_jik``, ``dL/da_ji = -2 sum_k W_jik``,
    ``dL/dr_ji = 2 sum_k R_jik S_jik / r_ji`` (the factors 2 come from the symmetry of ``S`` and
    ``T`` in ``i`` and ``k``)."""
    cos_s = _cosines(g, a_s, rs)
    diff = cos_s - _cosines(gt, a_t, rt)
    absd = diff.abs()
    quad = absd.clamp(max=1.0)
    huber = (quad * (absd - 0.5 * quad)).sum()
    slope = diff.clamp(-1.0, 1.0)
    weighted = slope * rs.unsqueeze(-1) * rs.unsqueeze(-2)
    return huber, weighted.sum(-3), weighted.sum(-1), (slope * cos_s).sum(-1)


# Blocks on a CPU: one image and 8 anchors at a time, so the (C, M, M) block stays in cache.
# Measured for 256 rows (forward and gradient, 2 CPU cores, compiled): all 256 anchors at once
# 53 ms, blocks of 64 / 16 / 8 / 4: 39 / 18 / 16 / 17 ms.
ANCHOR_CHUNK = 8
# Elsewhere (a GPU) the cost is the number of calls, not the cache: every image at once and as
# many anchors as keep the cubic block under this many elements (64 MiB in fp32). Per image and
# per 8 anchors, a batch of 64 at 128 px made ~2200 calls a step: 5 s a step on an H200.
GPU_BLOCK_ELEMENTS = 1 << 24


def _blocking(x: Tensor) -> tuple[int, int]:
    """``(images, anchors)`` per kernel call for items ``x`` ``(N, M, ...)``."""
    n, m = x.shape[:2]
    if x.device.type == "cpu":
        return 1, ANCHOR_CHUNK
    return n, max(1, min(m, GPU_BLOCK_ELEMENTS // (n * m * m)))


def _angle_sums(kernel, gs: Tensor, a_s: Tensor, rs: Tensor, gt: Tensor, a_t: Tensor, rt: Tensor):
    """:func:`_angle_loss_and_grads` over every block of images and anchors, summed."""
    huber = gs.new_zeros(())
    d_gram, d_a, d_r = torch.zeros_like(gs), torch.empty_like(a_s), torch.empty_like(rs)
    per_call, chunk = _blocking(gs)
    for n in range(0, gs.shape[0], per_call):
        images = slice(n, n + per_call)
        for j in range(0, gs.shape[1], chunk):
            block = (images, slice(j, j + chunk))
            h, dg, da, dr = kernel(gs[images], a_s[block], rs[block], gt[images], a_t[block], rt[block])
            huber = huber + h
            d_gram[images] += dg
            d_a[block], d_r[block] = da, dr
    return huber, d_gram, d_a, d_r


_compiled_kernel = None


def _traced() -> bool:
    """Whether a torch dispatch mode is active (the FLOP counter, other tracing tools). The
    compiled kernel called under one is compiled again for it, and afterwards every training
    step ran 1.5x slower (188 -> 284 ms, the main job on a 2-core Xeon): traced calls run eager."""
    try:
        from torch.utils._python_dispatch import is_in_torch_dispatch_mode
    except ImportError:  # a torch without it: nothing to guard
        return False
    return is_in_torch_dispatch_mode()


def _angle_kernel(x: Tensor):
    """The fused per-block kernel: ``torch.compile``d when possible (one loop nest, no cubic
    tensor in memory; with 8-anchor blocks, 256 rows forward+backward take 16 ms on 2 CPU cores),
    eager otherwise. ``CRD_EDGE_COMPILE=0`` forces eager; so does any failure to compile (no C++
    compiler, an unsupported device)."""
    global _compiled_kernel
    if os.environ.get("CRD_EDGE_COMPILE", "1") == "0" or x.dtype == torch.float64 or _traced():
        return _angle_loss_and_grads
    if _compiled_kernel is None:
        try:
            _compiled_kernel = torch.compile(_angle_loss_and_grads, dynamic=False)
        except Exception:  # torch.compile unavailable on this platform
            _compiled_kernel = _angle_loss_and_grads
    return _compiled_kernel


class _AngleLoss(torch.autograd.Function):
    """Sum of smooth-L1 over the angle relations, with the analytic gradient computed in the
    forward pass: nothing cubic is kept for the backward (autograd would keep ~3 cubic tensors,
    64 MiB each per image for 256 rows) and nothing is recomputed."""

    @staticmethod
    def forward(ctx, gs, a_s, rs, gt, a_t, rt):
        global _compiled_kernel
        kernel = _angle_kernel(gs)
        try:
            huber, d_gram, d_a, d_r = _angle_sums(kernel, gs, a_s, rs, gt, a_t, rt)
        except Exception:
            if kernel is _angle_loss_and_grads:
                raise
            _compiled_kernel = _angle_loss_and_grads  # compilation failed at first call: stay eager
            huber, d_gram, d_a, d_r = _angle_sums(_angle_loss_and_grads, gs, a_s, rs, gt, a_t, rt)
        inv_r = torch.where(rs > 0, 1.0 / rs.clamp_min(torch.finfo(rs.dtype).tiny), torch.zeros_like(rs))
        ctx.save_for_backward(d_gram, -2 * d_a, 2 * d_r * inv_r)
        return huber

    @staticmethod
    def backward(ctx, grad):
        d_gram, d_a, d_r = ctx.saved_tensors
        return grad * d_gram, grad * d_a, grad * d_r, None, None, None


def rkd_angle_loss(student: Tensor, teacher: Tensor, eps: float = 1e-12) -> Tensor:
    r"""RKD angle term (Park et al., CVPR 2019), over all ordered triplets of each image.

    .. math::
        \mathcal{L}_A = \frac{1}{N} \sum_n \frac{1}{M^3} \sum_{i,j,k}
        \ell_\delta\big(\psi_A(s^n_i, s^n_j, s^n_k) - \psi_A(t^n_i, t^n_j, t^n_k)\big)

    with :func:`angle_relations` as :math:`\psi_A` (cosine of the angle at ``j``) and
    :math:`\ell_\delta` smooth-L1 with ``beta = 1``. The cubic part runs in one fused kernel
    (see ``_AngleLoss``) that returns the loss and its gradient w.r.t. the per-image Gram
    matrix; the rest (Gram matrix, lengths) is differentiated by autograd. Equal to the
    straightforward ``smooth_l1_loss(angle_relations(s), angle_relations(t))`` (tested).

    Args:
        student: ``(N, M, D_s)`` student items.
        teacher: ``(N, M, D_t)`` teacher items; carries no gradient.
        eps: squared lengths ``<= eps`` count as degenerate (cosine 0).
    """
    _check_pair_items(student, teacher)
    with torch.autocast(device_type=student.device.type, enabled=False):
        with torch.no_grad():
            teacher_parts = _angle_parts(teacher.detach(), eps)
        total = _AngleLoss.apply(*_angle_parts(student, eps), *teacher_parts)
        n, m = student.shape[:2]
        return total / (n * m ** 3)


def rkd_loss(student: Tensor, teacher: Tensor, distance_weight: float = 1.0,
             angle_weight: float = 2.0, eps: float = 1e-12) -> Tensor:
    r"""Relational KD loss :math:`w_D \mathcal{L}_D + w_A \mathcal{L}_A` (RKD paper: 1 and 2).

    See :func:`rkd_distance_loss` and :func:`rkd_angle_loss`; a term with weight 0 is skipped.
    Inputs are ``(N, M, D)`` item sets; teacher relations carry no gradient.
    """
    _check_pair_items(student, teacher)
    loss = student.new_zeros((), dtype=_compute_dtype(student))
    if distance_weight:
        loss = loss + distance_weight * rkd_distance_loss(student, teacher, eps)
    if angle_weight:
        loss = loss + angle_weight * rkd_angle_loss(student, teacher, eps)
    return loss


# --------------------------------------------------------------------------------------------
# CRD


def crd_loss(student_img: Tensor, teacher_img: Tensor, rows: float = 25.0,
             columns: float = 25.0, patches: float = 25.0, patch_size: int = 32,
             distance_weight: float = 1.0, angle_weight: float = 2.0) -> dict[str, Tensor]:
    r"""Content Relationship Distillation loss terms (You et al. 2022, arXiv 2212.11091).

    .. math::
        \mathcal{L}_{CRD} = w_r\,\mathrm{RKD}(\mathrm{rows}(s), \mathrm{rows}(t))
        + w_c\,\mathrm{RKD}(\mathrm{cols}(s), \mathrm{cols}(t))
        + w_p\,\mathrm{RKD}(\mathrm{patches}(s), \mathrm{patches}(t))

    with :func:`rkd_loss` (distance + 2 x angle) and the reference CycleGAN weights 25/25/25.

    Args:
        student_img: ``(N, C, H, W)`` student generator output.
        teacher_img: same shape, teacher generator output; carries no gradient.
        rows, columns, patches: term weights; a term with weight 0 is not computed.
        patch_size: side of the non-overlapping patches; must divide ``H`` and ``W``.
        distance_weight, angle_weight: the RKD mix inside each term (RKD paper: 1 and 2).

    Returns:
        The weighted terms ``{"crd_rows", "crd_columns", "crd_patches"}`` (those with a
        non-zero weight), scalar tensors; sum them for the total.
    """
    _check_pair_images(student_img, teacher_img)
    if patches:  # fail before the expensive row and column terms are computed
        _check_patch(patch_size, *student_img.shape[-2:])
    slicers = {
        "crd_rows": (rows, rows_of),
        "crd_columns": (columns, columns_of),
        "crd_patches": (patches, lambda x: patches_of(x, patch_size)),
    }
    terms: dict[str, Tensor] = {}
    for name, (weight, slice_fn) in slicers.items():
        if weight:
            terms[name] = weight * rkd_loss(slice_fn(student_img), slice_fn(teacher_img),
                                            distance_weight, angle_weight)
    return terms


class RKDLoss(nn.Module):
    """Module form of :func:`rkd_loss`."""

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight
        self.eps = eps

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return rkd_loss(student, teacher, self.distance_weight, self.angle_weight, self.eps)

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"


class CRDLoss(nn.Module):
    """Module form of :func:`crd_loss`; returns the dict of weighted terms."""

    def __init__(self, rows: float = 25.0, columns: float = 25.0, patches: float = 25.0,
                 patch_size: int = 32) -> None:
        super().__init__()
        self.rows = rows
        self.columns = columns
        self.patches = patches
        self.patch_size = patch_size

    def forward(self, student_img: Tensor, teacher_img: Tensor) -> dict[str, Tensor]:
        return crd_loss(student_img, teacher_img, self.rows, self.columns, self.patches,
                        self.patch_size)

    def extra_repr(self) -> str:
        return (f"rows={self.rows}, columns={self.columns}, patches={self.patches}, "
                f"patch_size={self.patch_size}")
