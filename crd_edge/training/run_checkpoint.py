"""A distillation run's folder, its checkpoint and resuming: where the run writes, the
self-describing checkpoint (the student record plus the whole training state), the teacher
cache beside it, and putting that state back into a freshly built run.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from crd_edge._io import atomic_torch_save, atomic_write_text, read_jsonl, remove_stale_temporaries, write_json
from crd_edge._version import __version__
from crd_edge.checkpoint import FORMAT_VERSION, read_checkpoint, student_record
from crd_edge.errors import UserError
from crd_edge.training.run_dir import new_run_dir
from crd_edge.training.run_setup import RunSetup, lr_lambda


class RunFolder:
    """Where a run writes (``run_dir``, None until opened), whether this run created it, and what
    is on disk: the step of its checkpoint (``saved_step``, None: none yet) and how many teacher
    cache entries were saved."""

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.run_dir: Path | None = None
        self.created_dir = False
        self.saved_step: int | None = None  # the step of the checkpoint on disk, if any
        self.saved_cache_entries = 0

    def open(self, existing: Path | None) -> None:
        """Continue in ``existing`` or claim a new ``runs/<name>`` (rank 0 picks it; every rank
        gets the same), and write the run's config (and photo list) there."""
        cfg, dist = self.setup.cfg, self.setup.dist
        self.created_dir = existing is None
        if existing is not None:
            self.run_dir = existing
            if dist.is_main:
                remove_stale_temporaries(existing)  # left by a write that a kill -9 cut short
        else:
            run_dir = new_run_dir(cfg.runs_dir, cfg.name) if dist.is_main else None
            if dist.enabled:
                holder = [str(run_dir) if run_dir else None]
                torch.distributed.broadcast_object_list(holder, src=0)
                run_dir = Path(holder[0])
            self.run_dir = run_dir
        if dist.is_main:
            write_json(self.run_dir / "config.json", cfg.to_dict())
            if self.setup.views is not None:
                write_json(self.run_dir / "photos.json", self.setup.views.photos.manifest)

    def restore(self, ckpt: dict) -> int:
        """Put a checkpoint's training state back; returns its step."""
        s = self.setup
        state = ckpt["train_state"]
        s.student.load_state_dict(ckpt["student"]["state_dict"])
        s.opt.load_state_dict(state["optimizer"])
        s.sched.load_state_dict(state["scheduler"])
        # The total may have been extended (--steps): new schedule, and the LR of this step from it.
        factor = lr_lambda(s.total, s.cfg.optim.decay_from)
        s.sched.lr_lambdas = [factor] * len(s.opt.param_groups)
        for group in s.opt.param_groups:
            group["lr"] = group["initial_lr"] * factor(ckpt["step"])
        if state["scaler"]:  # empty when the run was on a CPU (AMP off)
            s.scaler.load_state_dict(state["scaler"])
        if s.opt_d is not None:
            s.disc.load_state_dict(state["discriminator"])
            s.opt_d.load_state_dict(state["optimizer_d"])
        if s.online:
            s.teacher.load_state_dict(state["online_teacher"])
        if s.features is not None:
            s.features.adapters.load_state_dict(state["feature_adapters"])
        cache_file = self.run_dir / "teacher_cache.pt"
        if s.cache is not None and cache_file.is_file():
            try:
                s.cache.load_state_dict(torch.load(cache_file, map_location="cpu", weights_only=True))
            except Exception as exc:  # only a cache: the teacher recomputes what it held
                warnings.warn(f"{cache_file} is damaged ({type(exc).__name__}); rebuilding the teacher cache",
                              stacklevel=1)
        self.saved_step = ckpt["step"]
        if s.dist.is_main:
            truncate_metrics(self.run_dir / "metrics.jsonl", self.saved_step)
        return self.saved_step

    def save(self, step: int, metrics: dict, final: bool = False, heldout: dict | None = None) -> Path:
        """Rank 0 writes the self-describing checkpoint (atomic) and the teacher cache."""
        s = self.setup
        cfg, opt_d = s.cfg, s.opt_d
        record = {
            "format_version": FORMAT_VERSION, "crd_edge_version": __version__, "torch_version": str(torch.__version__),
            "student": student_record(s.student, cfg.data.test_size), "teacher": s.teacher.identity,
            "config": cfg.to_dict(), "step": step, "total_steps": s.total, "final": final,
            "metrics": metrics, "heldout": heldout, "vgg_weights": s.vgg_info,
            "train_state": {"optimizer": s.opt.state_dict(), "scheduler": s.sched.state_dict(),
                            "scaler": s.scaler.state_dict(),
                            "discriminator": s.disc.state_dict() if opt_d is not None else None,
                            "optimizer_d": opt_d.state_dict() if opt_d is not None else None,
                            "online_teacher": s.teacher.state_dict() if s.online else None,
                            "feature_adapters": s.features.adapters.state_dict() if s.features else None},
        }
        atomic_torch_save(record, self.run_dir / "checkpoint.pt")
        self.saved_step = step
        if s.cache is not None and len(s.cache.entries) != self.saved_cache_entries:
            atomic_torch_save(s.cache.state_dict(), self.run_dir / "teacher_cache.pt")
            self.saved_cache_entries = len(s.cache.entries)
        return self.run_dir / "checkpoint.pt"

    def discard_if_unsaved(self) -> None:
        """Remove a run folder this run created and never checkpointed (nothing in it can be
        resumed); rank 0 only."""
        if self.created_dir and self.saved_step is None and self.setup.dist.is_main:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def read_resume(path: Path) -> tuple[Path, dict]:
    """The checkpoint to resume from (``path``: a run folder or its checkpoint.pt) and its contents."""
    path = path / "checkpoint.pt" if path.is_dir() else path
    ckpt = read_checkpoint(path)
    if "train_state" not in ckpt:
        raise UserError(f"--resume {path}: the checkpoint has no training state to resume from")
    return path, ckpt


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint (a crash after the last save; the resumed
    run logs those steps again) and any torn line a crash left."""
    if path.is_file():
        rows = [row for row in read_jsonl(path) if row.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
