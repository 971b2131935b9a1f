"""``distill(config)``: the offline/online CRD training loop, read top to bottom.

One student step: (optionally) update the teacher's discriminator, get the teacher's output for
the batch, run the student, add up the weighted terms of ``objective.student_losses``, step the
optimiser. Everything around it (logging, samples, checkpoints, Ctrl-C, resume, DDP) is here
too, in order, so the whole run reads in one place.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from crd_edge._version import __version__
from crd_edge.analysis.macs import count_macs
from crd_edge.config import RunConfig, config_from_dict
from crd_edge.data import build_dataset
from crd_edge.data.jitter import apply_jitter, jitter_params
from crd_edge.errors import UserError
from crd_edge.models import create_model, model_entry
from crd_edge.runtime.teachers import load_teacher
from crd_edge.training import distributed as D
from crd_edge.checkpoint import FORMAT_VERSION, read_checkpoint, student_record
from crd_edge.imaging import tensor_from_uint8
from crd_edge.training.curves import plot_curve
from crd_edge.training.evaluate import heldout_fidelity, save_grid
from crd_edge.training.gan_losses import hinge_d_loss, lsgan_loss
from crd_edge.training.heldout import quick_scores, score_heldout, student_outputs
from crd_edge.training.objective import needs_vgg, student_losses
from crd_edge.training.progress import TrainProgress
from crd_edge._io import append_jsonl, atomic_torch_save, write_json
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
    step: int
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


def _heldout_inputs(test_set, limit: int) -> torch.Tensor | None:
    if test_set is None or len(test_set) == 0:
        return None
    n = len(test_set) if limit <= 0 else min(limit, len(test_set))
    return torch.stack([test_set[i]["A"] for i in range(n)])


def distill(cfg: RunConfig, *, resume: str | Path | None = None, quiet: bool = False,
            steps_override: int | None = None) -> DistillResult:
    """Distil a teacher into a student as configured; returns where everything was written."""
    # -- 1. Where and on what we run ------------------------------------------------------
    ckpt = None
    if resume is not None:
        path = Path(resume)
        path = path / "checkpoint.pt" if path.is_dir() else path
        ckpt = read_checkpoint(path)
        if "train_state" not in ckpt:
            raise UserError(f"--resume {resume}: the checkpoint has no training state to resume from")
        cfg = config_from_dict(ckpt["config"])
        if steps_override is not None:
            cfg.train.steps = steps_override
    device = resolve_device(cfg.train.device)
    dist = D.setup_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.train.seed)  # same on every rank: identical student initialisation
    amp = cfg.train.amp and device.type == "cuda"

    # -- 2. Data, teacher, student and the losses' networks --------------------------------
    dc = cfg.data
    views = None  # the view-based path (data.views > 0): teacher-labelled views, no dataset
    if dc.views:
        if dist.enabled:
            raise UserError("data.views runs on one process; launch without torchrun (or set data.views=0)")
        train_set = test_set = None
        has_targets = conditional = False
        steps_per_epoch = max(1, dc.views // dc.batch_size)
    else:
        train_set = build_dataset(dc.data, dc.layout, "train", dc.size, dc.load_size, seed=cfg.train.seed)
        try:
            test_set = build_dataset(dc.data, dc.layout, "test", dc.test_size, dc.test_size, seed=cfg.train.seed)
        except UserError:
            test_set = None  # e.g. a CycleGAN folder without testA/
        if test_set is not None and not test_set.has_test_split:
            test_set = None  # a plain folder has no held-out split: never score on training images
        has_targets = "B" in train_set[0]
        conditional = train_set.paired
        steps_per_epoch = len(D.shard_epoch(len(train_set), 0, cfg.train.seed, dc.batch_size, dist))
    total = cfg.train.steps or cfg.train.epochs * steps_per_epoch
    if cfg.teacher.mode == "online":
        from crd_edge.training.online import OnlineTeacher
        teacher = OnlineTeacher(cfg, device, conditional=conditional, dist=dist, has_targets=has_targets,
                                lr_factor=lr_lambda(total, cfg.optim.decay_from))
    else:
        if cfg.teacher.source is None:
            raise UserError("offline distillation needs --teacher FILE (or --set teacher.mode=online)")
        teacher = load_teacher(cfg.teacher.source, cfg.teacher.arch, cfg.teacher.kwargs, device)
    if model_entry(cfg.student.arch).kind != "generator":
        raise UserError(f"--student {cfg.student.arch} is a {model_entry(cfg.student.arch).kind}, not a generator")
    student = create_model(cfg.student.arch, **cfg.student.kwargs).to(device)
    vgg, vgg_info = None, None
    if needs_vgg(cfg.loss):
        from crd_edge.models.vgg import load_vgg16
        vgg, weights = load_vgg16(cfg.loss.vgg_weights)
        vgg, vgg_info = vgg.to(device), weights.description
    # The teacher's discriminator judges real target-domain images against teacher outputs;
    # with no real targets (built-in photos, a plain folder) there is nothing to judge with.
    use_gan = cfg.loss.gan > 0 and (has_targets or cfg.teacher.mode == "online" or dc.views > 0)
    disc = opt_d = None
    if dc.views:
        views = ViewTraining.build(cfg, teacher, device)
        if use_gan:
            # Adversarial distillation: this D learns the teacher's outputs (real) from the
            # student's (fake) on the same views, so it needs no target-domain photos.
            conditional = cfg.loss.gan_d == "conditional"
            disc = create_model("patchgan", in_channels=6 if conditional else 3, ndf=cfg.loss.d_ndf,
                                n_layers=cfg.loss.d_layers).to(device)
            opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.optim.d_lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    elif use_gan and cfg.teacher.mode == "online":
        disc = teacher.discriminator  # trained by the online teacher, frozen for the student
    elif use_gan:
        disc = create_model("patchgan_pix2pix" if conditional else "patchgan").to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    if use_gan and conditional and dc.color_jitter > 0:
        raise UserError("data.color_jitter would break the conditional discriminator's real pairs: "
                        "set loss.gan=0 or data.color_jitter=0")
    gan_mode = cfg.loss.gan_mode if views is not None else getattr(teacher, "gan_mode", "lsgan")
    gan_note = (f"on: {gan_mode}, a {cfg.loss.gan_d} PatchGAN (ndf {cfg.loss.d_ndf}) learns teacher outputs (real) "
                "from student outputs (fake)" if use_gan and views is not None else
                "on: LSGAN through the teacher discriminator" if use_gan else
                "off: no real target-domain images to train the teacher discriminator on" if cfg.loss.gan > 0
                else "off (weight 0)")
    cache = None
    # Views repeat with no random crop (an image and its mirror) or with a fixed cycle of K
    # augmentations per image: then the exact cache runs the teacher at most 2 or K times an image.
    views_repeat = dc.augment_views > 0 or (dc.load_size == dc.size and dc.color_jitter == 0)
    if views is None and cfg.teacher.mode == "offline" and (cfg.teacher.cache == "full" or
                                          (cfg.teacher.cache == "exact" and views_repeat)):
        cache = TeacherOutputCache(teacher, train_set.load_full, device, full_image=cfg.teacher.cache == "full")

    # The run folder only now: data, teacher and student have all been checked, so a failed
    # attempt leaves no empty runs/<name> behind.
    if ckpt is not None:
        run_dir = path.parent
    else:
        run_dir = new_run_dir(cfg.runs_dir, cfg.name) if dist.is_main else None
        if dist.enabled:
            holder = [str(run_dir) if run_dir else None]
            torch.distributed.broadcast_object_list(holder, src=0)
            run_dir = Path(holder[0])

    # -- 3. Optimisation state, restored on resume -------------------------------------------
    opt = torch.optim.Adam(student.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, cfg.optim.decay_from))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step = 0
    if ckpt is not None:
        state = ckpt["train_state"]
        student.load_state_dict(ckpt["student"]["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        # The total may have been extended (--steps): new schedule, and the LR of this step from it.
        sched.lr_lambdas[0] = lr_lambda(total, cfg.optim.decay_from)
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * sched.lr_lambdas[0](ckpt["step"])
        if state["scaler"]:  # empty when the run was on a CPU (AMP off)
            scaler.load_state_dict(state["scaler"])
        if opt_d is not None:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["optimizer_d"])
        if cfg.teacher.mode == "online":
            teacher.load_state_dict(state["online_teacher"])
        cache_file = run_dir / "teacher_cache.pt"
        if cache is not None and cache_file.is_file():
            cache.load_state_dict(torch.load(cache_file, map_location="cpu", weights_only=True))
        step = ckpt["step"]
        if dist.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
    model = nn.parallel.DistributedDataParallel(student) if dist.enabled else student

    if views is not None:
        heldout_x = None  # scored on the labelled held-out views instead (crd_edge.training.heldout)
        sample_x, sample_t = _grid_views(views)
    else:
        heldout_x = _heldout_inputs(test_set, cfg.train.eval_images) if dist.is_main else None
        sample_x = heldout_x[:4] if heldout_x is not None else torch.stack([train_set[i]["A"] for i in range(min(4, len(train_set)))])

    def teacher_outputs(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([teacher(x[i:i + 1].to(device)).cpu() for i in range(len(x))])
    # A frozen teacher is scored once; an online teacher changes, so it is re-run when needed.
    heldout_t = teacher_outputs(heldout_x) if heldout_x is not None and cfg.teacher.mode == "offline" else None
    if views is None:
        sample_t = heldout_t[:4] if heldout_t is not None else None

    def save(final: bool = False, heldout: dict | None = None) -> Path:
        """Rank 0 writes the self-describing checkpoint (atomic) and the teacher cache."""
        record = {
            "format_version": FORMAT_VERSION, "crd_edge_version": __version__, "torch_version": str(torch.__version__),
            "student": student_record(student, dc.test_size), "teacher": teacher.identity,
            "config": cfg.to_dict(), "step": step, "total_steps": total, "final": final,
            "metrics": last_metrics, "heldout": heldout, "vgg_weights": vgg_info,
            "train_state": {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "scaler": scaler.state_dict(),
                            "discriminator": disc.state_dict() if opt_d is not None else None,
                            "optimizer_d": opt_d.state_dict() if opt_d is not None else None,
                            "online_teacher": teacher.state_dict() if cfg.teacher.mode == "online" else None},
        }
        atomic_torch_save(record, run_dir / "checkpoint.pt")
        if cache is not None and len(cache.entries) != saved_cache_entries[0]:
            atomic_torch_save(cache.state_dict(), run_dir / "teacher_cache.pt")
            saved_cache_entries[0] = len(cache.entries)
        return run_dir / "checkpoint.pt"

    if dist.is_main:
        write_json(run_dir / "config.json", cfg.to_dict())
        if views is not None:
            write_json(run_dir / "photos.json", views.photos.manifest)
            views.bank.start()  # label the rest of the bank in the background while training
    saved_cache_entries = [0]
    last_metrics: dict = {}
    meter = Meter()
    window_images, window_start = 0, time.perf_counter()
    train_start, images_seen = time.perf_counter(), 0
    interrupted = False
    progress = TrainProgress(total, step, enabled=dist.is_main and not quiet)
    # The first Ctrl-C asks to stop after the current step (weights, optimiser and step counter
    # then agree); a second one interrupts at once (Python's default).
    stop_requested = [False]
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        def request_stop(signum, frame):
            stop_requested[0] = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
        previous_handler = signal.signal(signal.SIGINT, request_stop)

    # -- 4. The loop ------------------------------------------------------------------------------
    try:
        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            if views is not None:
                # Views are drawn at random from those labelled so far (seeded by run and step).
                loader = ({"A": x, "T": t} for x, t in (
                    views.bank.sample(dc.batch_size, torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + s))
                    for s in range(step, step + steps_per_epoch - offset)))
            else:
                train_set.set_epoch(epoch % dc.augment_views if dc.augment_views else epoch)
                if cache is not None and cache.full_image and dc.color_jitter > 0:
                    raise UserError("teacher.cache=full cannot be combined with data.color_jitter; use exact or off")
                batches = D.shard_epoch(len(train_set), epoch, cfg.train.seed, dc.batch_size, dist)[offset:]
                loader = DataLoader(train_set, batch_sampler=batches, num_workers=dc.workers, collate_fn=default_collate)
            for batch in loader:
                aug_epoch = epoch % dc.augment_views if dc.augment_views else epoch
                view = aug_epoch if dc.augment_views else 0  # cache key: which cycled augmentation
                x = batch["A"]
                if dc.color_jitter > 0:
                    x = torch.stack([apply_jitter(img, jitter_params(random.Random(
                        f"jitter/{cfg.train.seed}/{aug_epoch}/{int(i)}"), dc.color_jitter))
                        for img, i in zip(x, batch["index"])])
                x = x.to(device, non_blocking=True)
                student_active = True
                if cfg.teacher.mode == "online":
                    # The online teacher (G and D) takes its own step on this batch first; the
                    # student then imitates the updated teacher (CycleGAN: in its own phases).
                    if teacher.teacher_trains(step, steps_per_epoch):
                        for k, v in teacher.train_step(batch).items():
                            meter.add(k, v)
                    student_active = teacher.student_trains(step, steps_per_epoch)
                if student_active:
                    with torch.no_grad():
                        target = (batch["T"].to(device) if "T" in batch else
                                  cache.targets(batch, dc.size, x, view) if cache is not None else teacher(x))
                    out = None
                    if opt_d is not None and views is not None:
                        # pix2pix order: the student's output first, D learns from it (detached),
                        # then the student's loss goes through the updated D.
                        with torch.autocast(device.type, enabled=amp):
                            out = model(x)
                        meter.add("D", _discriminator_step(disc, opt_d, x, target, out.detach().float(),
                                                           conditional, gan_mode))
                    elif opt_d is not None:
                        # Offline: the teacher's D learns real targets vs *teacher* outputs, never
                        # the student's, so it keeps describing the teacher's distribution.
                        disc.requires_grad_(True)
                        real = batch["B"].to(device)
                        real_in, fake_in = ((torch.cat([x, real], 1), torch.cat([x, target], 1))
                                            if conditional else (real, target))
                        loss_d = 0.5 * (lsgan_loss(disc(real_in), True) + lsgan_loss(disc(fake_in), False))
                        opt_d.zero_grad(set_to_none=True)
                        loss_d.backward()
                        D.average_gradients(disc.parameters(), dist)  # D is not DDP-wrapped
                        opt_d.step()
                        meter.add("teacher_D", float(loss_d))
                    if disc is not None:
                        disc.requires_grad_(False)  # frozen for the student's step
                    with torch.autocast(device.type, enabled=amp):
                        out = model(x) if out is None else out
                        terms = student_losses(out.float(), target, cfg.loss, vgg=vgg, discriminator=disc,
                                               condition=x if conditional else None, gan_mode=gan_mode)
                        loss = sum(terms.values())
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    # Clipping: a student without normalisation layers can take one oversized
                    # step at a high LR and saturate its tanh for good (seen once in the built-in
                    # job: held-out 3.7 dB). The norm is logged either way.
                    scaler.unscale_(opt)
                    grad_norm = torch.nn.utils.clip_grad_norm_(
                        model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
                    meter.add("grad_norm", float(grad_norm))
                    scaler.step(opt)
                    scaler.update()
                    for k, v in terms.items():
                        meter.add(k, float(v.detach()))
                    meter.add("loss", float(loss.detach()))
                sched.step()
                step += 1
                images_seen += len(x) * dist.world_size
                window_images += len(x) * dist.world_size

                if step % cfg.train.log_every == 0 or step == total:
                    means = D.reduce_mean(meter.means(), dist)
                    elapsed = time.perf_counter() - window_start
                    last_metrics = {"step": step, "epoch": epoch, "lr": sched.get_last_lr()[0],
                                    "images_per_s": window_images / max(elapsed, 1e-9), **means}
                    if dist.is_main:
                        append_jsonl(run_dir / "metrics.jsonl", last_metrics)
                    progress.update(step, last_metrics)
                    meter, window_images, window_start = Meter(), 0, time.perf_counter()
                else:
                    progress.update(step)
                if views is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0:
                    append_jsonl(run_dir / "metrics.jsonl",
                                 {"step": step, **_curve_point(student, views, device, cfg.train.eval_full)})
                if dist.is_main and cfg.train.sample_every and step % cfg.train.sample_every == 0:
                    _write_samples(run_dir / "samples" / f"step_{step:06d}.png", student, sample_x,
                                   sample_t if sample_t is not None else teacher_outputs(sample_x), device)
                if dist.is_main and cfg.train.save_every and step % cfg.train.save_every == 0 and step < total:
                    save()
                if D.any_rank(stop_requested[0], dist, device):
                    raise KeyboardInterrupt  # at a step boundary: the saved state is consistent
                if step >= total:
                    break
    except KeyboardInterrupt:
        interrupted = True  # fall through: save what we have, then tell the user how to resume
    finally:
        progress.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)

    # -- 5. Final evaluation, checkpoint and report (rank 0) -------------------------------------------
    train_seconds = time.perf_counter() - train_start
    summary: dict = {}
    if dist.is_main:
        if heldout_x is not None and heldout_t is None:
            heldout_t = teacher_outputs(heldout_x)  # the online teacher as it ended
        heldout = heldout_fidelity(student, heldout_x, heldout_t) if heldout_x is not None and not interrupted else None
        if views is not None:
            views.bank.stop()
            if views.heldout is not None and not interrupted:
                heldout = _score_views(student, views, device, run_dir)
        _write_samples(run_dir / "samples" / f"step_{step:06d}.png", student, sample_x,
                       sample_t if views is not None else
                       heldout_t[:4] if heldout_t is not None else teacher_outputs(sample_x), device)
        save(final=not interrupted, heldout=heldout)
        macs = count_macs(create_model(cfg.student.arch, **cfg.student.kwargs), (1, 3, 256, 256))
        summary = {
            "run_dir": str(run_dir), "step": step, "total_steps": total, "interrupted": interrupted,
            "teacher": teacher.identity, "device": str(device), "batch_size": dc.batch_size,
            "crop_size": dc.size, "test_size": dc.test_size, "world_size": dist.world_size,
            "student": {"arch": cfg.student.arch, "kwargs": cfg.student.kwargs, "params": macs.params,
                        "true_gmacs": macs.true_macs / 1e9, "paper_gmacs": macs.paper_macs / 1e9},
            "data": ({"description": views.photos.description, "train_images": len(views.photos.train),
                      "test_images": len(views.photos.test), "skipped": views.photos.skipped.as_dict(),
                      "views": views.describe()} if views is not None else
                     {"description": train_set.describe(),
                      "train_images": len(train_set), "test_images": 0 if test_set is None else len(test_set),
                      "skipped": train_set.skipped.as_dict()}),
            "train_seconds": train_seconds, "images_per_second": images_seen / max(train_seconds, 1e-9),
            "loss_terms": sorted(k for k in last_metrics if k not in ("step", "epoch", "lr", "images_per_s", "loss", "grad_norm")),
            "vgg": vgg_info, "gan_note": gan_note,
            "cache_note": (_views_note(views) if views is not None else
                           CACHE_NOTES[cfg.teacher.cache].format(load=dc.load_size)
                           + f"; {cache.teacher_calls} teacher passes this session"
                           if cache is not None else "teacher run on every batch (no cache)"),
            "heldout": heldout, "final_metrics": last_metrics,
        }
        if views is not None:
            curve = plot_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", f"{run_dir.name}")
            summary["learning_curve"] = curve.name if curve is not None else None
        write_json(run_dir / "summary.json", summary)
        (run_dir / "report.md").write_text(render_report(summary))
    D.barrier(dist)
    D.cleanup(dist)
    return DistillResult(run_dir, run_dir / "checkpoint.pt", step, summary, interrupted)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint (a crash after the last save): the resumed
    run logs those steps again."""
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(row + "\n" for row in rows))


