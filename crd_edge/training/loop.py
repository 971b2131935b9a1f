"""``distill(config)``: the offline/online CRD training loop, read top to bottom.

One student step: (optionally) update the teacher's discriminator, get the teacher's output for
the batch, run the student, add up the weighted terms of ``objective.student_losses``, step the
optimiser. Everything around it (logging, samples, checkpoints, Ctrl-C, resume, DDP) is here
too, in order, so the whole run reads in one place.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import threading
import time
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from crd_edge._version import __version__
from crd_edge.analysis.macs import count_macs
from crd_edge.analysis.roofline import count_flops, matmul_gflops
from crd_edge.config import RunConfig, config_from_dict, validate
from crd_edge.data import build_dataset
from crd_edge.data.jitter import apply_jitter, jitter_params
from crd_edge.errors import UserError
from crd_edge.models import create_model, model_entry
from crd_edge.runtime.teachers import load_teacher
from crd_edge.training import distributed as D
from crd_edge.checkpoint import FORMAT_VERSION, read_checkpoint, student_record
from crd_edge.imaging import tensor_from_uint8
from crd_edge.training.curves import NOT_LOSSES, plot_curve, plot_latency_choice, plot_losses
from crd_edge.training.feature_distill import FeatureDistiller, parse_points
from crd_edge.training.evaluate import heldout_fidelity, save_grid
from crd_edge.training.gan_losses import hinge_d_loss, lsgan_loss
from crd_edge.training.heldout import quick_scores, score_heldout, student_outputs
from crd_edge.training.objective import needs_vgg, student_losses
from crd_edge.training.progress import TrainProgress
from crd_edge._io import (append_jsonl, atomic_torch_save, atomic_write_text, read_jsonl, remove_stale_temporaries,
                          write_json)
from crd_edge.training.run_dir import new_run_dir, render_report
from crd_edge.training.teacher_cache import TeacherOutputCache
from crd_edge.training.views_run import ViewTraining

CACHE_NOTES = {
    "exact": "cached per view (image, crop, flip), computed on exactly what the student sees",
    "full": ("computed once per whole {load}x{load} image and mirror, then cropped: the teacher's whole-image "
             "output (what held-out scoring compares against), not its output on the crop alone "
             "(see crd_edge/training/teacher_cache.py)"),
}


@dataclass
class DistillResult:
    run_dir: Path
    checkpoint: Path
    step: int | None  # the checkpoint's step; None when an interrupt came before the first one
    summary: dict
    interrupted: bool = False


class Meter:
    """Running means of scalar metrics between two log lines (each key its own count, since
    online CycleGAN steps train the teacher or the student, not always both)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None


def lr_lambda(total_steps: int, decay_from: float):
    """Constant LR for the first ``decay_from`` of the run, then linear decay to 0 (the paper's
    100 + 100 epochs is ``decay_from=0.5``)."""
    start = int(total_steps * decay_from)

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    return factor


def distill(cfg: RunConfig | None = None, *, resume: str | Path | None = None, quiet: bool = False,
            steps_override: int | None = None) -> DistillResult:
    """Distil a teacher into a student as configured (no config: the built-in job, as
    ``crd-edge distill`` with no options); returns where everything was written.

    ``resume`` (a run folder or its checkpoint.pt) continues a run with the config saved in it,
    so ``cfg`` must then be None; ``steps_override`` changes only the run's length."""
    checkpoint_path, ckpt = None, None
    if resume is not None and cfg is not None:
        raise UserError("pass a config to start a run, or resume= to continue one with its saved config, not both")
    if resume is None and cfg is None:
        from crd_edge.config import load_config
        cfg = load_config()
    if resume is not None:
        checkpoint_path, ckpt = _read_resume(Path(resume))
        cfg = config_from_dict(ckpt["config"])
        if steps_override is not None:
            cfg.train.steps = steps_override
    device = resolve_device(cfg.train.device)
    dist = D.setup_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.train.seed)  # same on every rank: identical student initialisation

    run = _Run(cfg, device, dist)
    if dist.is_main:  # a disk that cannot hold the checkpoints is refused before any step
        from crd_edge._io import require_free_space
        require_free_space(checkpoint_path.parent if checkpoint_path is not None else cfg.runs_dir, run.disk_needed())
    # The run folder only now: data, teacher and student have all been checked, so a failed
    # attempt leaves no empty runs/<name> behind.
    run.open_dir(checkpoint_path.parent if checkpoint_path is not None else None)
    if ckpt is not None:
        run.restore(ckpt)
    elif run.init_note == "teacher":
        run.inherit_teacher()  # same on every rank: the importance is measured on the same views
    with _stop_requests() as stop:  # through the end: a signal after the last step still saves
        outcome = run.train(quiet, stop)
        if outcome == "cut":
            run.abandon()
            return DistillResult(run.run_dir, run.run_dir / "checkpoint.pt", run.saved_step, {}, interrupted=True)
        summary = run.finish(outcome == "stopped", stop) if dist.is_main else {}
        outcome = "stopped" if summary.get("interrupted") else outcome
    D.barrier(dist)
    D.cleanup(dist)
    return DistillResult(run.run_dir, run.run_dir / "checkpoint.pt", run.step, summary, outcome == "stopped")


