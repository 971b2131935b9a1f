"""Cost against pixels: the same model measured at several input sizes (``crd-edge export
--size 256,480x640,720x1280`` writes one artifact per size; bench measures each). Camera effects
run at the camera's size, so the question is what each megapixel costs, per runtime and
precision, and which sizes keep a frame rate."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _megapixels(r: dict) -> float | None:
    size = r.get("input_size") or []
    return size[0] * size[1] / 1e6 if len(size) == 2 else None


def by_pixels(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Measured rows grouped by (device, role, runtime, precision) where a group holds two or
    more input sizes, each group sorted by pixels."""
    from crd_edge.bench.results import device_name
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if _megapixels(r):
            groups[(device_name(r), r["artifact"]["role"], r.get("runtime") or "", r["artifact"]["precision"])].append(r)
    return {key: sorted(group, key=_megapixels) for key, group in sorted(groups.items())
            if len({tuple(r["input_size"]) for r in group}) > 1}


def render(rows: list[dict]) -> list[str]:
    """The report's "Cost against pixels" section (nothing when every model ran at one size)."""
    from crd_edge.bench.results import typical_ms
    groups = by_pixels(rows)
    if not groups:
        return []
    lines = ["## Cost against pixels (the same model at each exported size)", "",
             "| device | model | runtime | precision | size (HxW) | megapixels: | p50 ms: | ms per megapixel: | FPS: |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for (device, role, runtime, precision), group in groups.items():
        for r in group:
            mp, ms = _megapixels(r), typical_ms(r)
            lines.append(f"| {device} | {role} | {runtime} | {precision} | {'x'.join(map(str, r['input_size']))} | "
                         f"{mp:.3f} | {ms:.1f} | {ms / mp:.1f} | {1000 / ms:.1f} |")
    lines += ["", "A fully convolutional generator's work grows with the pixels: a flat ms-per-megapixel "
              "column means the runtime keeps its efficiency at camera sizes; a rising one, that the "
              "larger activations leave the caches.", ""]
    return lines


def plot(rows: list[dict], out_dir: Path):
    """latency_vs_pixels.png: p50 against megapixels, a line per device, model, runtime and
    precision; None when every model ran at one size."""
    from crd_edge.bench.results import _save, typical_ms
    groups = by_pixels(rows)
    if not groups:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (device, role, runtime, precision), group in groups.items():
        xs, ys = [_megapixels(r) for r in group], [typical_ms(r) for r in group]
        ax.plot(xs, ys, marker="o", label=f"{role} {runtime} {precision}" + (f" ({device})" if len(
            {k[0] for k in groups}) > 1 else ""))
        for r, x, y in zip(group, xs, ys):
            ax.annotate("x".join(map(str, r["input_size"])), (x, y), fontsize=7, xytext=(3, 3),
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
