"""The paper's online scheme: the teacher is trained from scratch alongside the student.

* ``cyclegan``: two generators (G: A->B, the one distilled; F: B->A) and two PatchGAN
  discriminators with the standard CycleGAN losses (LSGAN, cycle weight 10, identity 0.5,
  image pool of 50). Phases alternate as in CRD's schedule: ``save_epoch_freq`` epochs of
  teacher training, then ``n_dis * save_epoch_freq`` epochs in which the student trains
  against the frozen teacher, then the teacher resumes. CRD loads the teacher with the best
  test FID at each phase; selecting on the test set leaks it into model selection
  (docs/method.md, "Where crd-edge departs"), so the latest teacher is used instead.
* ``pix2pix``: teacher G, conditional teacher D and student all update every step; teacher
  losses hinge GAN + 100 x L1; the student's GAN term uses the hinge generator loss too.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from crd_edge.config import RunConfig
from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.training.distributed import DistInfo, average_gradients
from crd_edge.training.gan_losses import hinge_d_loss, hinge_g_loss, lsgan_loss


class ImagePool:
    """Shrivastava et al.'s history of generated images: D sees old fakes half of the time.
    Uses its own seeded RNG (saved in checkpoints) so that resumed runs stay identical."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images, self.rng = size, [], random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)


def _adam(params, cfg: RunConfig):
    return torch.optim.Adam(params, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))


