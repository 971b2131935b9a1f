"""Students that inherit their teacher's weights: the teacher's ResNet generator pruned to
narrower layers (CAT, Jin et al. 2021; GAN Slimming, Wang et al. 2020), to be distilled after.

A student trained from random weights must rediscover from a few hundred photos what the teacher
already computes; a pruned teacher starts with the teacher's filters, its InstanceNorm layers (the
per-image statistics through which a CycleGAN generator makes its per-photo colour change) and
its layout. Which channels stay is decided by measured importance on real views: the mean
magnitude of a channel's activation where the next layer reads it, times the norm of the weights
that read it. Normalisation scales (CAT's criterion) cannot decide here: a teacher trained
without a sparsity penalty has them all near 1 (vintagify: 0.87-1.24 in every layer).

Pruning keeps every layer and its order, so each student layer maps onto one teacher layer;
InstanceNorm re-normalises each kept channel, which makes the cut far gentler than in a
norm-free network. The teacher's ``ConvTranspose2d(k3, output_padding=1)`` is carried into a
``k4`` layer exactly (the 3x3 taps in the top-left of a zero 4x4 kernel give the same output at
the same size), because litert-torch converts only the latter.

A student with shuffle ends (``resnet_9blocks_inherited_shuffle``: space-to-depth in and
depth-to-space out, no layer at full resolution) keeps every teacher layer between its ends; its
two end convolutions have no teacher counterpart to slice, so they start from the least-squares
fit alone: the first to the teacher's down1 output, the last to the teacher's output arranged
space-to-depth. Measured against the conv7-ended default in docs/distill.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crd_edge.errors import UserError
from crd_edge.models.resnet import ResidualBlock, ResnetGenerator

__all__ = ["InheritPlan", "inheritable", "layout_mismatch", "inherit_into", "channel_importance"]


@dataclass(frozen=True)
class InheritPlan:
    """What the student keeps: per pruned layer, the teacher channel indices (sorted)."""

    channels: list[int]
    kept: dict[str, list[int]]

    def as_dict(self) -> dict:
        return {"channels": self.channels, "kept": self.kept}


def inheritable(module: nn.Module | None) -> str | None:
    """None when ``module`` can be pruned into a student, else why not (one phrase)."""
    if module is None:
        return "the teacher is a black box (ONNX): inheriting needs its weights"
    if not isinstance(module, ResnetGenerator):
        return f"the teacher is a {type(module).__name__}: inheriting needs a CycleGAN-layout ResNet generator"
    if module.input_skip or module.colour is not None or len(_convs(module)) < 5:
        return "the teacher's ResNet generator has an input skip or colour head, which inheriting does not carry over"
    if any(c.groups != 1 for c in _convs(module)):
        return "the teacher has depthwise (mobile) blocks; inheriting prunes plain convolutions"
    if not any(isinstance(m, nn.InstanceNorm2d) for m in module.modules()):
        return "the teacher has no InstanceNorm layers, which pruning relies on to re-normalise kept channels"
    if any(isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)) for m in module.modules()):
        return "the teacher has shuffle ends; inheriting needs conv7 ends"
    if any(isinstance(m, nn.Upsample) for m in module.modules()):
        return "the teacher upsamples by resizing; inheriting maps transposed convolutions"
    return None


def layout_mismatch(student: nn.Module, teacher: nn.Module) -> str | None:
    """None when ``student``'s widths (``channels``) fit inside the inheritable ``teacher``, else
    what differs (one phrase), so a run can refuse or fall back before any work."""
    channels = getattr(student, "crd_spec", {}).get("kwargs", {}).get("channels")
    if not isinstance(student, ResnetGenerator) or not channels:
        return ("the student must be a ResNet generator with per-layer widths (e.g. --student "
                "resnet_9blocks_inherited)")
    if any(isinstance(m, nn.Upsample) for m in student.modules()):
        return "the student upsamples by resizing; inheriting needs its transposed convolutions (upsample=convt4)"
    n = len(_blocks(teacher))
    if len(_blocks(student)) != n:
        return (f"the student has {len(_blocks(student))} residual blocks, the teacher {n}; set "
                "student.kwargs.n_blocks and student.kwargs.channels to match")
    convs = _convs(teacher)
    teacher_widths = [c.out_channels if isinstance(c, nn.Conv2d) else c.weight.shape[1] for c in convs]
    # stem, down1, stream (down2's output), each block's first conv, up1, up2
    widths = dict(zip(_group_names(n), teacher_widths[:3] + teacher_widths[3:3 + 2 * n:2]
                      + teacher_widths[3 + 2 * n:5 + 2 * n]))
    for name, width in zip(_group_names(n, _shuffled(student)), channels):
        have = widths[name]
        if not 1 <= width <= have:
            return f"student.kwargs.channels: {name} width {width} must be 1-{have} (the teacher's)"
    return None


def _group_names(n: int, shuffled: bool = False) -> list[str]:
    """The widths ``channels`` lists, in order; shuffle ends have no stem and no up2."""
    blocks = [f"block{i}" for i in range(n)]
    return ["down1", "stream", *blocks, "up1"] if shuffled else ["stem", "down1", "stream", *blocks, "up1", "up2"]


def _shuffled(student: nn.Module) -> bool:
    """Whether ``student`` has shuffle ends (space-to-depth in, depth-to-space out)."""
    return any(isinstance(m, nn.PixelUnshuffle) for m in student.modules())


def _convs(module: nn.Module) -> list[nn.Conv2d | nn.ConvTranspose2d]:
    # The generator's layers in forward order (a plain Sequential of convs and residual blocks).
    return [m for m in module.model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _norms(module: nn.Module) -> list[nn.InstanceNorm2d]:
    return [m for m in module.model.modules() if isinstance(m, nn.InstanceNorm2d)]


def _blocks(module: nn.Module) -> list[ResidualBlock]:
    return [m for m in module.model if isinstance(m, ResidualBlock)]


def _run_hooked(model: nn.Module, images: torch.Tensor, hooks: list, chunk: int) -> None:
    """``model`` over ``images`` in chunks with ``hooks`` (handles) in place, removed after."""
    try:
        for start in range(0, len(images), chunk):
            model(images[start:start + chunk])
    finally:
        for h in hooks:
            h.remove()


def _reader_norms(conv: nn.Module) -> torch.Tensor:
    """Per input channel, the L2 norm of the weights that read it."""
    w = conv.weight.detach()
    # Conv2d: (out, in, k, k); ConvTranspose2d: (in, out, k, k)
    return w.transpose(0, 1).flatten(1).norm(dim=1) if isinstance(conv, nn.Conv2d) else w.flatten(1).norm(dim=1)


@torch.no_grad()
def channel_importance(teacher: ResnetGenerator, images: torch.Tensor, batch: int = 16) -> dict[str, torch.Tensor]:
    """Importance of every prunable channel of ``teacher`` on ``images`` (NCHW, [-1, 1]).

    Groups: ``stem``, ``down1``, ``stream`` (the residual stream: down2's output and every block's
    output share its channels), ``block{i}`` (block i's inner width), ``up1``, ``up2``. A channel
    scores the mean |activation| that its readers see times the norm of their weights for it."""
    convs, blocks = _convs(teacher), _blocks(teacher)
    n = len(blocks)
    # The post-ReLU activation each group's readers see: the ReLU after stem, down1, up1, up2 and
    # each block's first stage; the stream at every block input and at up1's input.
    relus = [m for m in teacher.model if isinstance(m, nn.ReLU)]  # stem, down1, down2, up1, up2
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def record(name: str):
        def hook(module, inputs, output):
            sums[name] = sums.get(name, 0) + output.abs().mean((0, 2, 3)) * len(output)
        return hook

    for name, relu in zip(("stem", "down1", "stream0", "up1", "up2"), relus):
        hooks.append(relu.register_forward_hook(record(name)))
    for i, block in enumerate(blocks):
        inner_relu = next(m for m in block.conv_block if isinstance(m, nn.ReLU))
        hooks.append(inner_relu.register_forward_hook(record(f"block{i}")))
        hooks.append(block.register_forward_hook(record(f"stream{i + 1}")))
    _run_hooked(teacher, images, hooks, batch)
    mean = {k: v / len(images) for k, v in sums.items()}
    # Readers, in the order of _convs: stem, down1, down2, (conv1, conv2) x n, up1, up2, final.
    _, down1, down2, *block_convs = convs[:3 + 2 * n]
    up1, up2, final = convs[3 + 2 * n:]
    scores = {"stem": mean["stem"] * _reader_norms(down1), "down1": mean["down1"] * _reader_norms(down2),
              "up1": mean["up1"] * _reader_norms(up2), "up2": mean["up2"] * _reader_norms(final)}
    stream = mean[f"stream{n}"] * _reader_norms(up1)
    for i in range(n):
        scores[f"block{i}"] = mean[f"block{i}"] * _reader_norms(block_convs[2 * i + 1])
        stream = stream + mean[f"stream{i}"] * _reader_norms(block_convs[2 * i])
    scores["stream"] = stream
    return scores


def _plan(teacher: ResnetGenerator, scores: dict[str, torch.Tensor], channels: list[int],
          shuffled: bool) -> InheritPlan:
    """Each group's ``width`` most important channels (widths checked by :func:`layout_mismatch`)."""
    groups = _group_names(len(_blocks(teacher)), shuffled)
    kept = {group: sorted(scores[group].topk(width).indices.tolist()) for group, width in zip(groups, channels)}
    return InheritPlan(list(channels), kept)


@torch.no_grad()
def _copy(dst: nn.Module, src: nn.Module, out_idx: list[int] | None, in_idx: list[int] | None) -> None:
    w = src.weight.detach()
    if isinstance(src, nn.ConvTranspose2d):  # (in, out, k, k)
        w = w[in_idx] if in_idx is not None else w
        w = w[:, out_idx] if out_idx is not None else w
        k = w.shape[-1]
        dst.weight.zero_()
        dst.weight[..., :k, :k] = w  # k3 (output_padding 1) inside k4: the same map (module docstring)
    else:
        w = w[out_idx] if out_idx is not None else w
        dst.weight.copy_(w[:, in_idx] if in_idx is not None else w)
    if dst.bias is not None:
        dst.bias.copy_(src.bias[out_idx] if out_idx is not None else src.bias) if src.bias is not None else dst.bias.zero_()


def _zero_insert(x: torch.Tensor) -> torch.Tensor:
    """x with a zero row and column after every pixel but the last (a stride-2 dilation)."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, 2 * h - 1, 2 * w - 1)
    out[..., ::2, ::2] = x
    return out


@dataclass(frozen=True)
class _Link:
    """One student convolution's teacher layer: its index in the teacher's forward order, the
    teacher output and input channels it keeps (None: all, the RGB ends), and whether the
    weights can be sliced across (False for shuffle ends, whose layers the teacher does not have:
    they start from the least-squares fit alone)."""

    teacher: int
    out_idx: list[int] | None
    in_idx: list[int] | None
    sliced: bool = True


@torch.no_grad()
def _refit(student: ResnetGenerator, teacher: ResnetGenerator, links: list[_Link], images: torch.Tensor,
           ridge: float = 1e-3, chunk: int = 4, max_rows: int = 200_000) -> None:
    """Re-fit each of the student's convolutions, in forward order, by ridge least squares: from
    the student's own input to that layer (its earlier layers already re-fitted) to the teacher's
    output of the same layer at the kept channels (ThiNet, Luo et al. 2017; channel pruning, He
    et al. 2017). Slicing alone leaves each layer reading a quarter of the inputs it was trained
    on; the fit gives the start a layer-by-layer match instead. Transposed convolutions are
    written as plain convolutions and fitted the same way. A shuffle-ended student's first conv
    is fitted to the teacher's down1 output (from the space-to-depth input) and its last to the
    teacher's output arranged space-to-depth, which its depth-to-space undoes."""
    s_convs = _convs(student)
    generator = torch.Generator().manual_seed(0)  # one stream for every layer's row sample
    targets = _teacher_targets(teacher, links, images, chunk)
    for j, (conv, link) in enumerate(zip(s_convs, links, strict=True)):
        transposed = isinstance(conv, nn.ConvTranspose2d)
        if transposed and (conv.stride != (2, 2) or conv.padding != (1, 1) or conv.kernel_size != (4, 4)):
            continue  # only the k4/s2/p1 layer is written as a plain conv below
        captured, pad, stride = _layer_inputs(student, conv, images, chunk, transposed)
        ys_all, weights = targets[link.teacher], [None] * len(captured)
        last = j == len(s_convs) - 1
        if last:
            ys_all, weights = _output_targets(student, ys_all, images, chunk)
            if _shuffled(student):
                ys_all = [nn.functional.pixel_unshuffle(y, 2) for y in ys_all]
                weights = [nn.functional.pixel_unshuffle(w, 2) for w in weights]
        # One normal-equation system per output channel when rows are weighted per channel.
        systems = conv.out_channels if last else 1
        gram, cross = _normal_equations(conv, captured, ys_all, weights, pad, stride, systems, generator, max_rows)
        _write_fit(conv, _solve_ridge(gram, cross, ridge), transposed)


def _teacher_targets(teacher: ResnetGenerator, links: list[_Link], images: torch.Tensor,
                     chunk: int) -> dict[int, list]:
    """The outputs on ``images`` (a tensor per chunk) of each teacher convolution a student
    layer maps onto, at the output channels the student keeps of it."""
    t_convs = _convs(teacher)
    targets: dict[int, list[torch.Tensor]] = {link.teacher: [] for link in links}

    def keep(link):
        def hook(module, inputs, output):
            targets[link.teacher].append(output if link.out_idx is None else output[:, link.out_idx])
        return hook
    _run_hooked(teacher, images, [t_convs[link.teacher].register_forward_hook(keep(link)) for link in links], chunk)
    return targets


def _layer_inputs(student: ResnetGenerator, conv: nn.Module, images: torch.Tensor, chunk: int,
                  transposed: bool) -> tuple[list[torch.Tensor], tuple, tuple]:
    """What ``conv`` reads in the student as it is now (its earlier layers re-fitted), per chunk,
    with the padding and stride of the plain convolution fitted on it."""
    captured: list[torch.Tensor] = []
    _run_hooked(student, images, [conv.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))],
                chunk)
    pad, stride = conv.padding, conv.stride
    if transposed:
        # ConvTranspose(k4, s2, p1) = zeros inserted between the input's pixels, padded by
        # k - 1 - p = 2, then a plain conv with the kernel flipped and in/out swapped.
        captured = [_zero_insert(x) for x in captured]
        pad, stride = (2, 2), (1, 1)
    return captured, pad, stride


