"""``comparison.png`` of an export: one held-out photo through every artifact that runs here, a
row per target (input | torch fp32 | each precision), so that what int8 does to the picture is
seen, not only read off a PSNR column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crd_edge.artifacts import FORMATS

COMPARISON_NAME = "comparison.png"


def write_comparison(results: list, image: np.ndarray, reference: np.ndarray, path: Path) -> Path | None:
    """``image`` (1, 3, H, W) in [-1, 1] and the torch model's ``reference`` output on it;
    ``results`` the export's ExportResults. None when no artifact runs on this machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crd_edge._io import save_figure
    from crd_edge.imaging import to_uint8
    from crd_edge.runtime import open_session

    rows: dict[str, list[tuple[str, np.ndarray]]] = {}
    for result in results:
        fmt = FORMATS.get(result.target)
        if result.path is None or fmt is None or not fmt.session or fmt.not_local:
            continue
        output = open_session(result.path).run(image)
        rows.setdefault(result.target, []).append((f"{result.precision} ({result.status})", to_uint8(output)[0]))
    if not rows:
        return None
    columns = 2 + max(len(cells) for cells in rows.values())
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.4 * len(rows)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axes_row, (target, cells) in zip(axes, rows.items()):
        for axis, (title, picture) in zip(axes_row, [("input", to_uint8(image)[0]), ("torch fp32", to_uint8(reference)[0]),
                                                     *cells]):
            axis.imshow(picture)
            axis.set_title(title, fontsize=8)
        axes_row[0].text(-0.08, 0.5, target, transform=axes_row[0].transAxes, rotation=90, va="center",
                         ha="right", fontsize=10, weight="bold")
    fig.tight_layout()
    return save_figure(fig, path)
