"""What a student has to learn from its teacher, measured on the held-out crops of a distill run:

1. **Colour.** How close to the teacher is a per-crop affine colour map of the input (3x3
   matrix and offset, fitted to each crop by least squares, i.e. the best any global colour
   head could do), and a per-tile one (a 4x4 grid of maps)?
2. **What KID sees.** KID, FID and vgg_dist of those oracles, and of the teacher's own output
   slightly blurred or with slight noise: how near the teacher an output must be for KID to
   call it the teacher's.
3. **Can the colour map be predicted?** Linear predictors of each view's map from global
   features (the input's channel statistics; the teacher's own bottleneck activations, pooled),
   trained on the bank's views by the pixel error of the map they predict, scored on the
   held-out crops; and the same trained on a quarter and a half of the photos, to show how it
   scales with the number of distinct photos.

``python -m research.anatomy --out runs/anatomy`` (the main job's config: its bank and
held-out split, labelled once and reused; the teacher-feature predictor needs a white-box
teacher). The figures are in docs/distill.md. A research tool, not a product command: it
answers "is my student short of data, capacity or texture?", and runs on any run config.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crd_edge._io import atomic_write_text
from crd_edge.errors import UserError

IDENTITY = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1)  # the map that copies the input


def colour_moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-view moments of input ``x`` and target ``y`` (N x 3 x H x W, [-1, 1]) from which the
    pixel error of any affine colour map follows without touching the pixels again:
    ``G = E[x1 x1^T]`` (4x4, x1 = (r, g, b, 1)), ``B = E[y x1^T]`` (3x4), ``C = E[|y|^2]``.
    Float64: the sums run over every pixel."""
    n = x.shape[0]
    x1 = torch.cat([x.reshape(n, 3, -1), torch.ones(n, 1, x[0, 0].numel(), dtype=x.dtype)], 1).double()
    yy = y.reshape(n, 3, -1).double()
    pixels = x1.shape[2]
    return x1 @ x1.transpose(1, 2) / pixels, yy @ x1.transpose(1, 2) / pixels, yy.pow(2).sum(1).mean(1)


def fit_colour_maps(moments, ridge: float = 1e-3) -> torch.Tensor:
    """The least-squares affine map (N x 3 x 4) of each view, shrunk by ``ridge`` towards the
    identity: a flat crop (a clear sky: its colour covariance is singular) keeps the input's
    colours in the directions it cannot tell, instead of getting an arbitrary matrix."""
    g, b, _ = moments
    eye = torch.eye(4, dtype=g.dtype)
    return (b + ridge * IDENTITY.to(g.dtype)) @ torch.linalg.inv(g + ridge * eye)


def colour_map_mse(maps: torch.Tensor, moments) -> torch.Tensor:
    """Mean squared pixel error (over pixels and channels) of ``maps`` on each view."""
    g, b, c = moments
    maps = maps.to(g.dtype)
    return (torch.einsum("nij,njk,nik->n", maps, g, maps) - 2 * (maps * b).sum((1, 2)) + c) / 3


