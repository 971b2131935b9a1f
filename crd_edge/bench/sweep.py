"""``crd-edge sweep``: measured latency of the student family on one device, to choose a student
by latency instead of by MACs (a 16-channel network cannot fill a matrix engine, so MACs and
latency part ways in the precisions that use one).

Each member gets random weights (latency does not depend on them), is exported to each target
and precision with the usual verification, and benchmarked one process per artifact, as
``crd-edge bench`` does. Every measurement is appended to ``OUT/sweep.jsonl`` with the member
beside it; a member already measured there on that device (locally: this CPU, same threads),
target and precision is not measured again, so a sweep can be widened or resumed. ``OUT/sweep.md`` and ``OUT/sweep.png`` (latency
against true MACs, one line per runtime and precision) are rendered from the whole file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

from crd_edge._io import append_jsonl, atomic_write_text, read_jsonl, save_figure
from crd_edge.bench.records import BenchRow
from crd_edge.bench.results import runtime_family
from crd_edge.bench.run import RunnerOptions, bench
from crd_edge.config import Candidate, StudentChoice
from crd_edge.errors import UserError
from crd_edge.models.family import FAMILY_BASE, Member

__all__ = ["SweepResult", "choose_student", "parse_budget", "run_sweep", "render_sweep", "student_for_budget"]


@dataclass(frozen=True)
class SweepResult:
    rows: list[BenchRow]  # this device's measurements, each with its member
    table: Path           # sweep.md
    plot: Path | None     # sweep.png


def _key(row: BenchRow) -> tuple:
    a = row.artifact
    return row.member.name, row.device_spec, a.target, a.precision, row.input_size or ()


def _read(table: Path) -> list[BenchRow]:
    """sweep.jsonl: bench's rows, each with the member it measured."""
    return [BenchRow.from_json(line) for line in read_jsonl(table)]


def _on_device(rows: list[BenchRow], on: str, threads: int | None = None) -> list[BenchRow]:
    """The rows measured on ``on``. ``local`` also means this machine, by its CPU (and the threads,
    when given): a table copied from another computer or measured with other threads is not
    this machine's latency; so does ``browser`` (Chromium here). ``adb:``/``ssh:`` specs name their device."""
    rows = [r for r in rows if r.device_spec == on]
    if on != "local" and on.split(":")[0] != "browser":  # the browser runner runs Chromium on this machine
        return rows
    from crd_edge.bench.harness import machine
    cpu = machine()["processor"]
    # only a measurement has a machine; a skipped or failed artifact stays done wherever it was tried
    return [r for r in rows if not r.measured or (
        r.device.get("processor") == cpu and (threads is None or r.threads == threads))]


def _checkpoint(member: Member, folder: Path, size: int) -> Path:
    import torch

    from crd_edge._io import atomic_torch_save
    from crd_edge.checkpoint import FORMAT_VERSION, student_record
    from crd_edge.models import create_model

    path = folder / "checkpoint.pt"
    if not path.is_file():
        torch.manual_seed(0)
        model = create_model(FAMILY_BASE, **member.kwargs())
        folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"format_version": FORMAT_VERSION, "student": student_record(model, size)}, path)
    return path


