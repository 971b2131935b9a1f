"""Curves read from ``metrics.jsonl`` and drawn with matplotlib: the learning curve of a
view-based run (held-out figures and the training-set fit against steps) and every run's loss
terms."""

from __future__ import annotations

from pathlib import Path

from crd_edge._io import read_jsonl, save_figure
from crd_edge.config import StudentChoice

# Logged beside the loss terms, not losses themselves.
NOT_LOSSES = ("step", "epoch", "lr", "images_per_s", "grad_norm")

PANELS = (("heldout_kid", "held-out KID vs teacher (lower is better)", "heldout_kid_input"),
          ("heldout_vgg_dist", "held-out vgg_dist (lower is better)", "heldout_vgg_dist_input"),
          ("heldout_psnr", "held-out PSNR vs teacher, dB", "heldout_psnr_input"),
          ("train_l1", "L1 to the teacher on 128 training views", "train_l1_copy"))


def curve_points(metrics: Path) -> list[dict]:
    """The rows of ``metrics.jsonl`` that hold curve points (written every train.eval_every steps)."""
    if not metrics.is_file():
        return []
    return [r for r in read_jsonl(metrics) if "train_l1" in r]


def plot_losses(metrics: Path, out: Path, title: str = "") -> Path | None:
    """``loss_curve.png``: the total loss and each weighted term (log scale) against steps, from
    the rows logged every ``train.log_every`` steps. None when nothing was logged."""
    rows = [r for r in read_jsonl(metrics) if "loss" in r] if metrics.is_file() else []
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = sorted({k for r in rows for k in r if k not in NOT_LOSSES and isinstance(r[k], (int, float))})
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for key in terms:
        points = [(r["step"], r[key]) for r in rows if r.get(key, 0) > 0]
        if points:
            ax.plot(*zip(*points), label=key, linewidth=2.0 if key == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title or "training losses (weighted)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)


def plot_curve(metrics: Path, out: Path, title: str = "") -> Path | None:
    """``learning_curve.png`` beside the metrics: one panel per figure that was logged, each with
    the copy-the-input level as a dashed line. None when the run logged no curve points."""
    points = curve_points(metrics)
    panels = [p for p in PANELS if any(p[0] in r for r in points)]
    if not points or not panels:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (key, label, baseline) in zip(axes[0], panels):
        rows = [r for r in points if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker="o", color="#08519c", label="student")
        base = [r[baseline] for r in rows if baseline in r]
        if base:
            ax.axhline(base[-1], color="#999999", linestyle="--", label="copy the input")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)


def plot_latency_choice(choice: StudentChoice, out: Path) -> Path:
    """``latency_choice.png``: the family's measured latency against true MACs, the budget line
    and the chosen member (``distill --latency-budget``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((c.true_gmacs, c.ms, c.name) for c in choice.candidates)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o", color="0.5", label="family member")
    ax.axhline(choice.budget_ms, color="tab:red", linestyle="--", label=f"budget {choice.budget_ms:g} ms")
    chosen = choice.chosen
    ax.plot([chosen.true_gmacs], [chosen.ms], "o", color="tab:green", markersize=10, label=f"chosen: {chosen.name}")
    ax.set_xlabel("true GMACs per image")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"{choice.runtime} {choice.precision} on {choice.device}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
