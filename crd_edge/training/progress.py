"""A rich progress bar for training: step, losses, images/s and ETA (off for --quiet and ranks > 0)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN = ("loss", "crd_rows", "crd_columns", "crd_patches", "style", "feature", "gan", "pixel_l1")


BAR_WIDTH = 12
# Columns before the losses at most: "distill", the bar, "1500/1500", "24.41 img/s", "0:12:34",
# "ETA", "0:01:02" and the spaces between them. Losses get what the terminal has left, so on an
# 80-column terminal the step count and the ETA are never squeezed out.
FIXED_WIDTH = 7 + BAR_WIDTH + 9 + 11 + 7 + 3 + 7 + 8


def fit_losses(metrics: dict, width: int) -> str:
    """The losses in :data:`SHOWN` order (the total first), as many as fit in ``width``."""
    shown = ""
    for key in (k for k in SHOWN if k in metrics):
        item = f"{key}={metrics[key]:.3g}"
        if len(shown) + len(item) + 1 > width:
            break
        shown = f"{shown} {item}" if shown else item
    return shown


class TrainProgress:
    def __init__(self, total: int, start: int, enabled: bool = True, console=None) -> None:
        self.enabled = enabled
        if not enabled:
            return
        self.bar = Progress(TextColumn("[bold]distill"), BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(),
                            TextColumn("{task.fields[ips]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), transient=False,
                            console=console)
        self.bar.start()
        self.task = self.bar.add_task("distill", total=total, completed=start, ips="", losses="")

    def update(self, step: int, metrics: dict | None = None) -> None:
        if not self.enabled:
            return
        fields = {}
        if metrics:
            fields["ips"] = f"{metrics.get('images_per_s', 0):.2f} img/s"
            fields["losses"] = fit_losses(metrics, self.bar.console.width - FIXED_WIDTH)
        self.bar.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