def run_sweep(members: list[Member], targets: list[str], precisions: list[str], *, size: int = 256,
              on: str = "local", out: str | Path = "runs/sweep", threads: int | None = None, runs: int = 30,
              max_seconds: float = 5.0, log: Callable[[str], None] = print, progress=None) -> SweepResult:
    """Export and measure each member (skipping what ``OUT/sweep.jsonl`` already holds); returns
    the rows of this device and the paths of the table and plot."""
    from crd_edge._progress import optional_bar
    from crd_edge.export import plan
    from crd_edge.export.run import export

    out = Path(out)
    results = out / "sweep.jsonl"
    pairs = plan(targets, precisions or None)  # checks the targets and precisions before any work
    local_threads = (threads or os.cpu_count() or 1) if on == "local" else threads  # as bench resolves it
    done = {_key(r) for r in _on_device(_read(results), on, local_threads)} if results.is_file() else set()
    wanted = {(m, t, p) for m in members for t, p in pairs}
    missing = sorted({m for m, t, p in wanted if (m.name, on, t, p, (size, size)) not in done})
    log(f"sweep: {len(members)} members, {len(members) - len(missing)} already measured on {on}")
    bar = optional_bar(progress, len(missing), "sweep")
    with bar as advance:
        for member in missing:
            folder = out / "members" / member.name
            checkpoint = _checkpoint(member, folder, size)
            new = []  # only the artifacts not measured yet (a widened sweep keeps the earlier rows)
            for result in export(checkpoint, targets, precisions or None, size=size, out_dir=folder / "export"):
                if not result.ok:  # measured anyway where the artifact exists; the log says why it failed
                    log(f"{member.name}: {result.label}: {result.status} {result.reason or ''}".rstrip())
                if result.path and (member.name, on, result.target, result.precision, (size, size)) not in done:
                    new.append(str(result.path))
            measured = bench(new, devices=[on], threads=threads, runs=runs, max_seconds=max_seconds,
                             out_dir=folder / "bench", roofline=False, options=RunnerOptions(op_profile=False))
            for row in measured if new else []:
                row.member = member
                append_jsonl(results, row.to_json())
            advance(note=member.name)
    rows = [r for r in _on_device(_read(results), on, local_threads) if r.measured]
    table, plot = render_sweep(rows, out)
    return SweepResult(rows, table, plot)


def render_sweep(rows: list[BenchRow], out: Path) -> tuple[Path, Path | None]:
    """``sweep.md`` (one row per member, one latency column per runtime and precision) and
    ``sweep.png`` (latency against true MACs, one line per runtime and precision)."""
    columns = sorted({(r.runtime, r.artifact.precision) for r in rows})
    members: dict[str, dict] = {}
    for r in rows:
        entry = members.setdefault(r.member.name, {"member": r.member, "model": r.model, "ms": {}})
        entry["ms"][(r.runtime, r.artifact.precision)] = r.typical_ms
    ordered = sorted(members.values(), key=lambda e: e["model"].macs_true or 0)
    lines = ["# Student family: measured latency", "",
             "| member | width | mid | blocks | block | true GMACs | params | act. MB | "
             + " | ".join(f"{rt} {p} ms" for rt, p in columns) + " |",
             "|---|---:|---:|---:|---|---:|---:|---:|" + "---:|" * len(columns)]
    for e in ordered:
        m, counts = e["member"], e["model"]
        cells = [f"{e['ms'][c]:.2f}" if c in e["ms"] else "-" for c in columns]
        lines.append(f"| {m.name} | {m.width} | {m.middle} | {m.blocks} | {m.block} | "
                     f"{(counts.macs_true or 0) / 1e9:.3f} | {counts.params or 0:,} | "
                     f"{(counts.act_peak_bytes or 0) / 1e6:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Random weights (latency does not depend on them); p50 of the timed calls, one process per "
              "artifact; true GMACs at the measured size.", ""]
    out.mkdir(parents=True, exist_ok=True)
    table = out / "sweep.md"
    atomic_write_text(table, "\n".join(lines))
    return table, _plot(ordered, columns, out / "sweep.png") if ordered else None


