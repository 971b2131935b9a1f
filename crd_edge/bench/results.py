"""results.jsonl (every measurement, appended) and the reports rendered from it: report.json,
report.md and PNG plots. A report can merge several runs, devices and results files."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from dataclasses import asdict

from crd_edge._io import append_jsonl, atomic_write_text, read_jsonl, write_json
from crd_edge.bench.records import BenchReport, BenchRow, BestSpeedup, Speedup
from crd_edge.errors import UserError


def append_result(path: Path, result: BenchRow) -> None:
    """One line per measurement: a crash mid-run loses nothing before it, and a full disk
    leaves no torn line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, result.to_json())


def load_results(paths: list[Path]) -> list[BenchRow]:
    results = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no results file; `crd-edge bench` writes results.jsonl")
        results += [BenchRow.from_json(line) for line in read_jsonl(path)]
    return results


def latest(results: list[BenchRow]) -> list[BenchRow]:
    """The newest measurement per (device, artifact, runtime, threads, input size): re-runs
    replace older rows; an artifact with dynamic height and width keeps a row per size timed."""
    rows: dict[tuple, BenchRow] = {}
    for r in results:
        if r.measured:
            rows[(r.device_name, r.artifact.id, r.runtime, r.threads, r.input_size)] = r
    return list(rows.values())


def artifact_label(r: BenchRow, rows: list[BenchRow]) -> str:
    """The artifact's file name, or folder/name where two measured artifacts share a name (two
    students benchmarked side by side, each exported as student_fp32.openvino)."""
    a = r.artifact
    paths = {x.artifact.id for x in rows if x.artifact.name == a.name}
    if len(paths) > 1 and a.path:
        # the part of the path that tells them apart: runs/a/export/x, runs/b/export/x -> a/export/x
        return os.path.relpath(a.id, os.path.commonpath(list(paths)))
    return a.name


def ceiling_of(r: BenchRow) -> float | None:
    """GMAC/s this row is measured against: the runtime's own ceiling in the precision the
    artifact computes in where that is not fp32 (int8; OpenVINO's fp16 files), else the fp32
    matmul roofline of its run. None where the precision needs its own and none was measured:
    no share is better than one against the wrong ceiling."""
    from crd_edge.bench.ceilings import needs_own_ceiling
    if r.ceiling is not None:
        return r.ceiling.gmacs_per_s
    if needs_own_ceiling(r.runtime or "", r.artifact.precision):
        return None
    return r.roofline_gmacs_per_s


def efficiency(r: BenchRow) -> float | None:
    """True MACs per second as a fraction of the row's ceiling (:func:`ceiling_of`)."""
    macs, ceiling = r.model.macs_true, ceiling_of(r)
    if not macs or not ceiling:
        return None
    return macs / (r.typical_ms / 1e3) / (ceiling * 1e9)


def _attach_roofline(rows: list[BenchRow], results: list[BenchRow]) -> None:
    """Each row gets the matmul ceiling of its own run and device (else the device's latest)."""
    by_run, by_device = {}, {}
    for r in results:
        if r.matmul_gmacs_per_s:
            by_run[(r.run_id, r.device_name)] = by_device[r.device_name] = r.matmul_gmacs_per_s
    for r in rows:
        r.roofline_gmacs_per_s = by_run.get((r.run_id, r.device_name), by_device.get(r.device_name))


def speedups(rows: list[BenchRow]) -> list[Speedup]:
    """Teacher p50 / student p50 per device, runtime, precision and input size, pairing only a
    teacher and a student measured in the same run (a merged report holds several runs)."""
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r.device_name, r.runtime or "", r.artifact.precision, r.size_label, r.run_id or "")
        groups[key][r.artifact.role].append(r)
    out = []
    for (device, runtime, precision, _, _), roles in sorted(groups.items()):
        for t in roles["teacher"][:1]:
            for s in roles["student"]:  # several students against one teacher: a row each
                tm, sm = t.model.macs_true, s.model.macs_true
                out.append(Speedup(device, runtime, precision, artifact_label(s, rows), t.typical_ms, s.typical_ms,
                                   t.typical_ms / s.typical_ms, tm / sm if tm and sm else None))
    return out


def runtime_family(runtime: str) -> str:
    """"openvino (bf16)" -> "openvino": the precision a runtime computes in is a choice within it."""
    return runtime.split(" (")[0]