@torch.no_grad()
def _write_samples(path: Path, student: nn.Module, x: torch.Tensor, t: torch.Tensor, device) -> None:
    was = student.training
    student.eval()
    s = student(x.to(device)).float().cpu()
    student.train(was)
    save_grid(path, [x, t, s])



def _discriminator_step(disc: nn.Module, opt_d, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
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


def _score_views(student: nn.Module, views: "ViewTraining", device, run_dir: Path) -> dict:
    """Every held-out figure and the held-out grid picture (input | teacher | student)."""
    held = views.heldout
    outputs = student_outputs(student, held.inputs, device)
    scores = score_heldout(outputs, held)
    save_grid(run_dir / "heldout_grid.png", [_spread(held.inputs), _spread(held.targets), _spread(outputs)])
    scores["grid"] = "heldout_grid.png"
    return scores


def _views_note(views: "ViewTraining") -> str:
    info = views.describe()
    return (f"the teacher run on each view itself ({info['labeller'].get('runtime')}, {info['labeller'].get('precision')}); "
            f"{info['bank']['views']} labelled views in {info['bank']['folder']} "
            f"({info['bank']['loaded_from_disk']} reused from disk), {info['teacher_passes']} teacher passes "
            f"this session, {info['labelling_seconds']:.0f} s labelling")
