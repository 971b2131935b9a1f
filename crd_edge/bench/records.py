"""Typed records of the bench layer: one measurement (a line of results.jsonl) and what the report
derives from them. Runners return plain JSON-ready dicts (a phone's benchmark_model and an ssh
host send JSON); :meth:`BenchRow.from_json` types them once, and every reader (the report, the
size table, the sweep, the CLI, the pipeline) works with attributes. What a runner reports beyond
the typed fields (load time, per-op profile, the tool's raw output) travels in ``details`` and is
written back unchanged, so a results file read and re-written loses nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crd_edge.models.family import Member

__all__ = ["MeasuredArtifact", "Latency", "ModelCounts", "Ceiling", "BenchRow", "Speedup", "BestSpeedup",
           "BenchReport"]


def _known(cls, data: dict) -> tuple[dict, dict]:
    """(the keys that are fields of ``cls``, the rest)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


def _with_other(cls, data: dict):
    """``cls`` from ``data``: its fields by name, every other key in its ``other`` (kept as it came)."""
    known, rest = _known(cls, data)
    known.pop("other", None)
    return cls(**known, other=rest)


@dataclass(frozen=True)
class MeasuredArtifact:
    """The file a row measured, and its export's verification."""

    name: str
    role: str = "student"
    precision: str = "fp32"
    path: str | None = None
    target: str | None = None
    bytes: int | None = None
    verification_psnr_db: float | None = None
    verification_status: str | None = None

    @property
    def id(self) -> str:
        """Its absolute path (the same file typed two ways is one artifact), or its name where
        the row has no path."""
        return os.path.abspath(self.path) if self.path else self.name

    @property
    def verified(self) -> bool:
        return self.verification_status == "passed"

    def unverified_note(self) -> str:
        """" [failed 29.2 dB]" or " [unverified]" for a plot label; "" for a verified artifact."""
        if self.verified:
            return ""
        if self.verification_status == "failed":
            psnr = self.verification_psnr_db
            return f" [failed{f' {psnr:.1f} dB' if psnr is not None else ''}]"
        # spec-verified: a Core ML spec, no numbers
        return f" [{self.verification_status}]" if self.verification_status else " [unverified]"


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call; a tool that reports no median (LiteRT's benchmark_model) has a mean."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    n: int | None = None
    other: dict = field(default_factory=dict)  # std, min, max...: whatever the tool adds

    def to_json(self) -> dict:
        return {**self.other, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "other"}}

    @property
    def typical(self) -> float:
        """The median; the mean where the tool reports no median."""
        return self.p50 if self.p50 is not None else self.mean


@dataclass(frozen=True)
class ModelCounts:
    """Params, MACs and activation memory of the measured model at its input size (one image)."""

    params: int | None = None
    macs_true: float | None = None
    macs_paper: float | None = None
    act_peak_bytes: int | None = None
    act_total_bytes: int | None = None
    counted_from: str | None = None  # "torch" (the source architecture) or "onnx" (the graph)


@dataclass(frozen=True)
class Ceiling:
    """A runtime's own GMAC/s in a precision other than fp32 (int8, bf16), same threads."""

    runtime: str
    precision: str
    gmacs_per_s: float
    other: dict = field(default_factory=dict)


