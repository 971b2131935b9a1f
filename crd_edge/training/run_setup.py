"""What a distillation run trains with, built and checked in order before any step: the data, the
teacher (frozen or online), the student and how it starts, the losses' networks (VGG, the
discriminator, the feature distiller's adapters), the teacher cache, and the optimiser with its
LR schedule. Every refusal comes here, before the run folder exists and before any labelling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from crd_edge._io import write_json
from crd_edge.config import RunConfig, validate
from crd_edge.data import build_dataset
from crd_edge.errors import UserError
from crd_edge.models import create_model, model_entry
from crd_edge.runtime.teachers import load_teacher
from crd_edge.training import distributed as D
from crd_edge.training.feature_distill import FeatureDistiller, parse_points
from crd_edge.training.objective import needs_vgg
from crd_edge.training.teacher_cache import TeacherOutputCache
from crd_edge.training.views_run import ViewTraining


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (AMX) or instructions (AVX512-BF16). Elsewhere torch
    emulates bf16 and a bf16 step is slower than an fp32 one."""
    has = (getattr(torch.cpu, name, lambda: False) for name in ("_is_amx_tile_supported",
                                                                 "_is_avx512_bf16_supported"))
    return any(check() for check in has)


def mixed_precision(wanted: bool, device: torch.device) -> torch.dtype | None:
    """The autocast type of a run's training step, or None (fp32): fp16 on CUDA; bf16 on a CPU
    that computes it natively (a main-job step of the inherited student, batch 8 at 128 px, on a
    2-core Xeon with AMX: 151 ms against 253 in fp32, docs/distill.md). Losses that need the
    range (the CRD relations, the VGG Gram terms, the GAN terms) compute in fp32 under it."""
    if not wanted:
        return None
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_computes_bf16() else None


def lr_lambda(total_steps: int, decay_from: float):
    """Constant LR for the first ``decay_from`` of the run, then linear decay to 0 (the paper's
    100 + 100 epochs is ``decay_from=0.5``)."""
    start = int(total_steps * decay_from)

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    return factor


@dataclass
class Discriminator:
    """The D of a run's GAN term (``net`` None: no GAN term) and how the report describes it."""
    net: nn.Module | None
    opt: torch.optim.Optimizer | None  # None: this run does not train ``net`` (off, or the online teacher's)
    conditional: bool  # D sees the input beside the image (paired data; on the views path, loss.gan_d)
    mode: str  # "lsgan" or "hinge"
    note: str


class RunSetup:
    """One run's networks, data and optimisers, built in ``__init__`` in the order that makes a
    refusal cheap (the torch seed is set before: the same order gives the same weights)."""

    def __init__(self, cfg: RunConfig, device: torch.device, dist) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        self.amp_dtype = mixed_precision(cfg.train.amp, device)
        self.amp = self.amp_dtype is not None
        self.online = cfg.teacher.mode == "online"
        # The frozen teacher before the data: it may set the size.
        offline_teacher = None if self.online else load_offline_teacher(cfg, device, dist)
        self.train_set, self.test_set, has_targets, conditional, self.steps_per_epoch = _data(cfg, dist)
        self.total = cfg.train.steps or cfg.train.epochs * self.steps_per_epoch
        if self.online:
            from crd_edge.training.online import OnlineTeacher
            self.teacher = OnlineTeacher(cfg, device, conditional=conditional, dist=dist, has_targets=has_targets,
                                         lr_factor=lr_lambda(self.total, cfg.optim.decay_from))
        else:
            self.teacher = offline_teacher
        if model_entry(cfg.student.arch).kind != "generator":
            raise UserError(f"--student {cfg.student.arch} is a {model_entry(cfg.student.arch).kind}, not a generator")
        self.student = create_model(cfg.student.arch, **cfg.student.kwargs).to(device)
        # Before the views: a refusal costs no labelling.
        self.init_note = check_init(cfg, self.student, self.teacher, self.online, dist)
        self.vgg, self.vgg_info = None, None
        if needs_vgg(cfg.loss):
            from crd_edge.models.vgg import load_vgg16
            vgg, weights = load_vgg16(cfg.loss.vgg_weights)
            self.vgg, self.vgg_info = vgg.to(device), weights.description
        # The view-based path (data.views > 0): teacher-labelled views, no dataset.
        self.views = ViewTraining.build(cfg, self.teacher, device) if cfg.data.views else None
        self.inherited = None  # the inheritance plan (which teacher channels the student kept)
        gan = build_discriminator(cfg, self.teacher, device, online=self.online, views=self.views is not None,
                                  has_targets=has_targets, conditional=conditional)
        self.disc, self.opt_d, self.conditional, self.gan_mode, self.gan_note = (
            gan.net, gan.opt, gan.conditional, gan.mode, gan.note)
        self.cache = build_cache(cfg, self.teacher, self.train_set, device, views=self.views is not None)
        self.features = build_feature_distiller(cfg, self.student, self.teacher, device, online=self.online)
        if cfg.train.channels_last:
            # NHWC tensors: oneDNN's CPU convolutions (and cuDNN's) can run without layout reorders
            # between layers. Off by default: on a 2-core AMD CPU a step of the inherited student
            # (batch 8, 128 px) measured 1.2x once and 0.93x once, i.e. no gain beyond noise.
            self.student.to(memory_format=torch.channels_last)
            if self.disc is not None and self.opt_d is not None:
                self.disc.to(memory_format=torch.channels_last)
        self.model = nn.parallel.DistributedDataParallel(self.student) if dist.enabled else self.student
        trained = [*self.student.parameters(), *(self.features.adapters.parameters() if self.features else [])]
        self.opt = torch.optim.Adam(trained, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(self.total, cfg.optim.decay_from))
        # Loss scaling guards fp16's narrow range; bf16 has fp32's exponent and needs none.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def inherit_teacher(self, run_dir: Path | None) -> None:
        """Prune the teacher's weights into the student (a new run with student.init teacher)."""
        from crd_edge.models.inherit import inherit_into
        if self.views is not None:
            images = self.views.fit_x
        else:
            images = torch.stack([self.train_set[i]["A"] for i in range(min(64, len(self.train_set)))])
        self.inherited = inherit_into(self.student, self.teacher.module, images).as_dict()
        if self.dist.is_main and run_dir is not None:
            write_json(run_dir / "inherit.json", self.inherited)

    def disk_needed(self) -> int:
        """Bytes the run folder needs at the least: two checkpoints (the new one is written beside
        the old, then renamed), each every trained weight with Adam's two moments, and 4 MB for
        the report, curves, grids and samples."""
        trained = [self.student, self.disc, self.features.adapters if self.features else None,
                   *(self.teacher.networks() if self.online else [])]
        weights = sum(p.numel() * p.element_size() for m in trained if m is not None for p in m.parameters())
        return 2 * 3 * weights + (4 << 20)


