"""Adversarial losses: least-squares GAN (CycleGAN, CRD student) and hinge (pix2pix teacher).

Every function takes one discriminator prediction tensor or a list of them (multi-scale
discriminators); a list gives the mean of the per-tensor losses, so one tensor and a
one-element list agree and the scale does not grow with the number of discriminators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["lsgan_loss", "hinge_d_loss", "hinge_g_loss", "LSGANLoss"]

Prediction = Tensor | Sequence[Tensor]


def _mean_over(pred: Prediction, name: str, fn: Callable[[Tensor], Tensor]) -> Tensor:
    preds = [pred] if isinstance(pred, Tensor) else list(pred)
    if not preds:
        raise ValueError(f"{name}: expected a tensor or a non-empty list of tensors")
    for i, p in enumerate(preds):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}[{i}]: expected a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise ValueError(f"{name}[{i}]: expected a floating-point tensor, got {p.dtype}")
    # float32 accumulation: fp16 predictions squared can overflow under autocast.
    losses = [fn(p.float() if p.dtype in (torch.float16, torch.bfloat16) else p) for p in preds]
    return torch.stack(losses).mean()


def lsgan_loss(pred: Prediction, target_is_real: bool) -> Tensor:
    r"""Least-squares GAN loss (Mao et al., "Least Squares GANs", ICCV 2017).

    .. math::
        \mathcal{L} = \operatorname{mean}\,(D(x) - y)^2,\qquad y = 1 \text{ (real) or } 0
        \text{ (fake)}

    The same function serves the discriminator (real -> 1, fake -> 0) and the generator
    (fake predictions with ``target_is_real=True``).
    """
    target = 1.0 if target_is_real else 0.0
    return _mean_over(pred, "pred", lambda p: F.mse_loss(p, torch.full_like(p, target)))


def hinge_d_loss(real_pred: Prediction, fake_pred: Prediction) -> Tensor:
    r"""Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018).

    .. math::
        \mathcal{L}_D = \operatorname{mean}\,\max(0, 1 - D(x)) +
        \operatorname{mean}\,\max(0, 1 + D(G(z)))
    """
    real = _mean_over(real_pred, "real_pred", lambda p: F.relu(1.0 - p).mean())
    fake = _mean_over(fake_pred, "fake_pred", lambda p: F.relu(1.0 + p).mean())
    return real + fake


def hinge_g_loss(fake_pred: Prediction) -> Tensor:
    r"""Hinge generator loss: :math:`\mathcal{L}_G = -\operatorname{mean}\, D(G(z))`."""
    return _mean_over(fake_pred, "fake_pred", lambda p: -p.mean())


class LSGANLoss(nn.Module):
    """Module form of :func:`lsgan_loss`: ``loss(pred, target_is_real)``."""

    def forward(self, pred: Prediction, target_is_real: bool) -> Tensor:
        return lsgan_loss(pred, target_is_real)
