"""Accuracy-aware int8: when a fully quantised artifact falls short, keep the layers that cost the
most accuracy in float, as accuracy-aware quantisers do (NNCF's accuracy control, onnxruntime's
``nodes_to_exclude``, LiteRT's selective quantisation).

1. **Rank** (torch, on the calibration photos): each convolution alone is rounded to int8 (its
   input activation per tensor over the 99.99th-percentile range, its weights per output
   channel, symmetric) with every other layer in float, and the output's PSNR against the float
   model is its sensitivity. One forward pass per layer: seconds for a student.
2. **Search** (in the target's own quantiser and runtime): quantise with the k most sensitive
   units left in float, k = 0, 1, 2, 4, ..., until the artifact's output on the calibration
   photos reaches :data:`AIM_DB` (mean PSNR) against the float model and its worst photo
   :data:`AIM_WORST_DB`, then bisect for the smallest such k. A target may put units of its own ahead of the ranked layers (``lead``):
   what its quantiser rounds that costs the most in generators with InstanceNorm, the tensors
   entering each norm (measured on the trained default student, 3 held-out photos, worst /
   mean PSNR: NNCF 29.1 / 30.6 dB, with the norms' inputs in float 40.8 / 43.7 at the same
   speed; onnxruntime 28.4 / 34.8, with the convolutions' outputs and every other op in float
   36.5 / 43.4; LiteRT's full-integer file 15.0 / 22.0 on the 16 calibration photos, every op
   but the convolutions in float 33.1 / 35.0).

The verification photos are never used here: calibration and this search see training photos
only, and the artifact is verified afterwards on the held-out photos like every other. The
quantisers differ from the torch simulation, so the ranking only orders the candidates; every
decision is measured in the target's own runtime. Layers are named by their weight's key in the
exported model (``model.18`` for ``model.18.weight``), which every target maps to its own nodes.

Written here because no quantiser does this for all our targets: NNCF's accuracy control is
OpenVINO-only, and onnxruntime and ai-edge-quantizer take an exclusion list but do not search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

AIM_DB = 40.0        # the search stops here: well above the 30 dB verification floor
# ... and its worst calibration photo here. The floor applies to the worst verification photo,
# and a mean alone let one through at 29.9 dB (LiteRT, the trained default student: calibration
# mean 40.5 / worst 33.9 dB, verification mean 35.0 / worst 29.9 dB): held-out photos fall
# further from the calibration range than the training photos the search sees.
AIM_WORST_DB = 36.0
# What a target keeps in float before any ranked convolution (its ``lead``), named as the
# manifest and the verification table say it. The normalisations, additions and colour maths
# cost few MACs and lose the most in int8: their ranges change per image.
NON_CONVOLUTIONS = "every op but the convolutions"                 # LiteRT
CONVOLUTION_OUTPUTS = "the convolutions' outputs and every other op"  # onnxruntime, TensorRT (QDQ)
NORM_INPUTS = "the tensors entering each normalisation"            # OpenVINO (NNCF)
# Beyond half the MACs in float an "int8" artifact is mostly a float one: the search stops
# there, and an artifact still short of the floor fails its verification as it is.
MAX_FLOAT_MAC_SHARE = 0.5
PERCENTILE = 99.99   # activation range, as the onnxruntime target calibrates


@dataclass
class Layer:
    key: str        # the weight's key without ".weight": model.18, colour.expand
    macs: int       # per image at the calibration size
    psnr_db: float  # output PSNR with this layer alone in int8


def _psnrs(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each image's PSNR (peak-to-peak 2 for [-1, 1] images), as the verification computes it."""
    mse = ((outputs - reference) ** 2).reshape(len(reference), -1).mean(1)
    return 10 * np.log10(4.0 / np.maximum(mse, 1e-20))


def _psnr(outputs: np.ndarray, reference: np.ndarray) -> float:
    """The worst image's PSNR: a layer's sensitivity."""
    return float(_psnrs(outputs, reference).min())


