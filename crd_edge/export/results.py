"""What one (target, precision) of an export came to, and the verification table of several."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExportResult:
    """A written artifact (``record`` is its manifest record, ``status`` its verification:
    "passed" or "failed") or one that was not written ("skipped": its backend is missing;
    "error": its conversion failed; ``reason`` says why)."""

    target: str
    precision: str
    status: str
    reason: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    @classmethod
    def written(cls, record: dict[str, Any], out_dir: Path) -> "ExportResult":
        return cls(record["target"], record["precision"], record["verification"]["status"], record=record,
                   out_dir=out_dir)

    @property
    def path(self) -> Path | None:
        return self.out_dir / self.record["path"] if self.record else None

    @property
    def label(self) -> str:
        """The artifact's file name, or "target precision" when nothing was written."""
        return self.record["path"] if self.record else f"{self.target} {self.precision}"

    @property
    def ok(self) -> bool:
        """Not failed: passed, skipped, or checked as far as this machine can (Core ML's spec)."""
        return self.status not in ("failed", "error")

    def to_dict(self) -> dict[str, Any]:
        """The manifest record, or {target, precision, status, reason} (``--json``)."""
        return self.record or {"target": self.target, "precision": self.precision, "status": self.status,
                               "reason": self.reason}


def render_results(results: list[ExportResult]) -> str:
    """The verification table: one row per artifact (Markdown, readable in a terminal)."""
    rows = ["| artifact | target | precision | size MB | export s | runtime | PSNR min dB | max abs err | status |",
            "|---|---|---|---:|---:|---|---:|---:|---|"]
    for result in results:
        r = result.record
        if not r:
            rows.append(f"| - | {result.target} | {result.precision} | | | | | | {result.status}: {result.reason} |")
            continue
        v = r["verification"]
        psnr = f"{v['psnr_db_min']:.1f} (>= {v['threshold_db']:.0f})" if "psnr_db_min" in v else "n/a"
        err = f"{v['max_abs_err']:.1e}" if "max_abs_err" in v else "n/a"
        note = f" ({v['numerics']})" if "numerics" in v else ""
        note += float_layers_note(r)
        rows.append(f"| {r['path']} | {r['target']} | {r['precision']} | {r['bytes'] / 1e6:.2f} | "
                    f"{r['export_seconds']:.1f} | {v['runtime']} | {psnr} | {err} | {v['status']}{note} |")
    return "\n".join(rows)


def accuracy_search(record: dict[str, Any]) -> dict[str, Any] | None:
    """The int8 accuracy search's record (crd_edge.export.int8_search), if the export ran one."""
    conversion = record.get("conversion", {})
    return conversion.get("accuracy_search") or conversion.get("quantization", {}).get("accuracy_search")


def float_layers_note(record: dict[str, Any]) -> str:
    """" (the norm inputs + 3 convs in float, 12% of MACs)" for an int8 artifact that keeps
    some of its graph in float."""
    found = accuracy_search(record)
    if not found or not (found["float_ops"] or found["float_layers"]):
        return ""
    convs = len(found["float_layers"])
    parts = [*found["float_ops"], *([f"{convs} conv{'s' if convs != 1 else ''}"] if convs else [])]
    return f" ({' + '.join(parts)} in float, {100 * found['float_mac_share']:.0f}% of MACs)"
