"""One step of the distillation loop: (optionally) the online teacher's own step and an update of
the discriminator, then the teacher's output for the batch, the student's forward pass, the
weighted terms of ``objective.student_losses``, the optimiser's step, and the LR schedule's.
"""

from __future__ import annotations

import random
import warnings

import torch
from torch import nn

from crd_edge.data.jitter import apply_jitter, jitter_params
from crd_edge.training import distributed as D
from crd_edge.training.gan_losses import hinge_d_loss, lsgan_loss
from crd_edge.training.objective import student_losses
from crd_edge.training.run_setup import RunSetup


class RunStep:
    """The training step of a run (``RunSetup``: what it trains with). Each call adds the step's
    scalars to the loop's meter; ``batch_images`` is the last step's batch over every rank."""

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.batch_images = 0

    def __call__(self, batch: dict, epoch: int, step: int, meter) -> None:
        """One step: the online teacher's own step first (if any), then the student's."""
        s = self.setup
        cfg, dc = s.cfg, s.cfg.data
        aug_epoch = epoch % dc.augment_views if dc.augment_views else epoch
        x = batch["A"]
        if dc.color_jitter > 0:
            x = torch.stack([apply_jitter(img, jitter_params(random.Random(
                f"jitter/{cfg.train.seed}/{aug_epoch}/{int(i)}"), dc.color_jitter))
                for img, i in zip(x, batch["index"])])
        x = x.to(s.device, non_blocking=True)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.batch_images = len(x) * s.dist.world_size
        if s.online:
            # The online teacher (G and D) takes its own step on this batch first; the
            # student then imitates the updated teacher (CycleGAN: in its own phases).
            if s.teacher.teacher_trains(step, s.steps_per_epoch):
                for k, v in s.teacher.train_step(batch).items():
                    meter.add(k, v)
            if not s.teacher.student_trains(step, s.steps_per_epoch):
                self._step_schedule()
                return
        view = aug_epoch if dc.augment_views else 0  # cache key: which cycled augmentation
        with torch.no_grad():
            target = (batch["T"].to(s.device) if "T" in batch else
                      s.cache.targets(batch, dc.size, x, view) if s.cache is not None else s.teacher(x))
        out = self._discriminator_step(x, target, batch, meter)
        self._student_step(x, target, out, meter)
        self._step_schedule()

    def _step_schedule(self) -> None:
        # The schedule counts training steps, not optimiser updates. With mixed precision the
        # GradScaler skips the update of a step whose gradients overflowed (the first steps, while
        # it finds its scale), and torch then warns that the scheduler stepped first: intended
        # here, so that one warning is silenced (only then: this runs every step).
        if not self.setup.amp:
            self.setup.sched.step()
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.setup.sched.step()

    def _discriminator_step(self, x: torch.Tensor, target: torch.Tensor, batch: dict,
                            meter) -> torch.Tensor | None:
        """Update the D this run trains, if any; returns the student's output when it was needed
        for that (the views path), so the student's step reuses it."""
        s = self.setup
        disc, opt_d = s.disc, s.opt_d
        out = None
        if opt_d is not None and s.views is not None:
            # pix2pix order: the student's output first, D learns from it (detached),
            # then the student's loss goes through the updated D.
            with torch.autocast(s.device.type, dtype=s.amp_dtype, enabled=s.amp):
                out = s.model(x)
            meter.add("D", views_discriminator_step(disc, opt_d, x, target, out.detach().float(),
                                                    s.conditional, s.gan_mode))
        elif opt_d is not None:
            # Offline: the teacher's D learns real targets vs *teacher* outputs, never
            # the student's, so it keeps describing the teacher's distribution.
            disc.requires_grad_(True)
            real = batch["B"].to(s.device)
            real_in, fake_in = ((torch.cat([x, real], 1), torch.cat([x, target], 1))
                                if s.conditional else (real, target))
            loss_d = 0.5 * (lsgan_loss(disc(real_in), True) + lsgan_loss(disc(fake_in), False))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            D.average_gradients(disc.parameters(), s.dist)  # D is not DDP-wrapped
            opt_d.step()
            meter.add("teacher_D", float(loss_d))
        if disc is not None:
            disc.requires_grad_(False)  # frozen for the student's step
        return out

    def _student_step(self, x: torch.Tensor, target: torch.Tensor, out: torch.Tensor | None, meter) -> None:
        s = self.setup
        with torch.autocast(s.device.type, dtype=s.amp_dtype, enabled=s.amp):
            out = s.model(x) if out is None else out
            terms = student_losses(out.float(), target, s.cfg.loss, vgg=s.vgg, discriminator=s.disc,
                                   condition=x if s.conditional else None, gan_mode=s.gan_mode)
            if s.features is not None:  # the student's activations of the forward pass above
                terms["distill_features"] = s.features.loss(x)
            loss = sum(terms.values())
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        # Clipping: a student without normalisation layers can take one oversized step at a high
        # LR and saturate its tanh for good (seen once in the built-in job: held-out 3.7 dB).
        # The norm is logged either way.
        if s.features is not None:
            D.average_gradients(s.features.adapters.parameters(), s.dist)  # not DDP-wrapped
        s.scaler.unscale_(s.opt)
        clip = s.cfg.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), clip if clip > 0 else float("inf"))
        s.scaler.step(s.opt)
        s.scaler.update()
        meter.add("grad_norm", float(grad_norm))
        for k, v in terms.items():
            meter.add(k, float(v.detach()))
        meter.add("loss", float(loss.detach()))


def views_discriminator_step(disc: nn.Module, opt_d, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
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