def _fake_quant_input(x: torch.Tensor) -> torch.Tensor:
    low, high = np.percentile(x.numpy(), [100 - PERCENTILE, PERCENTILE])
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max(high - low, 1e-8) / 255
    zero = round(-low / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: torch.Tensor, channel_dim: int) -> torch.Tensor:
    dims = [d for d in range(w.dim()) if d != channel_dim]
    scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(w / scale).clamp(-127, 127) * scale


def _conv_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    kernel = int(np.prod(module.kernel_size)) * module.in_channels * module.out_channels // module.groups
    pixels = output[0, 0].numel() if isinstance(module, nn.Conv2d) else inputs[0, 0].numel()
    return kernel * pixels


def rank_layers(model: nn.Module, images: torch.Tensor, keys: set[str] | None = None) -> list[Layer]:
    """The sensitivity of every convolution (of those in ``keys``, the ones the target can keep
    in float), most sensitive (lowest PSNR) first."""
    convs = {name: m for name, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and (keys is None or name in keys)}
    macs: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: macs.__setitem__(n, _conv_macs(m, i[0], o)))
             for n, m in convs.items()]
    with torch.no_grad():
        model(images[:1])  # one pass for the MAC counts
        for hook in hooks:
            hook.remove()
        reference = model(images).numpy()
        layers = []
        for name, conv in convs.items():
            weight = conv.weight.data.clone()
            # Conv2d weights are (out, in, kh, kw); ConvTranspose2d's are (in, out, kh, kw).
            conv.weight.data = _fake_quant_weight(weight, 0 if isinstance(conv, nn.Conv2d) else 1)
            hook = conv.register_forward_pre_hook(lambda m, args: (_fake_quant_input(args[0]),))
            try:
                psnr = _psnr(model(images).numpy(), reference)
            finally:
                hook.remove()
                conv.weight.data = weight
            if name in macs:  # not a layer left unused by a rewrite
                layers.append(Layer(name, macs[name], psnr))
    return sorted(layers, key=lambda layer: layer.psnr_db)


def run_artifact(path: Path, batch: np.ndarray) -> np.ndarray:
    """``path``'s outputs for ``batch`` (N, 3, H, W), image by image, through the runtime layer."""
    from crd_edge.runtime import open_session
    session = open_session(path)
    return np.concatenate([session.run(x[None]) for x in batch])


def search(model: nn.Module, images: torch.Tensor, quantize: Callable[[list[str]], Path],
           keys: set[str] | None = None, lead: tuple[str, ...] = (), aim_db: float | None = None,
           run: Callable[[Path, np.ndarray], np.ndarray] = run_artifact) -> tuple[Path, dict]:
    """Quantise with as few float layers as reach ``aim_db`` (mean PSNR) on ``images`` (the
    calibration photos; the verification applies its floor to the worst held-out photo).
    ``quantize(keys)`` writes an artifact with those units in float and returns its path;
    ``keys``: the layers the target can keep in float (None: every convolution); ``lead``:
    units the target leaves in float before any ranked layer (LiteRT: every op but the
    convolutions). Returns the chosen artifact and the record for the manifest; the most
    accurate one tried if none reaches the aim (``aim_db`` None: :data:`AIM_DB`; the worst
    photo's aim is :data:`AIM_WORST_DB`, never above the mean's)."""
    aim_db = AIM_DB if aim_db is None else aim_db
    with torch.no_grad():
        reference = model(images).numpy()
    trials = _Trials(quantize, run, images.numpy(), reference, aim_db, min(AIM_WORST_DB, aim_db))
    trials.ranking = [Layer(unit, 0, float("nan")) for unit in lead]
    shares = np.zeros(len(trials.ranking))
    start = len(lead)  # the lead units first, as one step: ranking the layers costs a pass each
    if not trials.attempt(0) and (not start or not trials.attempt(start)):
        trials.ranking += rank_layers(model, images, keys)
        shares = _float_mac_shares(trials.ranking)
        most = int(np.searchsorted(shares, MAX_FLOAT_MAC_SHARE, side="right"))  # float units allowed
        trials.grow_then_bisect(start, most)
    chosen = trials.chosen()
    return trials.tried[chosen][0], _search_record(trials, chosen, shares, lead, start, len(images))


