"""``distill(config)``: the offline/online CRD training loop, read top to bottom.

One student step (``run_step.RunStep``): (optionally) update the teacher's discriminator, get
the teacher's output for the batch, run the student, add up the weighted terms of
``objective.student_losses``, step the optimiser. The loop around it (logging, samples,
checkpoints, Ctrl-C, resume, DDP) is here, in order, so the whole run reads in one place; what
the run trains with is built in ``run_setup``, its folder and checkpoint are ``run_checkpoint``'s,
and its scores and report ``run_scoring``'s and ``run_report``'s.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate

from crd_edge._io import append_jsonl
from crd_edge.analysis.roofline import count_flops
from crd_edge.config import RunConfig, config_from_dict
from crd_edge.errors import UserError
from crd_edge.training import distributed as D
from crd_edge.training.heldout import heldout_fidelity
from crd_edge.training.progress import TrainProgress
from crd_edge.training.run_checkpoint import RunFolder, read_resume
from crd_edge.training.run_report import Throughput, run_summary, write_report
from crd_edge.training.run_scoring import curve_point, grid_views, heldout_inputs, score_views, write_samples
from crd_edge.training.run_setup import RunSetup, lr_lambda
from crd_edge.training.run_step import RunStep

__all__ = ["DistillResult", "Meter", "distill", "lr_lambda", "resolve_device"]


@dataclass
class DistillResult:
    """A finished (or interrupted) run. ``summary`` is summary.json's document; callers read it
    through the properties below."""

    run_dir: Path
    checkpoint: Path
    step: int | None  # the checkpoint's step; None when an interrupt came before the first one
    summary: dict
    interrupted: bool = False

    @property
    def train_seconds(self) -> float:
        return self.summary.get("train_seconds") or 0.0

    @property
    def scoring_seconds(self) -> float:
        """The held-out scoring at the end of the run."""
        return self.summary.get("scoring_seconds") or 0.0

    @property
    def heldout(self) -> dict | None:
        """The held-out figures as summary.json holds them (for ``--json``)."""
        return self.summary.get("heldout")

    def heldout_line(self) -> str | None:
        """One line of the held-out figures against copying the input; None when not scored."""
        h = self.heldout
        if h and "student" in h:  # a view-based run: the held-out views
            parts = [f"{key} {h['student'][key]:.4g} vs input {h['input'][key]:.4g}"
                     for key in ("kid", "vgg_dist", "psnr") if key in h["student"]]
            return f"held-out views ({h['crops']} crops, {h['photos']} photos), student vs teacher: " + ", ".join(parts)
        if h:
            return (f"held-out PSNR vs teacher: student {h['psnr_student_teacher']:.2f} dB, copy-the-input "
                    f"{h['psnr_input_teacher']:.2f} dB, gain {h['psnr_gain_db']:+.2f} dB on {h['images']} images")
        return None


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
        checkpoint_path, ckpt = read_resume(Path(resume))
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
        require_free_space(checkpoint_path.parent if checkpoint_path is not None else cfg.runs_dir,
                           run.setup.disk_needed())
    # The run folder only now: data, teacher and student have all been checked, so a failed
    # attempt leaves no empty runs/<name> behind.
    run.folder.open(checkpoint_path.parent if checkpoint_path is not None else None)
    if ckpt is not None:
        run.restore(ckpt)
    elif run.setup.init_note == "teacher":
        # Same on every rank: the importance is measured on the same views.
        run.setup.inherit_teacher(run.folder.run_dir)
    with _stop_requests() as stop:  # through the end: a signal after the last step still saves
        outcome = run.train(quiet, stop)
        if outcome == "cut":
            run.abandon()
            return DistillResult(run.folder.run_dir, run.folder.run_dir / "checkpoint.pt", run.folder.saved_step,
                                 {}, interrupted=True)
        summary = run.finish(outcome == "stopped", stop) if dist.is_main else {}
        outcome = "stopped" if summary.get("interrupted") else outcome
    D.barrier(dist)
    D.cleanup(dist)
    return DistillResult(run.folder.run_dir, run.folder.run_dir / "checkpoint.pt", run.step, summary,
                         outcome == "stopped")


class _Run:
    """One distillation run: what it trains with (``setup``, built and checked in ``__init__``),
    its step, its folder and checkpoint, and the loop around the step as methods, in the order
    they happen."""

    def __init__(self, cfg: RunConfig, device: torch.device, dist) -> None:
        self.setup = RunSetup(cfg, device, dist)
        self.run_step = RunStep(self.setup)
        self.folder = RunFolder(self.setup)
        self.step = 0
        self.quiet = True  # no messages on stderr (set by train: --quiet, and every rank but the first)
        self.meter = Meter()
        self.last_metrics: dict = {}
        self.step_flops: int | None = None  # FLOPs of one whole step (every network, fwd + bwd), counted once
        # Images and seconds: since the last log line (the window) and this session's steps.
        self.window_images, self.images_seen, self.train_seconds = 0, 0, 0.0
        self.window_start = self.train_start = 0.0
        # The sample grids' inputs and, for a frozen teacher, their teacher outputs (set by train).
        self.sample_x: torch.Tensor | None = None
        self.sample_t: torch.Tensor | None = None
        # Rank 0's held-out inputs and, for a frozen teacher, their teacher outputs (set by train).
        self.heldout_x: torch.Tensor | None = None
        self.heldout_t: torch.Tensor | None = None
        self.scoring_seconds = 0.0  # the held-out scoring at the end

    def restore(self, ckpt: dict) -> None:
        """Continue from a checkpoint of this run (its folder is open)."""
        self.step = self.folder.restore(ckpt)

    def save(self, final: bool = False, heldout: dict | None = None) -> Path:
        """Rank 0 writes the self-describing checkpoint (atomic) and the teacher cache."""
        return self.folder.save(self.step, self.last_metrics, final=final, heldout=heldout)

    # -- The loop -------------------------------------------------------------------------------
    def train(self, quiet: bool, stop: "_StopSignals") -> str:
        """Train from ``self.step`` to the end. Returns "finished", "stopped" (Ctrl-C or SIGTERM,
        at a step boundary: the state is consistent and can be saved) or "cut" (a second signal
        landed inside a step: weights and optimiser may be a step ahead of the counter, so
        nothing may be saved; the last checkpoint stands)."""
        s = self.setup
        dist = s.dist
        self.quiet = quiet or not dist.is_main
        self.sample_x, self.sample_t = self._sample_views()
        self.meter = Meter()
        self.window_images, self.images_seen, self.train_seconds = 0, 0, 0.0
        if dist.is_main and s.views is not None:
            if s.cfg.data.label_ahead and not self._label_ahead(stop):
                return "stopped"  # asked to stop while labelling: every shard so far is on disk
            s.views.bank.start()  # what is left (nothing when labelled ahead), in the background
        self.window_start = self.train_start = time.perf_counter()  # the steps' clock starts now
        progress = TrainProgress(s.total, self.step, enabled=dist.is_main and not quiet)
        first_step = self.step
        outcome, mid_step = "finished", False
        try:
            for epoch, batch in self._batches():
                mid_step = True
                if self.step_flops is None and self.step == first_step + 1:  # one warm step first
                    self.step_flops = count_flops(lambda: self.run_step(batch, epoch, self.step, self.meter))
                else:
                    self.run_step(batch, epoch, self.step, self.meter)
                self.step += 1
                mid_step = False
                self._after_step(epoch, progress)
                if D.any_rank(stop.requested(), dist, s.device):
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
        bank = self.setup.views.bank
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
        s = self.setup
        cfg, dc = s.cfg, s.cfg.data
        while self.step < s.total:
            epoch, offset = divmod(self.step, s.steps_per_epoch)
            if s.views is not None:
                # Views are drawn at random from those labelled so far (seeded by run and step).
                loader = ({"A": x, "T": t} for x, t in (
                    s.views.bank.sample(dc.batch_size, torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + i))
                    for i in range(self.step, self.step + s.steps_per_epoch - offset)))
            else:
                s.train_set.set_epoch(epoch % dc.augment_views if dc.augment_views else epoch)
                batches = D.shard_epoch(len(s.train_set), epoch, cfg.train.seed, dc.batch_size, s.dist)[offset:]
                loader = DataLoader(s.train_set, batch_sampler=batches, num_workers=dc.workers,
                                    collate_fn=default_collate)
            for batch in loader:
                yield epoch, batch
                if self.step >= s.total:
                    return

    def _after_step(self, epoch: int, progress: TrainProgress) -> None:
        """Log, score the learning curve, write samples and save, each on its own schedule."""
        s, step = self.setup, self.step
        cfg, dist = s.cfg, s.dist
        batch_images = self.run_step.batch_images
        self.images_seen += batch_images
        self.window_images += batch_images
        if step % cfg.train.log_every == 0 or step == s.total:
            means = D.reduce_mean(self.meter.means(), dist)
            elapsed = time.perf_counter() - self.window_start
            self.last_metrics = {"step": step, "epoch": epoch, "lr": s.sched.get_last_lr()[0],
                                 "images_per_s": self.window_images / max(elapsed, 1e-9), **means}
            if dist.is_main:
                append_jsonl(self.folder.run_dir / "metrics.jsonl", self.last_metrics)
            progress.update(step, self.last_metrics)
            self.meter, self.window_images, self.window_start = Meter(), 0, time.perf_counter()
        else:
            progress.update(step)
        if s.views is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0:
            append_jsonl(self.folder.run_dir / "metrics.jsonl",
                         {"step": step, **curve_point(s.student, s.views, s.device, cfg.train.eval_full)})
        if dist.is_main and cfg.train.sample_every and step % cfg.train.sample_every == 0:
            self._write_samples()
        if dist.is_main and cfg.train.save_every and step % cfg.train.save_every == 0 and step < s.total:
            self.save()

    # -- Samples, final evaluation and report (rank 0) -------------------------------------------
    def _sample_views(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inputs of the sample grids and, for a frozen teacher, their teacher outputs."""
        s = self.setup
        if s.views is not None:
            self.heldout_x = self.heldout_t = None  # scored on the labelled held-out views instead
            return grid_views(s.views)
        self.heldout_x = heldout_inputs(s.test_set, s.cfg.train.eval_images) if s.dist.is_main else None
        # A frozen teacher is scored once; an online teacher changes, so it is re-run when needed.
        self.heldout_t = (self._teacher_outputs(self.heldout_x)
                          if self.heldout_x is not None and not s.online else None)
        if self.heldout_x is not None:
            return self.heldout_x[:4], None if self.heldout_t is None else self.heldout_t[:4]
        return torch.stack([s.train_set[i]["A"] for i in range(min(4, len(s.train_set)))]), None

    def _teacher_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.setup.teacher(x[i:i + 1].to(self.setup.device)).cpu() for i in range(len(x))])

    def _write_samples(self) -> None:
        t = self.sample_t if self.sample_t is not None else self._teacher_outputs(self.sample_x)
        write_samples(self.folder.run_dir / "samples" / f"step_{self.step:06d}.png", self.setup.student,
                      self.sample_x, t, self.setup.device)

    def abandon(self) -> None:
        """After a cut (see ``train``): stop the background work, write nothing; a run folder
        this run created and never checkpointed is removed (nothing in it can be resumed)."""
        if self.setup.views is not None:
            self.setup.views.bank.stop()
        if self.setup.features is not None:
            self.setup.features.remove()
        self.folder.discard_if_unsaved()

    def finish(self, interrupted: bool, stop: "_StopSignals") -> dict:
        """Score on held-out data (unless interrupted), save the checkpoint, write the report. A
        signal here (after the last step) skips or cuts the scoring; the steps are saved first."""
        s = self.setup
        if self.folder.saved_step != self.step:
            self.save()  # before the scoring (minutes): a Ctrl-C there must not lose the last steps
        if s.features is not None:
            s.features.remove()  # scoring runs the student: no more activations to keep
        if s.views is not None:
            s.views.bank.stop()
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
        throughput = Throughput(self.images_seen, self.train_seconds, self.run_step.batch_images, self.step_flops)
        summary = run_summary(s, throughput, run_dir=self.folder.run_dir, step=self.step, interrupted=interrupted,
                              heldout=heldout, scoring_seconds=self.scoring_seconds, last_metrics=self.last_metrics)
        write_report(self.folder.run_dir, summary, views=s.views is not None)
        return summary

    def _score_heldout(self) -> dict | None:
        """The held-out scores the run's ``train.eval`` asks for (None: no held-out data)."""
        s = self.setup
        heldout = None
        if self.heldout_x is not None:
            if self.heldout_t is None:
                self.heldout_t = self._teacher_outputs(self.heldout_x)  # the online teacher as it ended
            heldout = heldout_fidelity(s.student, self.heldout_x, self.heldout_t)
        if s.views is not None and s.views.heldout is not None and s.cfg.train.eval != "none":
            if not self.quiet:  # a minute or more with nothing else moving on the terminal
                full = s.cfg.train.eval == "full"
                print(f"scoring the student on {len(s.views.heldout.inputs)} held-out crops "
                      f"({'KID, FID, vgg_dist, ' if full else ''}PSNR, SSIM) ...", file=sys.stderr, flush=True)
            heldout = score_views(s.student, s.views, s.device, self.folder.run_dir, full=s.cfg.train.eval == "full")
        return heldout


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