def _data(cfg: RunConfig, dist):
    """(train set, test set, whether it has real targets, whether A and B are aligned pairs,
    steps per epoch); no datasets on the view-based path."""
    dc = cfg.data
    if dc.views:
        if dist.enabled:
            raise UserError("data.views runs on one process; launch without torchrun (or set data.views=0)")
        return None, None, False, False, max(1, dc.views // dc.batch_size)
    train_set, test_set = datasets(cfg)
    steps_per_epoch = len(D.shard_epoch(len(train_set), 0, cfg.train.seed, dc.batch_size, dist))
    return train_set, test_set, "B" in train_set[0], train_set.paired, steps_per_epoch


def datasets(cfg: RunConfig):
    """The training set and, where the data has a held-out split, the test set."""
    dc = cfg.data
    train_set = build_dataset(dc.data, dc.layout, "train", dc.size, dc.load_size, seed=cfg.train.seed)
    try:
        test_set = build_dataset(dc.data, dc.layout, "test", dc.test_size, dc.test_size, seed=cfg.train.seed)
    except UserError:
        test_set = None  # e.g. a CycleGAN folder without testA/
    if test_set is not None and not test_set.has_test_split:
        test_set = None  # a plain folder has no held-out split: never score on training images
    return train_set, test_set


def load_offline_teacher(cfg: RunConfig, device: torch.device, dist):
    """The frozen teacher. One exported with a fixed input size (most ONNX generators are) is
    run at that size only: training crops, views and held-out crops follow it, with a note,
    before any data is read or labelled."""
    if cfg.teacher.source is None:
        raise UserError("offline distillation needs --teacher FILE (or --set teacher.mode=online)")
    teacher = load_teacher(cfg.teacher.source, cfg.teacher.arch, cfg.teacher.kwargs, device)
    static, dc = teacher.static_size, cfg.data
    if static is None or static == (dc.size, dc.size):
        return teacher
    if static[0] != static[1]:
        raise UserError(f"--teacher {cfg.teacher.source}: it takes {static[0]}x{static[1]} inputs only and "
                        "training uses square crops: export it with dynamic height and width, or at a square size")
    if dist.is_main:
        warnings.warn(f"--teacher {cfg.teacher.source} takes {static[0]}x{static[1]} inputs only: training "
                      f"crops, views and held-out crops are {static[0]} px (not {dc.size})", stacklevel=1)
    dc.size = static[0]
    dc.load_size = max(dc.load_size, dc.size)
    dc.view_max_short = max(dc.view_max_short, dc.size)
    try:  # the new size must suit the student and the loss terms, as a --size would
        validate(cfg)
    except UserError as exc:
        raise UserError(f"--teacher {cfg.teacher.source} takes {static[0]} px inputs only, so training runs "
                        f"at that size, and {exc}") from None
    return teacher


def check_init(cfg: RunConfig, student: nn.Module, teacher, online: bool, dist) -> str:
    """Whether the student starts from the teacher's weights (student.init), decided before any
    heavy work; returns the report's note. ``teacher`` that cannot be done is an error, ``auto``
    falls back to random weights with a one-line note."""
    from crd_edge.models.inherit import inheritable, layout_mismatch
    init = cfg.student.init
    if init == "random":
        return "random"
    if not student.crd_spec["kwargs"].get("channels"):
        if init == "teacher":
            raise UserError(f"student.init=teacher: the student {cfg.student.arch} is not a pruned teacher "
                            "layout (use --student resnet_9blocks_inherited); or student.init=random")
        return "random"  # auto: this student has no layout to inherit into
    module = getattr(teacher, "module", None)
    why = "the teacher is trained online" if online else inheritable(module)
    why = why or layout_mismatch(student, module)
    if why is None:
        return "teacher"
    if init == "teacher":
        raise UserError(f"student.init=teacher: {why}; use student.init=random (or auto)")
    if dist.is_main:
        warnings.warn(f"the student starts from random weights: {why}", stacklevel=1)
    return f"random ({why})"


def build_discriminator(cfg: RunConfig, teacher, device: torch.device, *, online: bool, views: bool,
                        has_targets: bool, conditional: bool) -> Discriminator:
    """The D of the GAN term: a new PatchGAN on the views path, the online teacher's, or the
    frozen teacher's own one, trained here. ``conditional``: whether the data's A and B are pairs."""
    # The teacher's discriminator judges real target-domain images against teacher outputs;
    # with no real targets (built-in photos, a plain folder) there is nothing to judge with.
    use_gan = cfg.loss.gan > 0 and (has_targets or online or views)
    disc = opt_d = None
    if use_gan and views:
        # Adversarial distillation: this D learns the teacher's outputs (real) from the
        # student's (fake) on the same views, so it needs no target-domain photos.
        conditional = cfg.loss.gan_d == "conditional"
        disc = create_model("patchgan", in_channels=6 if conditional else 3, ndf=cfg.loss.d_ndf,
                            n_layers=cfg.loss.d_layers).to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.optim.d_lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    elif use_gan and online:
        disc = teacher.discriminator  # trained by the online teacher, frozen for the student
    elif use_gan:
        disc = create_model("patchgan_pix2pix" if conditional else "patchgan").to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    if use_gan and conditional and cfg.data.color_jitter > 0:
        raise UserError("data.color_jitter would break the conditional discriminator's real pairs: "
                        "set loss.gan=0 or data.color_jitter=0")
    mode = cfg.loss.gan_mode if views else getattr(teacher, "gan_mode", "lsgan")
    note = (
        f"on: {mode}, a {cfg.loss.gan_d} PatchGAN (ndf {cfg.loss.d_ndf}) learns teacher outputs (real) "
        "from student outputs (fake)" if use_gan and views else
        "on: LSGAN through the teacher discriminator" if use_gan else
        "off: no real target-domain images to train the teacher discriminator on" if cfg.loss.gan > 0
        else "off (weight 0)")
    return Discriminator(disc, opt_d, conditional, mode, note)


def build_cache(cfg: RunConfig, teacher, train_set, device: torch.device, *, views: bool) -> TeacherOutputCache | None:
    """The frozen teacher's output cache, where ``teacher.cache`` asks for one and it pays."""
    dc, teacher_cfg = cfg.data, cfg.teacher
    if views or teacher_cfg.mode != "offline":
        return None
    if teacher_cfg.cache == "full" and dc.color_jitter > 0:
        raise UserError("teacher.cache=full cannot be combined with data.color_jitter; use exact or off")
    # Views repeat with no random crop (an image and its mirror) or with a fixed cycle of K
    # augmentations per image: then the exact cache runs the teacher at most 2 or K times an image.
    views_repeat = dc.augment_views > 0 or (dc.load_size == dc.size and dc.color_jitter == 0)
    if teacher_cfg.cache == "full" or (teacher_cfg.cache == "exact" and views_repeat):
        return TeacherOutputCache(teacher, train_set.load_full, device, full_image=teacher_cfg.cache == "full")
    return None


def build_feature_distiller(cfg: RunConfig, student: nn.Module, teacher, device: torch.device, *,
                            online: bool) -> FeatureDistiller | None:
    """The intermediate-feature term's hooks and adapters (``loss.distill_features``), if on."""
    loss = cfg.loss
    if not loss.distill_features:
        return None
    module = getattr(teacher, "module", None)
    if online or module is None:
        raise UserError("loss.distill_features reads the teacher's activations: it needs a white-box teacher "
                        "(a state dict, a crd-edge checkpoint or vintagify), not an ONNX one; "
                        "set loss.distill_features=0")
    probe = torch.zeros(1, 3, cfg.data.size, cfg.data.size, device=device)
    return FeatureDistiller(student, module, parse_points(loss.distill_points), loss.distill_features, probe)