def _float_mac_shares(ranking: list[Layer]) -> np.ndarray:
    """The share of all MACs left in float with the first k units in float, at index k - 1."""
    return np.cumsum([layer.macs for layer in ranking]) / max(sum(layer.macs for layer in ranking), 1)


class _Trials:
    """The artifacts :func:`search` has tried, by k (the first k units of ``ranking`` in float),
    each measured once: a quantiser run costs seconds to minutes."""

    def __init__(self, quantize: Callable[[list[str]], Path], run: Callable[[Path, np.ndarray], np.ndarray],
                 batch: np.ndarray, reference: np.ndarray, aim_db: float, aim_worst_db: float):
        self.quantize, self.run, self.batch, self.reference = quantize, run, batch, reference
        self.aim_db, self.aim_worst_db = aim_db, aim_worst_db
        self.ranking: list[Layer] = []
        self.tried: dict[int, tuple[Any, float, float]] = {}  # k -> (artifact, mean PSNR, worst PSNR)

    def reaches(self, k: int) -> bool:
        return self.tried[k][1] >= self.aim_db and self.tried[k][2] >= self.aim_worst_db

    def attempt(self, k: int) -> bool:
        """Quantise with the k first units in float; True when the result reaches both aims."""
        artifact = self.quantize([layer.key for layer in self.ranking[:k]])
        psnrs = _psnrs(self.run(artifact, self.batch), self.reference)
        self.tried[k] = (artifact, float(psnrs.mean()), float(psnrs.min()))
        return self.reaches(k)

    def grow_then_bisect(self, start: int, most: int) -> None:
        """k = start + 1, 2, 4, ... (capped at ``most``) until one reaches the aims, then the
        smallest k between the last miss and it: few quantiser runs for a long ranking."""
        low, step = start, 1  # low: the largest k known to miss the aim
        k = min(start + step, most)
        while k < most and not self.attempt(k):
            low, step = k, 2 * step
            k = min(start + step, most)
        if k not in self.tried:
            self.attempt(k)
        high = k
        if self.reaches(high):
            while high - low > 1:  # the smallest k that reaches the aim, if monotone
                middle = (low + high) // 2
                if self.attempt(middle):
                    high = middle
                else:
                    low = middle

    def chosen(self) -> int:
        passing = [k for k in self.tried if self.reaches(k)]
        # None reaches both: the best worst photo (the verification floor applies to the worst).
        return min(passing) if passing else max(self.tried, key=lambda k: (self.tried[k][2], self.tried[k][1]))


def _search_record(trials: _Trials, chosen: int, shares: np.ndarray, lead: tuple[str, ...], start: int,
                   images: int) -> dict:
    """The manifest's record of the search: what stayed in float, the PSNRs of every k tried
    and, where layers were ranked, each one's sensitivity."""
    kept = [layer.key for layer in trials.ranking[:chosen]]
    tried = trials.tried
    record = {"aim_db": trials.aim_db, "aim_worst_db": trials.aim_worst_db, "images": images,
              "float_ops": [key for key in kept if key in lead],
              "float_layers": [key for key in kept if key not in lead],
              "float_mac_share": round(float(shares[chosen - 1]), 4) if chosen else 0.0,
              "psnr_db_mean": round(tried[chosen][1], 2), "psnr_db_min": round(tried[chosen][2], 2),
              "tried": [{"float_units": k, "psnr_db_mean": round(mean, 2), "psnr_db_min": round(worst, 2)}
                        for k, (_, mean, worst) in sorted(tried.items())]}
    if len(trials.ranking) > start:
        record["max_float_mac_share"] = MAX_FLOAT_MAC_SHARE
        record["sensitivity_db"] = {layer.key: round(layer.psnr_db, 2) for layer in trials.ranking[start:]}
    return record