def _read_resume(path: Path) -> tuple[Path, dict]:
    path = path / "checkpoint.pt" if path.is_dir() else path
    ckpt = read_checkpoint(path)
    if "train_state" not in ckpt:
        raise UserError(f"--resume {path}: the checkpoint has no training state to resume from")
    return path, ckpt


class _Run:
    """One distillation run: what it trains with (built and checked in ``__init__``), its
    optimisation state, and the steps of the loop as methods, in the order they happen."""

    # -- Data, teacher, student and the losses' networks -----------------------------------
    def __init__(self, cfg: RunConfig, device: torch.device, dist) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        self.amp = cfg.train.amp and device.type == "cuda"
        self.online = cfg.teacher.mode == "online"
        offline_teacher = None if self.online else self._load_teacher()  # before the data: it may set the size
        dc = cfg.data
        self.views = None  # the view-based path (data.views > 0): teacher-labelled views, no dataset
        self.scoring_seconds = 0.0  # the held-out scoring at the end
        if dc.views:
            if dist.enabled:
                raise UserError("data.views runs on one process; launch without torchrun (or set data.views=0)")
            self.train_set = self.test_set = None
            has_targets = self.conditional = False
            self.steps_per_epoch = max(1, dc.views // dc.batch_size)
        else:
            self.train_set, self.test_set = _datasets(cfg)
            has_targets = "B" in self.train_set[0]
            self.conditional = self.train_set.paired
            self.steps_per_epoch = len(D.shard_epoch(len(self.train_set), 0, cfg.train.seed, dc.batch_size, dist))
        self.total = cfg.train.steps or cfg.train.epochs * self.steps_per_epoch
        if self.online:
            from crd_edge.training.online import OnlineTeacher
            self.teacher = OnlineTeacher(cfg, device, conditional=self.conditional, dist=dist, has_targets=has_targets,
                                         lr_factor=lr_lambda(self.total, cfg.optim.decay_from))
        else:
            self.teacher = offline_teacher
        if model_entry(cfg.student.arch).kind != "generator":
            raise UserError(f"--student {cfg.student.arch} is a {model_entry(cfg.student.arch).kind}, not a generator")
        self.student = create_model(cfg.student.arch, **cfg.student.kwargs).to(device)
        self.init_note = self._check_init()  # before the views: a refusal costs no labelling
        self.vgg, self.vgg_info = None, None
        if needs_vgg(cfg.loss):
            from crd_edge.models.vgg import load_vgg16
            vgg, weights = load_vgg16(cfg.loss.vgg_weights)
            self.vgg, self.vgg_info = vgg.to(device), weights.description
        if dc.views:
            self.views = ViewTraining.build(cfg, self.teacher, device)
        self.inherited = None  # the inheritance plan (which teacher channels the student kept)
        self._build_discriminator(has_targets)
        self.cache = self._build_cache()
        self.features = self._build_feature_distiller()
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
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0
        self.quiet = True  # no messages on stderr (set by train: --quiet, and every rank but the first)
        self.saved_step: int | None = None  # the step of the checkpoint on disk, if any
        self.run_dir: Path | None = None
        self.last_metrics: dict = {}
        self.saved_cache_entries = 0
        self.step_flops: int | None = None  # FLOPs of one whole step (every network, fwd + bwd), counted once

    def _load_teacher(self):
        """The frozen teacher. One exported with a fixed input size (most ONNX generators are) is
        run at that size only: training crops, views and held-out crops follow it, with a note,
        before any data is read or labelled."""
        cfg = self.cfg
        if cfg.teacher.source is None:
            raise UserError("offline distillation needs --teacher FILE (or --set teacher.mode=online)")
        teacher = load_teacher(cfg.teacher.source, cfg.teacher.arch, cfg.teacher.kwargs, self.device)
        static, dc = teacher.static_size, cfg.data
        if static is None or static == (dc.size, dc.size):
            return teacher
        if static[0] != static[1]:
            raise UserError(f"--teacher {cfg.teacher.source}: it takes {static[0]}x{static[1]} inputs only and "
                            "training uses square crops: export it with dynamic height and width, or at a square size")
        if self.dist.is_main:
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

    def _check_init(self) -> str:
        """Whether the student starts from the teacher's weights (student.init), decided before any
        heavy work; returns the report's note. ``teacher`` that cannot be done is an error, ``auto``
        falls back to random weights with a one-line note."""
        from crd_edge.models.inherit import inheritable, layout_mismatch
        init = self.cfg.student.init
        if init == "random":
            return "random"
        if not self.student.crd_spec["kwargs"].get("channels"):
            if init == "teacher":
                raise UserError(f"student.init=teacher: the student {self.cfg.student.arch} is not a pruned teacher "
                                "layout (use --student resnet_9blocks_inherited); or student.init=random")
            return "random"  # auto: this student has no layout to inherit into
        module = getattr(self.teacher, "module", None)
        why = "the teacher is trained online" if self.online else inheritable(module)
        why = why or layout_mismatch(self.student, module)
        if why is None:
            return "teacher"
        if init == "teacher":
            raise UserError(f"student.init=teacher: {why}; use student.init=random (or auto)")
        if self.dist.is_main:
            warnings.warn(f"the student starts from random weights: {why}", stacklevel=1)
        return f"random ({why})"

    def inherit_teacher(self) -> None:
        """Prune the teacher's weights into the student (a new run with student.init teacher)."""
        from crd_edge.models.inherit import inherit_into
        if self.views is not None:
            images = self.views.fit_x
        else:
            images = torch.stack([self.train_set[i]["A"] for i in range(min(64, len(self.train_set)))])
        self.inherited = inherit_into(self.student, self.teacher.module, images).as_dict()
        if self.dist.is_main and self.run_dir is not None:
            write_json(self.run_dir / "inherit.json", self.inherited)

    def _build_discriminator(self, has_targets: bool) -> None:
        cfg, views = self.cfg, self.views
        # The teacher's discriminator judges real target-domain images against teacher outputs;
        # with no real targets (built-in photos, a plain folder) there is nothing to judge with.
        use_gan = cfg.loss.gan > 0 and (has_targets or self.online or views is not None)
        self.disc = self.opt_d = None
        if use_gan and views is not None:
            # Adversarial distillation: this D learns the teacher's outputs (real) from the
            # student's (fake) on the same views, so it needs no target-domain photos.
            self.conditional = cfg.loss.gan_d == "conditional"
            self.disc = create_model("patchgan", in_channels=6 if self.conditional else 3, ndf=cfg.loss.d_ndf,
                                     n_layers=cfg.loss.d_layers).to(self.device)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.optim.d_lr,
                                          betas=(cfg.optim.beta1, cfg.optim.beta2))
        elif use_gan and self.online:
            self.disc = self.teacher.discriminator  # trained by the online teacher, frozen for the student
        elif use_gan:
            self.disc = create_model("patchgan_pix2pix" if self.conditional else "patchgan").to(self.device)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.optim.lr,
                                          betas=(cfg.optim.beta1, cfg.optim.beta2))
        if use_gan and self.conditional and cfg.data.color_jitter > 0:
            raise UserError("data.color_jitter would break the conditional discriminator's real pairs: "
                            "set loss.gan=0 or data.color_jitter=0")
        self.gan_mode = cfg.loss.gan_mode if views is not None else getattr(self.teacher, "gan_mode", "lsgan")
        self.gan_note = (
            f"on: {self.gan_mode}, a {cfg.loss.gan_d} PatchGAN (ndf {cfg.loss.d_ndf}) learns teacher outputs (real) "
            "from student outputs (fake)" if use_gan and views is not None else
            "on: LSGAN through the teacher discriminator" if use_gan else
            "off: no real target-domain images to train the teacher discriminator on" if cfg.loss.gan > 0
            else "off (weight 0)")

    def _build_cache(self) -> TeacherOutputCache | None:
        dc, teacher_cfg = self.cfg.data, self.cfg.teacher
        if self.views is not None or teacher_cfg.mode != "offline":
            return None
        if teacher_cfg.cache == "full" and dc.color_jitter > 0:
            raise UserError("teacher.cache=full cannot be combined with data.color_jitter; use exact or off")
        # Views repeat with no random crop (an image and its mirror) or with a fixed cycle of K
        # augmentations per image: then the exact cache runs the teacher at most 2 or K times an image.
        views_repeat = dc.augment_views > 0 or (dc.load_size == dc.size and dc.color_jitter == 0)
        if teacher_cfg.cache == "full" or (teacher_cfg.cache == "exact" and views_repeat):
            return TeacherOutputCache(self.teacher, self.train_set.load_full, self.device,
                                      full_image=teacher_cfg.cache == "full")
        return None

    def _build_feature_distiller(self) -> FeatureDistiller | None:
        loss = self.cfg.loss
        if not loss.distill_features:
            return None
        module = getattr(self.teacher, "module", None)
        if self.online or module is None:
            raise UserError("loss.distill_features reads the teacher's activations: it needs a white-box teacher "
                            "(a state dict, a crd-edge checkpoint or vintagify), not an ONNX one; "
                            "set loss.distill_features=0")
        probe = torch.zeros(1, 3, self.cfg.data.size, self.cfg.data.size, device=self.device)
        return FeatureDistiller(self.student, module, parse_points(loss.distill_points), loss.distill_features, probe)

    # -- The run folder, the checkpoint and resuming ---------------------------------------------
    def open_dir(self, existing: Path | None) -> None:
        self.created_dir = existing is None
        if existing is not None:
            self.run_dir = existing
            if self.dist.is_main:
                remove_stale_temporaries(existing)  # left by a write that a kill -9 cut short
        else:
            run_dir = new_run_dir(self.cfg.runs_dir, self.cfg.name) if self.dist.is_main else None
            if self.dist.enabled:
                holder = [str(run_dir) if run_dir else None]
                torch.distributed.broadcast_object_list(holder, src=0)
                run_dir = Path(holder[0])
            self.run_dir = run_dir
        if self.dist.is_main:
            write_json(self.run_dir / "config.json", self.cfg.to_dict())
            if self.views is not None:
                write_json(self.run_dir / "photos.json", self.views.photos.manifest)

    def restore(self, ckpt: dict) -> None:
        state = ckpt["train_state"]
        self.student.load_state_dict(ckpt["student"]["state_dict"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        # The total may have been extended (--steps): new schedule, and the LR of this step from it.
        factor = lr_lambda(self.total, self.cfg.optim.decay_from)
        self.sched.lr_lambdas = [factor] * len(self.opt.param_groups)
        for group in self.opt.param_groups:
            group["lr"] = group["initial_lr"] * factor(ckpt["step"])
        if state["scaler"]:  # empty when the run was on a CPU (AMP off)
            self.scaler.load_state_dict(state["scaler"])
        if self.opt_d is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["optimizer_d"])
        if self.online:
            self.teacher.load_state_dict(state["online_teacher"])
        if self.features is not None:
            self.features.adapters.load_state_dict(state["feature_adapters"])
        cache_file = self.run_dir / "teacher_cache.pt"
        if self.cache is not None and cache_file.is_file():
            try:
                self.cache.load_state_dict(torch.load(cache_file, map_location="cpu", weights_only=True))
            except Exception as exc:  # only a cache: the teacher recomputes what it held
                warnings.warn(f"{cache_file} is damaged ({type(exc).__name__}); rebuilding the teacher cache",
                              stacklevel=1)
        self.step = self.saved_step = ckpt["step"]
        if self.dist.is_main:
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.step)

    def disk_needed(self) -> int:
        """Bytes the run folder needs at the least: two checkpoints (the new one is written beside
        the old, then renamed), each every trained weight with Adam's two moments, and 4 MB for
        the report, curves, grids and samples."""
        trained = [self.student, self.disc, self.features.adapters if self.features else None,
                   self.teacher.module if self.online else None]
        weights = sum(p.numel() * p.element_size() for m in trained if m is not None for p in m.parameters())
        return 2 * 3 * weights + (4 << 20)

    def save(self, final: bool = False, heldout: dict | None = None) -> Path:
        """Rank 0 writes the self-describing checkpoint (atomic) and the teacher cache."""
        cfg, opt_d = self.cfg, self.opt_d
        record = {
            "format_version": FORMAT_VERSION, "crd_edge_version": __version__, "torch_version": str(torch.__version__),
            "student": student_record(self.student, cfg.data.test_size), "teacher": self.teacher.identity,
            "config": cfg.to_dict(), "step": self.step, "total_steps": self.total, "final": final,
            "metrics": self.last_metrics, "heldout": heldout, "vgg_weights": self.vgg_info,
            "train_state": {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                            "scaler": self.scaler.state_dict(),
                            "discriminator": self.disc.state_dict() if opt_d is not None else None,
                            "optimizer_d": opt_d.state_dict() if opt_d is not None else None,
                            "online_teacher": self.teacher.state_dict() if self.online else None,
                            "feature_adapters": self.features.adapters.state_dict() if self.features else None},
        }
        atomic_torch_save(record, self.run_dir / "checkpoint.pt")
        self.saved_step = self.step
        if self.cache is not None and len(self.cache.entries) != self.saved_cache_entries:
            atomic_torch_save(self.cache.state_dict(), self.run_dir / "teacher_cache.pt")
            self.saved_cache_entries = len(self.cache.entries)
        return self.run_dir / "checkpoint.pt"

    # -- The loop -------------------------------------------------------------------------------
    def train(self, quiet: bool, stop: "_StopSignals") -> str:
        """Train from ``self.step`` to the end. Returns "finished", "stopped" (Ctrl-C or SIGTERM,
        at a step boundary: the state is consistent and can be saved) or "cut" (a second signal
        landed inside a step: weights and optimiser may be a step ahead of the counter, so
        nothing may be saved; the last checkpoint stands)."""
        dist = self.dist
        self.quiet = quiet or not dist.is_main
        self._sample_x, self._sample_t = self._sample_views()
        self.meter = Meter()
        self.window_images, self.images_seen, self.train_seconds = 0, 0, 0.0
        if dist.is_main and self.views is not None:
            if self.cfg.data.label_ahead and not self._label_ahead(stop):
                return "stopped"  # asked to stop while labelling: every shard so far is on disk
            self.views.bank.start()  # what is left (nothing when labelled ahead), in the background
        self.window_start = self.train_start = time.perf_counter()  # the steps' clock starts now
        progress = TrainProgress(self.total, self.step, enabled=dist.is_main and not quiet)
        first_step = self.step
        outcome, mid_step = "finished", False
        try:
            for epoch, batch in self._batches():
                mid_step = True
                if self.step_flops is None and self.step == first_step + 1:  # one warm step first
                    self.step_flops = count_flops(lambda: self._train_step(batch, epoch))
                else:
                    self._train_step(batch, epoch)
                self.step += 1
                mid_step = False
                self._after_step(epoch, progress)
                if D.any_rank(stop.requested(), dist, self.device):
                    outcome = "stopped"
                    break
        except KeyboardInterrupt:
            outcome = "cut" if mid_step else "stopped"
        finally:
            progress.close()
        self.train_seconds = time.perf_counter() - self.train_start
        return outcome

    def _label_ahead(self, stop: "_StopSignals") -> bool:
        """Label the bank's missing views now, a shard at a time, with a bar; False when a stop
        was asked for in between (the shards labelled so far are kept for the next run)."""
        from crd_edge._progress import progress_bar
        bank = self.views.bank
        missing = bank.capacity - len(bank)
        if missing <= 0:
            return True
        try:
            with progress_bar(missing, "labelling views", enabled=None if not self.quiet else False) as advance:
                while not stop.requested():
                    before = len(bank)
                    if not bank.fill_shard():  # each shard is written whole (atomically) or not at all
                        return True
                    advance(len(bank) - before)
        except KeyboardInterrupt:  # a second signal, inside a shard: that shard is not kept
            pass
        return False

    def _batches(self):
        """(epoch, batch) from ``self.step`` to the end of the run, resuming mid-epoch."""
        cfg, dc = self.cfg, self.cfg.data
        while self.step < self.total:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            if self.views is not None:
                # Views are drawn at random from those labelled so far (seeded by run and step).
                loader = ({"A": x, "T": t} for x, t in (
                    self.views.bank.sample(dc.batch_size, torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + s))
                    for s in range(self.step, self.step + self.steps_per_epoch - offset)))
            else:
                self.train_set.set_epoch(epoch % dc.augment_views if dc.augment_views else epoch)
                batches = D.shard_epoch(len(self.train_set), epoch, cfg.train.seed, dc.batch_size, self.dist)[offset:]
                loader = DataLoader(self.train_set, batch_sampler=batches, num_workers=dc.workers,
                                    collate_fn=default_collate)
            for batch in loader:
                yield epoch, batch
                if self.step >= self.total:
                    return

    def _train_step(self, batch: dict, epoch: int) -> None:
        """One step: the online teacher's own step first (if any), then the student's."""
        cfg, dc, meter = self.cfg, self.cfg.data, self.meter
        aug_epoch = epoch % dc.augment_views if dc.augment_views else epoch
        x = batch["A"]
        if dc.color_jitter > 0:
            x = torch.stack([apply_jitter(img, jitter_params(random.Random(
                f"jitter/{cfg.train.seed}/{aug_epoch}/{int(i)}"), dc.color_jitter))
                for img, i in zip(x, batch["index"])])
        x = x.to(self.device, non_blocking=True)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.batch_images = len(x) * self.dist.world_size
        if self.online:
            # The online teacher (G and D) takes its own step on this batch first; the
            # student then imitates the updated teacher (CycleGAN: in its own phases).
            if self.teacher.teacher_trains(self.step, self.steps_per_epoch):
                for k, v in self.teacher.train_step(batch).items():
                    meter.add(k, v)
            if not self.teacher.student_trains(self.step, self.steps_per_epoch):
                self._step_schedule()
                return
        view = aug_epoch if dc.augment_views else 0  # cache key: which cycled augmentation
        with torch.no_grad():
            target = (batch["T"].to(self.device) if "T" in batch else
                      self.cache.targets(batch, dc.size, x, view) if self.cache is not None else self.teacher(x))
        out = self._discriminator_step(x, target, batch)
        self._student_step(x, target, out)
        self._step_schedule()

    def _step_schedule(self) -> None:
        # The schedule counts training steps, not optimiser updates. With mixed precision the
        # GradScaler skips the update of a step whose gradients overflowed (the first steps, while
        # it finds its scale), and torch then warns that the scheduler stepped first: intended
        # here, so that one warning is silenced (only then: this runs every step).
        if not self.amp:
            self.sched.step()
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.sched.step()

    def _discriminator_step(self, x: torch.Tensor, target: torch.Tensor, batch: dict) -> torch.Tensor | None:
        """Update the D this run trains, if any; returns the student's output when it was needed
        for that (the views path), so the student's step reuses it."""
        disc, opt_d = self.disc, self.opt_d
        out = None
        if opt_d is not None and self.views is not None:
            # pix2pix order: the student's output first, D learns from it (detached),
            # then the student's loss goes through the updated D.
            with torch.autocast(self.device.type, enabled=self.amp):
                out = self.model(x)
            self.meter.add("D", _views_discriminator_step(disc, opt_d, x, target, out.detach().float(),
                                                          self.conditional, self.gan_mode))
        elif opt_d is not None:
            # Offline: the teacher's D learns real targets vs *teacher* outputs, never
            # the student's, so it keeps describing the teacher's distribution.
            disc.requires_grad_(True)
            real = batch["B"].to(self.device)
            real_in, fake_in = ((torch.cat([x, real], 1), torch.cat([x, target], 1))
                                if self.conditional else (real, target))
            loss_d = 0.5 * (lsgan_loss(disc(real_in), True) + lsgan_loss(disc(fake_in), False))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            D.average_gradients(disc.parameters(), self.dist)  # D is not DDP-wrapped
            opt_d.step()
            self.meter.add("teacher_D", float(loss_d))
        if disc is not None:
            disc.requires_grad_(False)  # frozen for the student's step
        return out

    def _student_step(self, x: torch.Tensor, target: torch.Tensor, out: torch.Tensor | None) -> None:
        with torch.autocast(self.device.type, enabled=self.amp):
            out = self.model(x) if out is None else out
            terms = student_losses(out.float(), target, self.cfg.loss, vgg=self.vgg, discriminator=self.disc,
                                   condition=x if self.conditional else None, gan_mode=self.gan_mode)
            if self.features is not None:  # the student's activations of the forward pass above
                terms["distill_features"] = self.features.loss(x)
            loss = sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # Clipping: a student without normalisation layers can take one oversized step at a high
        # LR and saturate its tanh for good (seen once in the built-in job: held-out 3.7 dB).
        # The norm is logged either way.
        if self.features is not None:
            D.average_gradients(self.features.adapters.parameters(), self.dist)  # not DDP-wrapped
        self.scaler.unscale_(self.opt)
        clip = self.cfg.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.meter.add("grad_norm", float(grad_norm))
        for k, v in terms.items():
            self.meter.add(k, float(v.detach()))
        self.meter.add("loss", float(loss.detach()))

    def _after_step(self, epoch: int, progress: TrainProgress) -> None:
        """Log, score the learning curve, write samples and save, each on its own schedule."""
        cfg, dist, step = self.cfg, self.dist, self.step
        self.images_seen += self.batch_images
        self.window_images += self.batch_images
        if step % cfg.train.log_every == 0 or step == self.total:
            means = D.reduce_mean(self.meter.means(), dist)
            elapsed = time.perf_counter() - self.window_start
            self.last_metrics = {"step": step, "epoch": epoch, "lr": self.sched.get_last_lr()[0],
                                 "images_per_s": self.window_images / max(elapsed, 1e-9), **means}
            if dist.is_main:
                append_jsonl(self.run_dir / "metrics.jsonl", self.last_metrics)
            progress.update(step, self.last_metrics)
            self.meter, self.window_images, self.window_start = Meter(), 0, time.perf_counter()
        else:
            progress.update(step)
        if self.views is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0:
            append_jsonl(self.run_dir / "metrics.jsonl",
                         {"step": step, **_curve_point(self.student, self.views, self.device, cfg.train.eval_full)})
        if dist.is_main and cfg.train.sample_every and step % cfg.train.sample_every == 0:
            self._write_samples()
        if dist.is_main and cfg.train.save_every and step % cfg.train.save_every == 0 and step < self.total:
            self.save()

    # -- Samples, final evaluation and report (rank 0) -------------------------------------------
    def _sample_views(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inputs of the sample grids and, for a frozen teacher, their teacher outputs."""
        if self.views is not None:
            self.heldout_x = self.heldout_t = None  # scored on the labelled held-out views instead
            return _grid_views(self.views)
        self.heldout_x = _heldout_inputs(self.test_set, self.cfg.train.eval_images) if self.dist.is_main else None
        # A frozen teacher is scored once; an online teacher changes, so it is re-run when needed.
        self.heldout_t = (self._teacher_outputs(self.heldout_x)
                          if self.heldout_x is not None and not self.online else None)
        if self.heldout_x is not None:
            return self.heldout_x[:4], None if self.heldout_t is None else self.heldout_t[:4]
        return torch.stack([self.train_set[i]["A"] for i in range(min(4, len(self.train_set)))]), None

    def _teacher_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.teacher(x[i:i + 1].to(self.device)).cpu() for i in range(len(x))])

    def _write_samples(self) -> None:
        t = self._sample_t if self._sample_t is not None else self._teacher_outputs(self._sample_x)
        _write_samples(self.run_dir / "samples" / f"step_{self.step:06d}.png", self.student, self._sample_x, t,
                       self.device)

    def abandon(self) -> None:
        """After a cut (see ``train``): stop the background work, write nothing; a run folder
        this run created and never checkpointed is removed (nothing in it can be resumed)."""
        if self.views is not None:
            self.views.bank.stop()
        if self.features is not None:
            self.features.remove()
        if self.created_dir and self.saved_step is None and self.dist.is_main:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def finish(self, interrupted: bool, stop: "_StopSignals") -> dict:
        """Score on held-out data (unless interrupted), save the checkpoint, write the report. A
        signal here (after the last step) skips or cuts the scoring; the steps are saved first."""
        if self.saved_step != self.step:
            self.save()  # before the scoring (minutes): a Ctrl-C there must not lose the last steps
        if self.features is not None:
            self.features.remove()  # scoring runs the student: no more activations to keep
        if self.views is not None:
            self.views.bank.stop()
        heldout = None
        scoring_start = time.perf_counter()
        try:
            with stop.interruptible():
                heldout = None if interrupted else self._score_heldout()
        except KeyboardInterrupt:
            interrupted = True
        self.scoring_seconds = time.perf_counter() - scoring_start
        self._write_samples()
        self.save(final=not interrupted, heldout=heldout)
        summary = self._summary(interrupted, heldout)
        if summary["student"]["selection"]:
            plot = plot_latency_choice(summary["student"]["selection"], self.run_dir / "latency_choice.png")
            summary["student"]["selection"] = {**summary["student"]["selection"], "plot": plot.name}
        losses = plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss_curve.png",
                             f"{self.run_dir.name}: training losses (weighted)")
        summary["loss_curve"] = losses.name if losses is not None else None
        if self.views is not None:
            curve = plot_curve(self.run_dir / "metrics.jsonl", self.run_dir / "learning_curve.png", self.run_dir.name)
            summary["learning_curve"] = curve.name if curve is not None else None
        write_json(self.run_dir / "summary.json", summary)
        (self.run_dir / "report.md").write_text(render_report(summary))
        return summary

    def _score_heldout(self) -> dict | None:
        """The held-out scores the run's ``train.eval`` asks for (None: no held-out data)."""
        heldout = None
        if self.heldout_x is not None:
            if self.heldout_t is None:
                self.heldout_t = self._teacher_outputs(self.heldout_x)  # the online teacher as it ended
            heldout = heldout_fidelity(self.student, self.heldout_x, self.heldout_t)
        if self.views is not None and self.views.heldout is not None and self.cfg.train.eval != "none":
            if not self.quiet:  # a minute or more with nothing else moving on the terminal
                full = self.cfg.train.eval == "full"
                print(f"scoring the student on {len(self.views.heldout.inputs)} held-out crops "
                      f"({'KID, FID, vgg_dist, ' if full else ''}PSNR, SSIM) ...", file=sys.stderr, flush=True)
            heldout = _score_views(self.student, self.views, self.device, self.run_dir,
                                   full=self.cfg.train.eval == "full")
        return heldout

    def _compute_share(self) -> dict | None:
        """How much of this machine the training used: the counted FLOPs of one step times the
        steps per second, against the fp32 matmul roofline measured now, in this process."""
        if not self.step_flops or not self.train_seconds or self.device.type != "cpu":
            return None
        per_image = self.step_flops / max(1, self.batch_images)
        achieved = per_image * self.images_seen / self.train_seconds / 1e9
        roof = matmul_gflops(seconds=0.5)
        return {"gflop_per_image": per_image / 1e9, "gflops": achieved, "matmul_gflops": roof["gflops"],
                "threads": roof["threads"], "share": achieved / roof["gflops"]}

    def _summary(self, interrupted: bool, heldout: dict | None) -> dict:
        cfg, dc, views = self.cfg, self.cfg.data, self.views
        spec = self.student.crd_spec
        macs = count_macs(create_model(spec["name"], **spec["kwargs"]), (1, 3, 256, 256))
        if views is not None:
            data = {"description": views.photos.description, "train_images": len(views.photos.train),
                    "test_images": len(views.photos.test), "skipped": views.photos.skipped.as_dict(),
                    "views": views.describe()}
            cache_note = _views_note(views)
        else:
            data = {"description": self.train_set.describe(), "train_images": len(self.train_set),
                    "test_images": 0 if self.test_set is None else len(self.test_set),
                    "skipped": self.train_set.skipped.as_dict()}
            cache_note = (CACHE_NOTES[cfg.teacher.cache].format(load=dc.load_size)
                          + f"; {self.cache.teacher_calls} teacher passes this session"
                          if self.cache is not None else "teacher run on every batch (no cache)")
        not_terms = (*NOT_LOSSES, "loss")
        return {
            "run_dir": str(self.run_dir), "step": self.step, "total_steps": self.total, "interrupted": interrupted,
            "teacher": self.teacher.identity, "device": str(self.device), "batch_size": dc.batch_size,
            "crop_size": dc.size, "test_size": dc.test_size, "world_size": self.dist.world_size,
            "student": {"arch": cfg.student.arch, "kwargs": cfg.student.kwargs, "params": macs.params,
                        "true_gmacs": macs.true_macs / 1e9, "paper_gmacs": macs.paper_macs / 1e9,
                        "selection": cfg.student.selection or None, "init": self.init_note,
                        "inherited": self.inherited},
            "data": data,
            "train_seconds": self.train_seconds,
            "scoring_seconds": round(self.scoring_seconds, 1),
            "images_per_second": self.images_seen / max(self.train_seconds, 1e-9),
            "compute": self._compute_share(),
            "loss_terms": sorted(k for k in self.last_metrics if k not in not_terms),
            "vgg": self.vgg_info, "gan_note": self.gan_note, "cache_note": cache_note,
            "heldout": heldout, "final_metrics": self.last_metrics,
        }


def _datasets(cfg: RunConfig):
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


def _heldout_inputs(test_set, limit: int) -> torch.Tensor | None:
    if test_set is None or len(test_set) == 0:
        return None
    n = len(test_set) if limit <= 0 else min(limit, len(test_set))
    return torch.stack([test_set[i]["A"] for i in range(n)])


class _StopSignals:
    """Ctrl-C and SIGTERM (what schedulers and containers send) during a run. The first one
    asks to stop after the current step; a second one raises KeyboardInterrupt at once. Inside
    :meth:`interruptible` (held-out scoring after the last step: minutes, and nothing to lose)
    the first one raises at once."""

    def __init__(self) -> None:
        self.count, self.raise_at = 0, 2

    def handle(self, signum, frame) -> None:
        self.count += 1
        if self.count >= self.raise_at:
            raise KeyboardInterrupt

    def requested(self) -> bool:
        return self.count > 0

    @contextmanager
    def interruptible(self):
        if self.count:
            raise KeyboardInterrupt
        self.raise_at = 1
        try:
            yield
        finally:
            self.raise_at = 2


@contextmanager
def _stop_requests():
    """Yields the run's :class:`_StopSignals`, installed as the SIGINT and SIGTERM handler for
    the duration (signals reach only the main thread: elsewhere none is ever seen)."""
    stop = _StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint (a crash after the last save; the resumed
    run logs those steps again) and any torn line a crash left."""
    if path.is_file():
        rows = [row for row in read_jsonl(path) if row.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


@torch.no_grad()
def _write_samples(path: Path, student: nn.Module, x: torch.Tensor, t: torch.Tensor, device) -> None:
    was = student.training
    student.eval()
    s = student(x.to(device)).float().cpu()
    student.train(was)
    save_grid(path, [x, t, s], ["input", "teacher", "student"])



def _views_discriminator_step(disc: nn.Module, opt_d, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                        conditional: bool, mode: str) -> float:
    """One update of the views path's D: teacher outputs are real, student outputs fake."""
    disc.requires_grad_(True)
    real_in, fake_in = (torch.cat([x, real], 1), torch.cat([x, fake], 1)) if conditional else (real, fake)
    if mode == "hinge":
        loss = hinge_d_loss(disc(real_in), disc(fake_in))
    else:
        loss = 0.5 * (lsgan_loss(disc(real_in), True) + lsgan_loss(disc(fake_in), False))
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return float(loss.detach())


def _grid_views(views: "ViewTraining", n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out views spread over the split (training views when there are none)."""
    if views.heldout is not None and len(views.heldout):
        return _spread(views.heldout.inputs, n), _spread(views.heldout.targets, n)
    return views.fit_x[:n], views.fit_y[:n]


def _spread(images: np.ndarray, n: int = 8) -> torch.Tensor:
    """``n`` of the uint8 NHWC ``images``, evenly spread, as NCHW in [-1, 1] (for grids)."""
    index = np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int)
    return tensor_from_uint8(images[index])


@torch.no_grad()
def _curve_point(student: nn.Module, views: "ViewTraining", device, full: bool = False) -> dict:
    """Held-out PSNR (every held-out figure when ``full``) and the L1 to the teacher on fixed
    training views (the training-set fit)."""
    was = student.training
    student.eval()
    fit = float((student(views.fit_x.to(device)).float().cpu() - views.fit_y).abs().mean())
    student.train(was)
    point = {"train_l1": fit, "train_l1_copy": float((views.fit_x - views.fit_y).abs().mean())}
    if views.heldout is not None:
        outputs = student_outputs(student, views.heldout.inputs, device)
        point.update({f"heldout_{k}": v for k, v in quick_scores(outputs, views.heldout).items()})
        if full:
            scores = score_heldout(outputs, views.heldout)
            point.update({f"heldout_{k}": scores["student"][k] for k in ("kid", "fid", "vgg_dist", "ssim")
                          if k in scores["student"]})
            point.update({f"heldout_{k}_input": scores["input"][k] for k in ("kid", "vgg_dist")
                          if k in scores["input"]})
    return point


def _score_views(student: nn.Module, views: "ViewTraining", device, run_dir: Path, full: bool = True) -> dict:
    """The held-out figures (``full``: every one; else PSNR and SSIM) and the held-out grid
    picture (input | teacher | student)."""
    held = views.heldout
    outputs = student_outputs(student, held.inputs, device)
    scores = score_heldout(outputs, held, inception=full, vgg=full)
    if not full:
        scores["notes"].append("KID, FID and vgg_dist not computed: train.eval=quick (a run under "
                               "1000 steps by default; --eval full scores them)")
    save_grid(run_dir / "heldout_grid.png", [_spread(held.inputs), _spread(held.targets), _spread(outputs)],
              ["input", "teacher", "student"])
    scores["grid"] = "heldout_grid.png"
    return scores


def _views_note(views: "ViewTraining") -> str:
    info = views.describe()
    return (f"the teacher run on each view itself ({info['labeller'].get('runtime')}, {info['labeller'].get('precision')}); "
            f"{info['bank']['views']} labelled views in {info['bank']['folder']} "
            f"({info['bank']['loaded_from_disk']} reused from disk), {info['teacher_passes']} teacher passes "
            f"this session, {info['labelling_seconds']:.0f} s labelling")