def _plot(entries: list[dict], columns: list[tuple[str, str]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    # One line per runtime and precision (colour) and design: block type (marker), ends (line
    # style), wide middle or not (hollow markers).
    lines = defaultdict(list)
    for e in entries:
        m = e["member"]
        design = (m.block, m.ends, m.wide)
        for column, ms in e["ms"].items():
            lines[(*column, *design)].append(((e["model"].macs_true or 0) / 1e9, ms))
    colours = {column: f"C{i}" for i, column in enumerate(columns)}
    for (runtime, precision, block, ends, wide), points in sorted(lines.items()):
        xs, ys = zip(*sorted(points))
        label = f"{runtime} {precision}, {block} blocks" + (", shuffle ends" if ends == "shuffle" else "")
        ax.plot(xs, ys, marker="o" if block == "dw" else "s", linestyle=":" if ends == "shuffle" else
                "-" if block == "dw" else "--", color=colours[(runtime, precision)],
                markerfacecolor="none" if wide else colours[(runtime, precision)],
                label=label + (", wide middle" if wide else ""))
    ax.set_xlabel("true GMACs per image")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title("Student family: latency against MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the points, not over them
    fig.tight_layout()
    return save_figure(fig, path)


def parse_budget(text: str) -> float:
    """``5ms``, ``5 ms`` or ``5`` -> 5.0 (milliseconds)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--latency-budget {text}: expected milliseconds, e.g. 5ms")
    return float(match.group(1))


def _only(values: set[str], option: str, table: Path) -> str:
    if len(values) != 1:
        raise UserError(f"{option}: {table} holds several ({', '.join(sorted(values))}): name one")
    return next(iter(values))


def choose_student(table: str | Path, budget_ms: float, *, runtime: str | None = None, precision: str | None = None,
                   on: str = "local") -> StudentChoice:
    """The member with the most true MACs whose measured p50 in ``runtime`` ``precision`` on
    ``on`` is within the budget (MACs stand for capacity; latency decides), the runner-up and
    every candidate, from a sweep's ``sweep.jsonl``."""
    table = Path(table)
    if table.is_dir():
        table = table / "sweep.jsonl"
    if not table.is_file():
        raise UserError(f"--latency-table {table}: no such file; measure one with `crd-edge sweep --on {on}`")
    rows = [r for r in _on_device(_read(table), on) if r.measured]
    if not rows:
        here = " (this machine)" if on == "local" else ""
        raise UserError(f"--latency-table {table}: nothing measured on {on}{here}; run `crd-edge sweep --on {on}`")
    runtime = runtime or _only({runtime_family(r.runtime) for r in rows}, "--latency-runtime", table)
    rows = [r for r in rows if runtime_family(r.runtime) == runtime]
    if not rows:
        raise UserError(f"--latency-runtime {runtime}: not in {table}")
    precision = precision or _only({r.artifact.precision for r in rows}, "--latency-precision", table)
    rows = [r for r in rows if r.artifact.precision == precision]
    if not rows:
        raise UserError(f"--latency-precision {precision}: {table} has no {runtime} {precision} measurement")
    latest = {r.member.name: r for r in rows}  # the last measurement of each member
    candidates = sorted((Candidate(name, r.member, r.typical_ms, (r.model.macs_true or 0) / 1e9)
                         for name, r in latest.items()), key=lambda c: (c.true_gmacs, -c.ms))
    within = [c for c in candidates if c.ms <= budget_ms]
    if not within:
        fastest = min(candidates, key=lambda c: c.ms)
        raise UserError(f"--latency-budget {budget_ms:g}ms: no member of {table} is that fast in {runtime} "
                        f"{precision} on {on} (the fastest, {fastest.name}, takes {fastest.ms:.2f} ms)")
    return StudentChoice(budget_ms, runtime, precision, on, str(table), chosen=within[-1],
                         runner_up=within[-2] if len(within) > 1 else None, candidates=tuple(candidates))


def student_for_budget(table: str | Path, budget: str, *, runtime: str | None = None, precision: str | None = None,
                       on: str = "local") -> tuple[StudentChoice, dict]:
    """``distill --latency-budget``: the choice for a budget as typed (``5ms``, see
    :func:`choose_student`) and the config keys that make the chosen member the run's student,
    the choice kept with them so the run's report can say why this student."""
    choice = choose_student(table, parse_budget(budget), runtime=runtime, precision=precision, on=on)
    return choice, {"student.arch": FAMILY_BASE, "student.kwargs": choice.chosen.member.kwargs(),
                    "student.selection": choice.as_dict()}