def best_speedups(rows: list[BenchRow]) -> list[BestSpeedup]:
    """Per device and runtime, the teacher's fastest verified artifact against the student's:
    the comparison a user ships, where each model runs in the quickest precision that still
    matches its torch original (an int8 student that fails verification does not count, nor
    does a teacher whose int8 export fails). Same-run pairs only, as in :func:`speedups`."""
    best: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        a = r.artifact
        if not a.verified:
            continue
        # one teacher per group; one student per folder (several students benchmarked together)
        who = "teacher" if a.role == "teacher" else str(Path(a.path or "").parent)
        group = best[(r.device_name, runtime_family(r.runtime or ""), r.size_label, r.run_id or "")]
        if who not in group or r.typical_ms < group[who].typical_ms:
            group[who] = r
    out = []
    for (device, runtime, _, _), fastest in sorted(best.items()):
        t = fastest.pop("teacher", None)
        for s in fastest.values() if t else []:
            out.append(BestSpeedup(device, runtime, t.artifact.name, t.artifact.precision, artifact_label(s, rows),
                                   s.artifact.precision, t.typical_ms, s.typical_ms, t.typical_ms / s.typical_ms))
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines; a header ending in ":" is a right-aligned (number) column."""
    names = [h.removesuffix(":") for h in header]
    rule = ["---:" if h.endswith(":") else "---" for h in header]
    return [f"| {' | '.join(names)} |", f"|{'|'.join(rule)}|", *(f"| {' | '.join(r)} |" for r in rows)]


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _op_profile_section(rows: list[BenchRow], top: int = 4) -> list[str]:
    """Where each artifact's time goes, by op type, from the runtime's own profiler; and what
    ran off the fast path: onnxruntime ops on the CPU provider while the session's first choice
    is an accelerator, OpenVINO ops on a reference (ref_*) kernel."""
    profiled = [r for r in rows if r.ops or r.ops_note]
    if not profiled:
        return []
    lines = ["## Where the time goes (per op type)", "",
             "| device | artifact | runtime | slowest op types: ms per inference (share) | off the fast path |",
             "|---|---|---|---|---|"]
    for r in profiled:
        ops, runtime = r.ops, r.runtime or ""
        slowest = ", ".join(f"{o['op']} {o['ms']:.2f} ({o['share']:.0%})" for o in ops[:top]) or r.ops_note or "-"
        accelerated = "(" in runtime and runtime.startswith("onnxruntime")
        slow = sorted({o["op"] for o in ops if o["where"].startswith("ref")
                       or (accelerated and o["where"] == "CPU")})
        lines.append(f"| {r.device_name} | {artifact_label(r, rows)} | {r.runtime} | {slowest} | "
                     f"{', '.join(slow) or '-'} |")
    lines += ["", "From onnxruntime's profiler and OpenVINO's performance counters, in a second session after "
              "the timing (10 inferences after one warm-up); results.jsonl holds every op type with its "
              "kernel or execution provider.", ""]
    return lines


def render_markdown(rows: list[BenchRow], skipped: list[BenchRow]) -> str:
    lines = ["# crd-edge benchmark report", ""]
    by_device: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        by_device[r.device_name].append(r)
    for device, group in by_device.items():
        lines += _device_section(device, group, rows)
    lines += _speedup_section(rows)
    lines += _best_speedup_section(rows)
    from crd_edge.bench import sizes
    lines += sizes.render(rows)
    lines += _op_profile_section(rows)
    lines += _skipped_section(skipped)
    lines += [_LEGEND, ""]
    return "\n".join(lines)


_LEGEND = ("Latency: wall-clock per call after warm-up (median p50, p90), model only; end-to-end FPS adds the "
           "camera-frame pre- and post-processing measured in the same process. PSNR: the export's "
           "verification against torch fp32 on held-out photos. act. MB: peak activation memory of one "
           "image (tensors between layers alive at once; weights, input and runtime workspace excluded), "
           "counted on the fp32 torch model, or from the ONNX graph for a file without a source model; "
           "peak MB: the process's measured peak resident memory. % of ceiling: true MACs per second "
           "against the ceiling of the precision the artifact computes in (fp32: the matmul roofline; int8 "
           "and OpenVINO's fp16: the runtime's own on a dense convolution; '-' where none was measured).")


def _device_section(device: str, group: list[BenchRow], rows: list[BenchRow]) -> list[str]:
    """One device's ceilings and its table of measurements; ``rows`` (every device's) decides
    how an artifact is labelled."""
    lines = [f"## {device}", ""] + _ceiling_lines(group)
    lines += ["| model | artifact | runtime | precision | size | params | true GMACs | act. MB | p50 ms | p90 ms | FPS | "
              "end-to-end FPS | peak MB | PSNR dB | % of ceiling |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(group, key=lambda r: (r.artifact.role, r.runtime or "", r.artifact.precision)):
        lines.append(_measurement_line(r, rows))
    lines.append("")
    return lines


def _ceiling_lines(group: list[BenchRow]) -> list[str]:
    """What the device's rows are measured against: the fp32 matmul roofline of the run and any
    runtime's own ceiling in another precision."""
    lines = []
    ceiling = group[0].roofline_gmacs_per_s
    if ceiling:
        lines += [f"Roofline: dense fp32 matmul {ceiling:.1f} GMAC/s with the same threads, in the same run.", ""]
    own = {(r.ceiling.runtime, r.ceiling.precision): r.ceiling.gmacs_per_s for r in group if r.ceiling}
    if own:
        lines += ["Ceilings in other precisions (each runtime on a dense 1x1 convolution, same threads): "
                  + ", ".join(f"{rt} {p} {g:.1f} GMAC/s" for (rt, p), g in sorted(own.items())) + ".", ""]
    return lines