def _output_targets(student: ResnetGenerator, ys_all: list[torch.Tensor], images: torch.Tensor,
                    chunk: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The last conv's targets and per-pixel row weights.

    The last conv is fitted where it counts, in the output: each pre-tanh error weighted by the
    squared slope of tanh at the teacher's output (Gauss-Newton), or saturated pixels (pre-tanh
    values of 5 and more) would dominate the fit."""
    weights = [(1 - torch.tanh(y).pow(2)).pow(2) for y in ys_all]
    if student.input_skip:
        # With the input skip the last conv predicts the change of the input in tanh space
        # (ResnetGenerator.forward): the teacher's pre-tanh output minus atanh(x).
        inputs = [images[start:start + chunk] for start in range(0, len(images), chunk)]
        ys_all = [y - torch.atanh(x.clamp(-0.999, 0.999)) for y, x in zip(ys_all, inputs)]
    return ys_all, weights


def _normal_equations(conv: nn.Module, captured: list[torch.Tensor], ys_all: list[torch.Tensor], weights: list,
                      pad: tuple, stride: tuple, systems: int, generator: torch.Generator,
                      max_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(gram, cross) of the least-squares fit from ``conv``'s unfolded input (plus a bias column)
    to its targets, over a random sample of the rows; ``systems`` grams where rows are weighted
    per output channel, else one."""
    k = conv.kernel_size
    n_feat = conv.in_channels * k[0] * k[1] + 1
    cross = torch.zeros(n_feat, conv.out_channels, dtype=torch.float64)
    gram = torch.zeros(systems, n_feat, n_feat, dtype=torch.float64)
    rows_per_chunk = max(1, max_rows // len(captured))
    for x, y, w in zip(captured, ys_all, weights):
        cols = nn.functional.unfold(x, k, padding=pad, stride=stride)  # N x (C k k) x L
        cols = torch.cat([cols, torch.ones_like(cols[:, :1])], 1).transpose(1, 2).reshape(-1, n_feat)
        ys = y.flatten(2).transpose(1, 2).reshape(-1, conv.out_channels)
        # A fixed random subset of the rows: a few hundred thousand pixels determine at most
        # a thousand weights well, and full-resolution layers have millions.
        rows = torch.randperm(len(cols), generator=generator)[:rows_per_chunk]
        cols, ys = cols[rows].double(), ys[rows].double()
        if w is None:
            gram[0] += cols.T @ cols
            cross += cols.T @ ys
        else:
            ws = w.flatten(2).transpose(1, 2).reshape(-1, conv.out_channels)[rows].double()
            for c in range(systems):
                gram[c] += cols.T @ (cols * ws[:, c:c + 1])
                cross[:, c] += cols.T @ (ys[:, c] * ws[:, c])
    return gram, cross


def _solve_ridge(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
    """The (C k k + 1) x out solution, each system damped by ``ridge`` times its mean diagonal."""
    n_feat = gram.shape[-1]
    reg = ridge * gram.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * torch.eye(n_feat, dtype=torch.float64)
    if len(gram) == 1:
        return torch.linalg.solve(gram[0] + reg[0], cross)
    return torch.stack([torch.linalg.solve(gram[c] + reg[c], cross[:, c]) for c in range(len(gram))], 1)


def _write_fit(conv: nn.Module, solution: torch.Tensor, transposed: bool) -> None:
    """The fitted plain-conv weights (and bias) into ``conv``, flipped and swapped back for a
    transposed one."""
    weight = solution[:-1].T.reshape(conv.out_channels, conv.in_channels, *conv.kernel_size)
    if transposed:
        weight = weight.flip(-1, -2).transpose(0, 1)
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.copy_(solution[-1].to(conv.bias.dtype))


def inherit_into(student: nn.Module, teacher: nn.Module, images: torch.Tensor, *, refit: bool = True,
                 max_images: int = 32) -> InheritPlan:
    """Overwrite ``student``'s weights with ``teacher``'s pruned to the student's widths (its
    ``channels``), the channels chosen by :func:`channel_importance` on ``images`` (NCHW, [-1, 1]).
    The student is built by the registry as usual (``resnet_9blocks_inherited``), so a checkpoint
    rebuilds it like any other; only its starting weights differ. With ``refit=False`` a
    shuffle-ended student's two end convolutions keep their random initialisation."""
    why = inheritable(teacher)
    if why:
        raise UserError(f"student.init=teacher: {why}; use student.init=random")
    mismatch = layout_mismatch(student, teacher)
    if mismatch:
        raise UserError(f"student.init=teacher: {mismatch}")
    n = len(_blocks(teacher))
    # 32 views measure importance and fit every layer well (the fit keeps 200 k pixels a layer);
    # each view costs two teacher passes, which dominate the minute this takes on 2 CPU cores.
    images = images[:max_images].to(next(teacher.parameters()).device)
    was = teacher.training
    teacher.eval()
    scores = channel_importance(teacher, images)
    teacher.train(was)
    shuffled = _shuffled(student)
    plan = _plan(teacher, scores, student.crd_spec["kwargs"]["channels"], shuffled)
    links = _links(plan.kept, n, shuffled)
    student_norms, teacher_norms = _norms(student), _norms(teacher)
    if len(student_norms) != len(links) - 1:
        raise UserError("student.init=teacher: the student needs a normalisation layer after every conv but the "
                        "last, as the teacher has (student.kwargs.norm=instance)")
    t_convs = _convs(teacher)
    for dst, link in zip(_convs(student), links, strict=True):
        if link.sliced:
            _copy(dst, t_convs[link.teacher], link.out_idx, link.in_idx)
    # The teacher has a norm after every conv but its last, so a conv's index is its norm's.
    for dst, link in zip(student_norms, links):
        src = teacher_norms[link.teacher]
        if src.affine and dst.affine:
            dst.weight.data.copy_(src.weight[link.out_idx])
            dst.bias.data.copy_(src.bias[link.out_idx])
    if refit:
        was = student.training
        student.eval()
        _refit(student, teacher, links, images)
        student.train(was)
    return plan


def _links(k: dict[str, list[int]], n: int, shuffled: bool) -> list[_Link]:
    """Each student conv's teacher layer, in forward order. The teacher's convs: stem (0),
    down1, down2, (conv1, conv2) x n blocks, up1, up2, final (5 + 2n)."""
    up1 = 3 + 2 * n
    if shuffled:  # no stem, no up2: one conv in at half resolution, one out (fitted only)
        links = [_Link(1, k["down1"], None, sliced=False), _Link(2, k["stream"], k["down1"])]
    else:
        links = [_Link(0, k["stem"], None), _Link(1, k["down1"], k["stem"]), _Link(2, k["stream"], k["down1"])]
    for i in range(n):
        links += [_Link(3 + 2 * i, k[f"block{i}"], k["stream"]), _Link(4 + 2 * i, k["stream"], k[f"block{i}"])]
    links.append(_Link(up1, k["up1"], k["stream"]))
    if shuffled:
        return [*links, _Link(up1 + 2, None, None, sliced=False)]
    return [*links, _Link(up1 + 1, k["up2"], k["up1"]), _Link(up1 + 2, None, k["up2"])]