def apply_colour_maps(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x1 = torch.cat([x.reshape(n, 3, -1), torch.ones(n, 1, x[0, 0].numel(), dtype=x.dtype)], 1)
    return (maps.to(x.dtype) @ x1).reshape(x.shape).clamp(-1, 1)


def tiled_colour_maps(x: torch.Tensor, y: torch.Tensor, tiles: int, ridge: float = 1e-3) -> torch.Tensor:
    """``x`` with a separate least-squares map fitted in each of ``tiles x tiles`` tiles."""
    n, _, h, w = x.shape
    th, tw = h // tiles, w // tiles

    def split(t):
        return t.unfold(2, th, th).unfold(3, tw, tw).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, th, tw)

    xt, yt = split(x), split(y)
    out = apply_colour_maps(xt, fit_colour_maps(colour_moments(xt, yt), ridge))
    return out.reshape(n, tiles, tiles, 3, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, 3, tiles * th, tiles * tw)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, reflect-padded (torchvision is not a dependency)."""
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def psnr_of_mse(mse: torch.Tensor) -> float:
    """Mean per-view PSNR in dB of per-view MSEs in [-1, 1] units (peak-to-peak 2)."""
    return float((10 * torch.log10(4 / mse.clamp_min(1e-10))).mean())


def fit_predictor(features: torch.Tensor, moments, *, weight_decay: float = 1e-2, steps: int = 2000,
                  seed: int = 0):
    """A linear map from standardised ``features`` to a colour map (the identity plus a learned
    change, starting at zero), trained by the pixel error of its maps (``colour_map_mse``).
    Why not regress the fitted maps' 12 numbers: a flat crop's matrix is arbitrary and the
    numbers' errors do not weigh as pixel errors do. Returns ``predict(features) -> maps``."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = features.mean(0), features.std(0) + 1e-5
    z = (features - mean) / std
    head = torch.nn.Linear(features.shape[1], 12)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), 1e-3, weight_decay=weight_decay)
    for _ in range(steps):
        idx = torch.randint(0, len(z), (min(256, len(z)),), generator=gen)
        loss = colour_map_mse(IDENTITY + head(z[idx]).view(-1, 3, 4), tuple(m[idx] for m in moments)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def predict(f: torch.Tensor) -> torch.Tensor:
        return IDENTITY + head((f - mean) / std).view(-1, 3, 4)
    return predict


def channel_stats(x: torch.Tensor) -> torch.Tensor:
    v = x.reshape(x.shape[0], 3, -1).float()
    return torch.cat([v.mean(2), v.std(2)], 1)


def last_residual_block(module: torch.nn.Module | None) -> int | None:
    """Index in ``module.model`` of a crd-edge ResNet generator's last residual block (the
    bottleneck); None for any other teacher (an ONNX one has no module to read)."""
    from crd_edge.models.resnet import ResidualBlock

    found = [i for i, layer in enumerate(getattr(module, "model", ())) if isinstance(layer, ResidualBlock)]
    return found[-1] if found else None


@torch.no_grad()
def bottleneck_stats(teacher: torch.nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Mean and deviation per channel of the teacher's activations after its last residual block."""
    to_bottleneck = teacher.model[:last_residual_block(teacher) + 1]
    out = []
    for i in range(0, len(x), batch):
        a = to_bottleneck(x[i:i + batch])
        out.append(torch.cat([a.mean((2, 3)), a.std((2, 3))], 1))
    return torch.cat(out)


def predictor_rows(views, teacher, bx: torch.Tensor, bank_m, hx: torch.Tensor, held_m) -> list[dict]:
    """Part 3: held-out PSNR of colour maps predicted from global features, trained on the bank's
    views of a quarter, half and all of the training photos."""
    features = {"input channel mean and deviation": (channel_stats(bx), channel_stats(hx))}
    if last_residual_block(teacher.module) is not None:
        features["teacher bottleneck, pooled"] = (bottleneck_stats(teacher.module, bx.float()),
                                                  bottleneck_stats(teacher.module, hx.float()))
    photo = torch.tensor(views.bank.photo_indices())  # which photo each bank view came from
    order = torch.randperm(len(views.photos.train), generator=torch.Generator().manual_seed(0))
    rows = []
    for fraction in (0.25, 0.5, 1.0):
        keep = torch.isin(photo, order[:max(1, round(fraction * len(order)))])
        seen = tuple(m[keep] for m in bank_m)
        for name, (fb, fh) in features.items():
            predict = fit_predictor(fb[keep], seen)
            rows.append({"features": name, "photos": int(photo[keep].unique().numel()), "views": int(keep.sum()),
                         "train_psnr": round(psnr_of_mse(colour_map_mse(predict(fb[keep]), seen)), 2),
                         "heldout_psnr": round(psnr_of_mse(colour_map_mse(predict(fh), held_m)), 2)})
            print(rows[-1], flush=True)
    return rows


def _scores(outputs: torch.Tensor, held) -> dict:
    from crd_edge.imaging import tensor_to_uint8
    from crd_edge.training.heldout import score_heldout

    s = score_heldout(tensor_to_uint8(outputs.float()), held, ssim=False)
    return {k: round(v, 4) for k, v in s["student"].items() if k != "kid_std"}


def run(config: str | None, out: Path, overrides: list[str]) -> dict:
    from crd_edge.config import load_config
    from crd_edge.imaging import tensor_from_uint8
    from crd_edge.runtime.teachers import load_teacher
    from crd_edge.training.heldout import save_grid
    from crd_edge.training.views_run import ViewTraining

    cfg = load_config(config, overrides)
    teacher = load_teacher(cfg.teacher.source, cfg.teacher.arch, cfg.teacher.kwargs)
    views = ViewTraining.build(cfg, teacher, torch.device("cpu"))
    held = views.heldout
    if held is None or len(held) < 2:
        raise UserError("the anatomy scores held-out crops: the config's photos have no held-out split "
                        "(a --data folder needs testA/ or enough photos for the held-out rule)")
    views.bank.fill()
    hx, hy = tensor_from_uint8(held.inputs).double(), tensor_from_uint8(held.targets).double()
    bx, by = views.bank.first(len(views.bank))
    held_m, bank_m = colour_moments(hx, hy), colour_moments(bx, by)
    result: dict = {"heldout_crops": len(held), "bank_views": len(bx), "train_photos": len(views.photos.train),
                    "teacher": cfg.teacher.source, "oracles": {}}
    maps = fit_colour_maps(held_m)
    oracles = {"copy the input": hx, "per-crop affine colour map": apply_colour_maps(hx, maps),
               "per-tile affine colour maps (4x4 tiles)": tiled_colour_maps(hx, hy, 4),
               "per-crop affine colour map, blurred (sigma 0.7 px)": gaussian_blur(apply_colour_maps(hx, maps), 0.7),
               "teacher, blurred (sigma 0.7 px)": gaussian_blur(hy, 0.7),
               "teacher + Gaussian noise (std 0.03)":
                   hy + 0.03 * torch.randn(hy.shape, generator=torch.Generator().manual_seed(0), dtype=hy.dtype)}
    for name, images in oracles.items():
        result["oracles"][name] = _scores(images, held)
        print(name, result["oracles"][name], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    pick = np.linspace(0, len(hx) - 1, 8).round().astype(int)
    save_grid(out / "colour_oracle_grid.png", [hx[pick].float(), hy[pick].float(), oracles["per-crop affine colour map"][pick].float(),
                                               ((hy - oracles["per-crop affine colour map"]) * 4)[pick].float()])
    result["predictors"] = predictor_rows(views, teacher, bx, bank_m, hx, held_m)
    result["heldout_psnr"] = {"copy the input": round(psnr_of_mse(colour_map_mse(IDENTITY.expand(len(hx), 3, 4), held_m)), 2),
                              "per-crop affine colour map": round(psnr_of_mse(colour_map_mse(maps, held_m)), 2),
                              "one map for all crops (the bank's mean map)":
                                  round(psnr_of_mse(colour_map_mse(fit_colour_maps(bank_m).mean(0).expand(len(hx), 3, 4), held_m)), 2)}
    atomic_write_text(out / "anatomy.json", json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m research.anatomy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a run config or recipe (default: the main job's)")
    parser.add_argument("--out", type=Path, default=Path("runs/anatomy"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    random.seed(0)
    try:
        run(args.config, args.out, args.overrides)
    except UserError as exc:  # one line and exit 2, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