def _measurement_line(r: BenchRow, rows: list[BenchRow]) -> str:
    a, m, lat = r.artifact, r.model, r.latency
    eff = efficiency(r)
    psnr, status = a.verification_psnr_db, a.verification_status
    psnr_text = ("-" if psnr is None else f"{psnr:.1f}") + ("" if status in (None, "passed") else f" ({status})")
    return (f"| {a.role} | {artifact_label(r, rows)} | {r.runtime} | {a.precision} | {r.size_label or '-'} | "
            f"{_fmt(m.params, ',')} | {_fmt(m.macs_true and m.macs_true / 1e9, '.3f')} | "
            f"{_fmt(m.act_peak_bytes and m.act_peak_bytes / 1e6, '.1f')} | "
            f"{r.typical_ms:.1f}{'' if lat.p50 is not None else ' (mean)'} | {_fmt(lat.p90, '.1f')} | "
            f"{_fmt(r.throughput_fps, '.1f')} | {_fmt(r.end_to_end_fps, '.1f')} | {_fmt(r.peak_mb, '.0f')} | "
            f"{psnr_text} | {_fmt(eff and eff * 100, '.0f')} |")


def _speedup_section(rows: list[BenchRow]) -> list[str]:
    table = speedups(rows)
    if not table:
        return []
    lines = ["## Student speed-up over the teacher (same device, runtime and precision)", ""]
    lines += _table(["device", "runtime", "precision", "student", "teacher p50 ms:", "student p50 ms:",
                     "speed-up:", "true-MAC ratio:"],
                    [[s.device, s.runtime, s.precision, s.student, f"{s.teacher_p50_ms:.1f}",
                      f"{s.student_p50_ms:.1f}", f"{s.speedup:.1f}x", f"{_fmt(s.mac_ratio, '.1f')}x"]
                     for s in table])
    lines.append("")
    return lines


def _best_speedup_section(rows: list[BenchRow]) -> list[str]:
    best = best_speedups(rows)
    if not best:
        return []
    lines = ["## Student speed-up, each model at its fastest verified precision", ""]
    lines += _table(["device", "runtime", "teacher", "teacher p50 ms:", "student", "student p50 ms:", "speed-up:"],
                    [[b.device, b.runtime, b.teacher, f"{b.teacher_p50_ms:.1f}", b.student,
                      f"{b.student_p50_ms:.1f}", f"{b.speedup:.1f}x"] for b in best])
    lines += ["", "What a user ships: each model in the quickest precision whose export passed verification "
              "against its torch original (a failed int8 export is left out).", ""]
    return lines


def _skipped_section(skipped: list[BenchRow]) -> list[str]:
    if not skipped:
        return []
    lines = ["## Not measured", ""]
    lines += [f"- {s.artifact.name} on {s.device_spec}: {s.status}: {s.reason}" for s in skipped]
    lines.append("")
    return lines


def plot(rows: list[BenchRow], out_dir: Path) -> list[Path]:
    """latency_vs_macs.png (log-log, per device and runtime) and latency.png (p50 bars)."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    written = []
    points = [r for r in rows if r.model.macs_true]
    if points:
        written.append(_plot_latency_vs_macs(plt, points, out_dir))
    if rows:
        written.append(_plot_latency_bars(plt, rows, out_dir))
    from crd_edge.bench import sizes
    by_size = sizes.plot(rows, out_dir)
    return written + ([by_size] if by_size is not None else [])


_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int8-dynamic": "v", "int8-weight": "D"}


def _plot_latency_vs_macs(plt, points: list[BenchRow], out_dir: Path) -> Path:
    """latency_vs_macs.png. Colour: runtime; marker: precision; dashed line: the fastest any model
    could run at the device's dense fp32 matmul ceiling (the roofline)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    runtimes = sorted({r.runtime or "?" for r in points})
    colours = {rt: f"C{i}" for i, rt in enumerate(runtimes)}
    for r in points:  # an artifact that failed its verification, or has none, is drawn hollow
        colour = colours[r.runtime or "?"]
        ax.scatter(r.model.macs_true / 1e9, r.typical_ms, edgecolors=colour,
                   facecolors=colour if r.artifact.verified else "none",
                   marker=_MARKERS.get(r.artifact.precision, "x"), s=40, alpha=0.85)
    macs = [r.model.macs_true for r in points]
    _draw_rooflines(ax, points, macs)
    ax.legend(handles=_scatter_legend(plt, points, colours), fontsize=7, loc="upper left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true MACs per image (G), log scale")
    ax.set_ylabel("latency per image, p50 (ms), log scale")
    ax.set_title("Latency vs compute (left: student, right: teacher)" if len(set(macs)) > 1 else "Latency vs compute")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_dir / "latency_vs_macs.png")


