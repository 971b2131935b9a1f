"""A rich progress bar for training: step, losses, images/s and ETA (off for --quiet and ranks > 0)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN = ("loss", "crd_rows", "crd_columns", "crd_patches", "style", "feature", "gan", "pixel_l1")


class TrainProgress:
    def __init__(self, total: int, start: int, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        self.bar = Progress(TextColumn("[bold]distill"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[ips]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), transient=False)
        self.bar.start()
        self.task = self.bar.add_task("distill", total=total, completed=start, ips="", losses="")

    def update(self, step: int, metrics: dict | None = None) -> None:
        if not self.enabled:
            return
        fields = {}
        if metrics:
            fields["ips"] = f"{metrics.get('images_per_s', 0):.2f} img/s"
            fields["losses"] = " ".join(f"{k}={metrics[k]:.3g}" for k in SHOWN if k in metrics)
        self.bar.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
