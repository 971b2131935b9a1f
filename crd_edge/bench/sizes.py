"""Cost against pixels: the same model measured at several input sizes (``crd-edge export
--size 256,480x640,720x1280`` writes one artifact per size; bench measures each). Camera effects
run at the camera's size, so the question is what each megapixel costs, per runtime and
precision, and which sizes keep a frame rate."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from crd_edge.bench.records import BenchRow


def by_pixels(rows: list[BenchRow]) -> dict[tuple, list[BenchRow]]:
    """Measured rows grouped by (device, role, runtime, precision) where a group holds two or
    more input sizes, each group sorted by pixels."""
    groups: dict[tuple, list[BenchRow]] = defaultdict(list)
    for r in rows:
        if r.megapixels:
            groups[(r.device_name, r.artifact.role, r.runtime or "", r.artifact.precision)].append(r)
    return {key: sorted(group, key=lambda r: r.megapixels) for key, group in sorted(groups.items())
            if len({r.input_size for r in group}) > 1}


def render(rows: list[BenchRow]) -> list[str]:
    """The report's "Cost against pixels" section (nothing when every model ran at one size)."""
    groups = by_pixels(rows)
    if not groups:
        return []
    lines = ["## Cost against pixels (the same model at each exported size)", "",
             "| device | model | runtime | precision | size (HxW) | megapixels: | p50 ms: | ms per megapixel: | FPS: |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for (device, role, runtime, precision), group in groups.items():
        for r in group:
            mp, ms = r.megapixels, r.typical_ms
            lines.append(f"| {device} | {role} | {runtime} | {precision} | {r.size_label} | "
                         f"{mp:.3f} | {ms:.1f} | {ms / mp:.1f} | {1000 / ms:.1f} |")
    lines += ["", "A fully convolutional generator's work grows with the pixels: a flat ms-per-megapixel "
              "column means the runtime keeps its efficiency at camera sizes; a rising one, that the "
              "larger activations leave the caches.", ""]
    return lines


def plot(rows: list[BenchRow], out_dir: Path):
    """latency_vs_pixels.png: p50 against megapixels, a line per device, model, runtime and
    precision; None when every model ran at one size."""
    from crd_edge.bench.results import _save
    groups = by_pixels(rows)
    if not groups:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (device, role, runtime, precision), group in groups.items():
        xs, ys = [r.megapixels for r in group], [r.typical_ms for r in group]
        ax.plot(xs, ys, marker="o", label=f"{role} {runtime} {precision}" + (f" ({device})" if len(
            {k[0] for k in groups}) > 1 else ""))
        for r, x, y in zip(group, xs, ys):
            ax.annotate(r.size_label, (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    for fps in (30, 60):  # what a camera effect has to keep up with
        ax.axhline(1000 / fps, color="grey", ls=":", lw=1)
        ax.annotate(f"{fps} FPS", (ax.get_xlim()[0], 1000 / fps), fontsize=7, va="bottom", color="grey")
    ax.set_xlabel("input megapixels per frame")
    ax.set_ylabel("latency per frame, p50 (ms)")
    ax.set_title("Latency against frame size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir / "latency_vs_pixels.png")