class OnlineTeacher:
    """Teacher networks trained during distillation; callable like a frozen teacher."""

    def __init__(self, cfg: RunConfig, device: torch.device, conditional: bool,
                 dist: DistInfo = DistInfo(), lr_factor=None, has_targets: bool = True) -> None:
        tc = cfg.teacher
        self.cfg, self.device, self.recipe, self.dist = cfg, device, tc.recipe, dist
        if tc.recipe == "pix2pix" and not conditional:
            raise UserError("the pix2pix online recipe needs aligned A|B data (--set data.layout=aligned)")
        if tc.recipe == "cyclegan" and conditional:
            raise UserError("the cyclegan online recipe needs unaligned trainA/trainB data")
        if not has_targets:
            raise UserError("--online trains the teacher, which needs target-domain images: pass --data "
                            "with trainA/ and trainB/ (CycleGAN) or A|B pairs (pix2pix)")
        arch = tc.arch or ("resnet_9blocks" if tc.recipe == "cyclegan" else "unet_256")
        self.G = create_model(arch, **tc.kwargs).to(device)
        self.identity = {"source": None, "kind": "online", "recipe": tc.recipe, "arch": self.G.crd_spec}
        self.gan_mode = "lsgan" if tc.recipe == "cyclegan" else "hinge"
        if tc.recipe == "cyclegan":
            self.F = create_model(arch, **tc.kwargs).to(device)
            self.D_B = create_model("patchgan").to(device)   # judges domain B: real B vs G(A)
            self.D_A = create_model("patchgan").to(device)   # judges domain A: real A vs F(B)
            self.opt_g = _adam(list(self.G.parameters()) + list(self.F.parameters()), cfg)
            self.opt_d = _adam(list(self.D_A.parameters()) + list(self.D_B.parameters()), cfg)
            self.pools = (ImagePool(tc.pool_size, cfg.train.seed), ImagePool(tc.pool_size, cfg.train.seed + 1))
            self.discriminator = self.D_B
        else:
            self.D = create_model("patchgan_pix2pix").to(device)
            self.opt_g, self.opt_d = _adam(self.G.parameters(), cfg), _adam(self.D.parameters(), cfg)
            self.discriminator = self.D
        # The teacher follows the same constant-then-linear-decay schedule (docs/method.md, "The objective").
        factor = lr_factor or (lambda step: 1.0)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (self.opt_g, self.opt_d)]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Run as the teacher trains (pix2pix's BatchNorm uses batch statistics, as in pix2pix).
        return self.G(x).float()

    def student_trains(self, step: int, steps_per_epoch: int) -> bool:
        """CycleGAN phases (teacher epochs, then student epochs); pix2pix: always both."""
        if self.recipe == "pix2pix":
            return True
        tc = self.cfg.teacher
        cycle = (1 + tc.n_dis) * tc.save_epoch_freq
        return (step // steps_per_epoch) % cycle >= tc.save_epoch_freq

    def teacher_trains(self, step: int, steps_per_epoch: int) -> bool:
        return self.recipe == "pix2pix" or not self.student_trains(step, steps_per_epoch)

    def train_step(self, batch: dict) -> dict[str, float]:
        a, b = batch["A"].to(self.device), batch["B"].to(self.device)
        metrics = self._cyclegan_step(a, b) if self.recipe == "cyclegan" else self._pix2pix_step(a, b)
        for scheduler in self.schedulers:
            scheduler.step()
        return metrics

    def _step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients over DDP ranks (the teacher is not DDP-wrapped), then step."""
        average_gradients((p for group in optimizer.param_groups for p in group["params"]), self.dist)
        optimizer.step()

    def _cyclegan_step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        tc = self.cfg.teacher
        self.D_A.requires_grad_(False)
        self.D_B.requires_grad_(False)
        fake_b, fake_a = self.G(a), self.F(b)
        loss_gan = lsgan_loss(self.D_B(fake_b), True) + lsgan_loss(self.D_A(fake_a), True)
        loss_cycle = tc.cycle_weight * ((self.F(fake_b) - a).abs().mean() + (self.G(fake_a) - b).abs().mean())
        loss_idt = torch.zeros((), device=a.device)
        if tc.identity_weight > 0:
            loss_idt = tc.cycle_weight * tc.identity_weight * ((self.G(b) - b).abs().mean() + (self.F(a) - a).abs().mean())
        self.opt_g.zero_grad(set_to_none=True)
        (loss_gan + loss_cycle + loss_idt).backward()
        self._step(self.opt_g)
        self.D_A.requires_grad_(True)
        self.D_B.requires_grad_(True)
        pool_b, pool_a = self.pools[0].query(fake_b), self.pools[1].query(fake_a)
        loss_d = 0.5 * (lsgan_loss(self.D_B(b), True) + lsgan_loss(self.D_B(pool_b), False)
                        + lsgan_loss(self.D_A(a), True) + lsgan_loss(self.D_A(pool_a), False))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self._step(self.opt_d)
        return {"teacher_G_gan": float(loss_gan), "teacher_cycle": float(loss_cycle),
                "teacher_idt": float(loss_idt), "teacher_D": float(loss_d)}

    def _pix2pix_step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        fake = self.G(a)
        self.D.requires_grad_(True)
        loss_d = hinge_d_loss(self.D(torch.cat([a, b], 1)), self.D(torch.cat([a, fake.detach()], 1)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self._step(self.opt_d)
        self.D.requires_grad_(False)
        loss_gan = hinge_g_loss(self.D(torch.cat([a, fake], 1)))
        loss_l1 = self.cfg.teacher.l1_weight * (fake - b).abs().mean()
        self.opt_g.zero_grad(set_to_none=True)
        (loss_gan + loss_l1).backward()
        self._step(self.opt_g)
        return {"teacher_G_gan": float(loss_gan), "teacher_l1": float(loss_l1), "teacher_D": float(loss_d)}

    def networks(self) -> list[nn.Module]:
        """Every network this teacher trains (generators and discriminators)."""
        return list(self._modules().values())

    def _modules(self) -> dict[str, nn.Module]:
        if self.recipe == "cyclegan":
            return {"G": self.G, "F": self.F, "D_A": self.D_A, "D_B": self.D_B}
        return {"G": self.G, "D": self.D}

    def state_dict(self) -> dict:
        state = {name: m.state_dict() for name, m in self._modules().items()}
        state.update(opt_g=self.opt_g.state_dict(), opt_d=self.opt_d.state_dict(),
                     schedulers=[s.state_dict() for s in self.schedulers])
        if self.recipe == "cyclegan":
            # Pools hold tensors; the RNG state is a tuple of ints: both load with weights_only.
            state["pools"] = [{"images": p.images, "rng": list(p.rng.getstate()[1]), "gauss": p.rng.getstate()[2]}
                              for p in self.pools]
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, module in self._modules().items():
            module.load_state_dict(state[name])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for scheduler, saved in zip(self.schedulers, state.get("schedulers", ())):
            scheduler.load_state_dict(saved)
        for pool, saved in zip(getattr(self, "pools", ()), state.get("pools", ())):
            pool.images = [img.to(self.device) for img in saved["images"]]
            pool.rng.setstate((3, tuple(saved["rng"]), saved["gauss"]))