@dataclass
class BenchRow:
    """One line of results.jsonl: a measurement, or an artifact skipped or failed on a device."""

    status: str  # measured | skipped | error
    artifact: MeasuredArtifact
    device_spec: str = "local"
    run_id: str | None = None
    time: str | None = None
    reason: str | None = None
    runtime: str | None = None
    threads: int | None = None
    device: dict = field(default_factory=dict)  # kind, hostname, processor; a phone's model and serial...
    latency: Latency | None = None
    input_size: tuple[int, int] | None = None
    model: ModelCounts = field(default_factory=ModelCounts)
    throughput_fps: float | None = None
    end_to_end_fps: float | None = None
    peak_mb: float | None = None
    ceiling: Ceiling | None = None
    ops: list = field(default_factory=list)  # per op type: op, ms, share, where
    ops_note: str | None = None
    member: Member | None = None  # the student family member a sweep measured
    details: dict = field(default_factory=dict)  # everything else the runner reported, kept as it came
    roofline_gmacs_per_s: float | None = None  # set by the report: the roofline of the row's run or device

    @classmethod
    def from_json(cls, data: dict) -> BenchRow:
        data = dict(data)
        artifact = MeasuredArtifact(**_known(MeasuredArtifact, data.pop("artifact", {}) or {"name": "?"})[0])
        latency = data.pop("latency_ms", None)
        model = data.pop("model", None) or {}
        ceiling = data.pop("ceiling", None)
        peak = data.pop("peak_rss_mb", None)
        peak = peak if peak is not None else data.get("peak_memory_mb")
        size = data.pop("input_size", None)
        member = data.pop("member", None)
        typed = {"latency", "model", "ceiling", "peak_mb", "input_size", "artifact", "details", "member"}
        simple = {f.name for f in fields(cls)} - typed
        row = cls(**{k: data.pop(k) for k in list(data) if k in simple}, artifact=artifact,
                  latency=_with_other(Latency, latency) if latency else None,
                  input_size=tuple(size) if size else None,
                  model=ModelCounts(**_known(ModelCounts, model)[0]),
                  ceiling=_with_other(Ceiling, ceiling) if ceiling else None, peak_mb=peak,
                  member=Member.from_dict(member) if member else None, details=data)
        return row

    def to_json(self) -> dict:
        """The results.jsonl line (the keys earlier versions wrote, so old and new files merge)."""
        out: dict[str, Any] = {**self.details, "status": self.status, "device_spec": self.device_spec,
                               "artifact": asdict(self.artifact)}
        for name in ("run_id", "time", "reason", "runtime", "threads", "throughput_fps", "end_to_end_fps",
                     "ops_note", "roofline_gmacs_per_s"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.device:
            out["device"] = self.device
        if self.member is not None:
            out["member"] = self.member.as_dict()
        if self.ops:
            out["ops"] = self.ops
        if self.latency is not None:
            out["latency_ms"] = self.latency.to_json()
        if self.input_size is not None:
            out["input_size"] = list(self.input_size)
        if self.status == "measured":
            out["model"] = {k: v for k, v in asdict(self.model).items() if v is not None}
        if self.ceiling is not None:
            out["ceiling"] = {**self.ceiling.other, "runtime": self.ceiling.runtime,
                              "precision": self.ceiling.precision, "gmacs_per_s": self.ceiling.gmacs_per_s}
        if self.peak_mb is not None and "peak_memory_mb" not in out:
            out["peak_rss_mb"] = self.peak_mb
        return out

    @property
    def matmul_gmacs_per_s(self) -> float | None:
        """The fp32 matmul roofline measured in this row's run (the first row of a run has it)."""
        return (self.details.get("matmul") or {}).get("gmacs_per_s")

    @property
    def measured(self) -> bool:
        return self.status == "measured"

    @property
    def typical_ms(self) -> float:
        return self.latency.typical

    @property
    def size_label(self) -> str:
        return "x".join(map(str, self.input_size or ()))

    @property
    def megapixels(self) -> float | None:
        return self.input_size[0] * self.input_size[1] / 1e6 if self.input_size and len(self.input_size) == 2 else None

    @property
    def device_name(self) -> str:
        d = self.device
        if d.get("kind") == "adb":
            return f"{d.get('model') or d.get('serial')} (adb)"
        if d.get("kind") == "ssh":
            return f"{d.get('host')} (ssh)"
        if d.get("kind") == "browser":  # the threads are in the runtime's name
            return f"{d.get('browser', 'browser')} on {d.get('hostname', 'local')}: {d.get('processor', '?')}"
        return f"{d.get('hostname', 'local')}: {d.get('processor', '?')}, {self.threads} threads"


@dataclass(frozen=True)
class Speedup:
    """Teacher against student in one device, runtime, precision and run."""

    device: str
    runtime: str
    precision: str
    student: str
    teacher_p50_ms: float
    student_p50_ms: float
    speedup: float
    mac_ratio: float | None


@dataclass(frozen=True)
class BestSpeedup:
    """Each model at its fastest verified precision, in one device, runtime family and run."""

    device: str
    runtime: str
    teacher: str
    teacher_precision: str
    student: str
    student_precision: str
    teacher_p50_ms: float
    student_p50_ms: float
    speedup: float


@dataclass(frozen=True)
class BenchReport:
    """What :func:`crd_edge.bench.results.write_report` wrote: report.md's tables (for the
    terminal), its path and the plots beside it."""

    markdown: str
    report: Path
    plots: list[Path]