def _draw_rooflines(ax, points: list[BenchRow], macs: list[float]) -> None:
    """One dashed line per device with a roofline, spanning the plotted MACs."""
    for device, ceiling in {r.device_name: r.roofline_gmacs_per_s for r in points}.items():
        if ceiling:
            xs = [min(macs) / 1.5, max(macs) * 1.5]
            ax.plot([x / 1e9 for x in xs], [x / (ceiling * 1e9) * 1e3 for x in xs], "k--", lw=1)
            ax.annotate(f"roofline {ceiling:.0f} GMAC/s", (xs[0] / 1e9, xs[0] / (ceiling * 1e9) * 1e3),
                        fontsize=7, va="bottom")


def _scatter_legend(plt, points: list[BenchRow], colours: dict[str, str]) -> list:
    """A handle per runtime, per precision plotted, and for hollow points where there are any."""
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=rt) for rt, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=m, ls="", label=p) for p, m in _MARKERS.items()
                if any(r.artifact.precision == p for r in points)]
    if not all(r.artifact.verified for r in points):
        handles.append(plt.Line2D([], [], color="grey", marker="o", mfc="none", ls="",
                                  label="failed or unverified"))
    return handles


def _plot_latency_bars(plt, rows: list[BenchRow], out_dir: Path) -> Path:
    """latency.png: a p50 bar with a p90 whisker per artifact, unverified ones hatched."""
    ordered = sorted(rows, key=lambda r: (r.device_name, r.artifact.role, r.runtime or "", r.artifact.precision))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ordered) + 1.5))
    labels = _bar_labels(ordered, rows)
    p50 = [r.typical_ms for r in ordered]
    p90 = [r.latency.p90 or r.typical_ms for r in ordered]
    bars = ax.barh(labels, p50, xerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90)]], capsize=2)
    for bar, r in zip(bars, ordered):  # not something to ship: hatched and grey
        if not r.artifact.verified:
            bar.set(facecolor="none", edgecolor="grey", hatch="//")
    ax.set_xscale("log")
    ax.set_xlabel("latency per image, ms (bar: p50, whisker: p90; log scale)")
    ax.set_title("Model latency per artifact")
    ax.invert_yaxis()
    fig.tight_layout()
    return _save(fig, out_dir / "latency.png")


def _bar_labels(ordered: list[BenchRow], rows: list[BenchRow]) -> list[str]:
    labels = [f"{r.artifact.role} {r.runtime} {r.artifact.precision}" for r in ordered]
    repeated = {label for label in labels if labels.count(label) > 1}  # two students: say whose bar
    labels = [f"{label} ({artifact_label(r, rows)})" if label in repeated else label
              for label, r in zip(labels, ordered)]
    return [label + r.artifact.unverified_note() for label, r in zip(labels, ordered)]


def _save(fig, path: Path) -> Path:
    from crd_edge._io import save_figure
    return save_figure(fig, path, dpi=120)


def write_report(results_files: list[Path], out_dir: Path) -> BenchReport:
    """report.json, report.md and the plots in ``out_dir`` from every result in ``results_files``."""
    results = load_results(results_files)
    rows = latest(results)
    _attach_roofline(rows, results)
    # Artifacts that were skipped or failed and never measured later on that device.
    def which(r: BenchRow) -> tuple:
        return r.device_spec, r.artifact.id
    measured = {which(r) for r in rows}
    skipped = list({which(r): r for r in results
                    if r.status in ("skipped", "error") and which(r) not in measured}.values())
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(rows, skipped)
    plots = plot(rows, out_dir)
    pictures = "".join(f"\n![{p.stem.replace('_', ' ')}]({p.name})\n" for p in plots)
    atomic_write_text(out_dir / "report.md", markdown + pictures)  # the terminal gets the tables only
    report = {"rows": [r.to_json() for r in rows], "speedups": [asdict(s) for s in speedups(rows)],
              "best_speedups": [asdict(b) for b in best_speedups(rows)],
              "not_measured": [r.to_json() for r in skipped],
              "plots": [p.name for p in plots], "sources": [str(p) for p in results_files]}
    write_json(out_dir / "report.json", report)
    return BenchReport(markdown, out_dir / "report.md", plots)
