"""Run directories (``runs/<name>``, never overwritten) and the run's report files."""

from __future__ import annotations

import itertools
from pathlib import Path

from crd_edge.config import StudentChoice


def new_run_dir(runs_dir: str | Path, name: str | None, default: str = "distill") -> Path:
    """``runs/<name>``; when it exists, ``<name>-2``, ``<name>-3``, ... (never reuses a folder).
    The folder is claimed by creating it, so two runs started at once with one name get two."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = name or default
    for n in itertools.count(1):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:  # taken, by an earlier run or one starting right now
            continue
        return candidate


def render_report(summary: dict) -> str:
    """A short Markdown report of a distillation run, from its summary dict only."""
    h = summary.get("heldout") or {}
    lines = [f"# Distillation run `{summary['run_dir']}`", "",
             f"* teacher: {summary['teacher'].get('source')} ({summary['teacher'].get('kind')}, "
             f"sha256 {summary['teacher'].get('sha256', '')[:12]})",
             f"* student: `{summary['student']['arch']}` {summary['student']['kwargs']}: "
             f"{summary['student']['params']:,} params, {summary['student']['true_gmacs']:.3f} true GMACs, "
             f"{summary['student']['paper_gmacs']:.3f} GMACs (paper convention) at 256x256",
             f"* first weights: {_init_line(summary['student'])}",
             f"* data: {summary['data']['description']}; {summary['data']['train_images']} training image{'s' if summary['data']['train_images'] != 1 else ''}, "
             f"{summary['data']['test_images']} held-out; skipped files: {summary['data']['skipped'] or 'none'}",
             f"* steps: {summary['step']} of {summary['total_steps']} (batch {summary['batch_size']}, crop "
             f"{summary['crop_size']}), {summary['train_seconds']:.0f} s, {summary['images_per_second']:.2f} images/s"
             f" on {summary['device']}" + (f" ({summary['autocast']} autocast)" if summary.get("autocast") else "")
             + _compute_note(summary.get("compute")),
             f"* loss terms: {', '.join(summary['loss_terms'])}",
             f"* VGG16 weights: {summary.get('vgg') or 'not used'}",
             f"* GAN term: {summary['gan_note']}",
             f"* teacher outputs: {summary['cache_note']}", ""]
    if h and "student" in h:
        lines += _views_section(summary, h)
    elif h:
        lines += ["## Held-out fidelity to the teacher", "",
                  f"Scored on {h['images']} held-out images at {summary['test_size']}x{summary['test_size']} "
                  "(PSNR in dB against the teacher's output; higher is better).", "",
                  "| | PSNR vs teacher |", "|---|---|",
                  f"| student | {h['psnr_student_teacher']:.2f} |",
                  f"| copy the input (baseline) | {h['psnr_input_teacher']:.2f} |",
                  f"| gain over baseline | {h['psnr_gain_db']:+.2f} |", ""]
    else:
        lines += ["No held-out images: fidelity not scored.", ""]
    if summary.get("interrupted"):
        lines += [f"Interrupted at step {summary['step']}: resume with "
                  f"`crd-edge distill --resume {summary['run_dir']}`.", ""]
    if summary.get("loss_curve"):
        lines += ["Training losses (weighted, from `metrics.jsonl`):", "",
                  f"![training losses]({summary['loss_curve']})", ""]
    lines += _selection_lines(summary["student"].get("selection"))
    lines += ["Samples (input | teacher | student): `samples/`. Per-step losses: `metrics.jsonl`.", ""]
    return "\n".join(lines)


def _views_section(summary: dict, h: dict) -> list[str]:
    """The held-out table of a view-based run: the student beside copying the input."""
    def cell(who: str, key: str, fmt: str) -> str:
        value = h[who].get(key)
        return "n/a" if value is None else format(value, fmt)

    def ratio(key: str) -> str:
        value = h.get(f"{key}_ratio")
        return "" if value is None else f"{value:.2f}x"

    lines = ["## Held-out views: how close the student is to the teacher", "",
             f"{h['crops']} crops of {h['size']} px from {h['photos']} photos that never enter training, "
             "each compared with the teacher's output on it. Lower is better for KID, FID and "
             "vgg_dist; higher for PSNR and SSIM. FID on a few hundred crops is biased upwards: "
             "compare it only within this table.", "",
             "| | KID | FID | vgg_dist | PSNR (dB) | SSIM |", "|---|---|---|---|---|---|",
             f"| student | {cell('student', 'kid', '.4f')} | {cell('student', 'fid', '.1f')} | "
             f"{cell('student', 'vgg_dist', '.4f')} | {cell('student', 'psnr', '.2f')} | {cell('student', 'ssim', '.3f')} |",
             f"| copy the input | {cell('input', 'kid', '.4f')} | {cell('input', 'fid', '.1f')} | "
             f"{cell('input', 'vgg_dist', '.4f')} | {cell('input', 'psnr', '.2f')} | {cell('input', 'ssim', '.3f')} |",
             f"| student / input | {ratio('kid')} | {ratio('fid')} | {ratio('vgg_dist')} | "
             f"{h.get('psnr_gain_db', 0):+.2f} dB | |", ""]
    if h.get("grid"):
        lines += ["Eight held-out views, input | teacher | student:", "", f"![held-out views]({h['grid']})", ""]
    for note in h.get("notes", []):
        lines.append(f"* {note}")
    networks = [f"KID/FID: {h['inception']}" if h.get("inception") else "", f"vgg_dist: {h['vgg']}" if h.get("vgg") else ""]
    if any(networks):
        lines += ["* networks: " + "; ".join(n for n in networks if n), ""]
    views = summary["data"].get("views") or {}
    if views:
        lines += ["* training photos: listed with their package, file and licence in `photos.json`",
                  f"* teacher labels: {views['labeller'].get('runtime')} {views['labeller'].get('precision')}"
                  + (f" ({views['labeller']['psnr_vs_torch_db']} dB against torch)" if "psnr_vs_torch_db" in views["labeller"] else ""), ""]
    if summary.get("learning_curve"):
        lines += ["Learning curve (every `train.eval_every` steps):", "",
                  f"![learning curve]({summary['learning_curve']})", ""]
    lines += ["For a closer student, run the full recipe: "
              "`crd-edge distill --recipe look` (about an hour on a 2-core CPU, or add `--device cuda`).", ""]
    return lines


def _selection_lines(selection: dict | None) -> list[str]:
    """Why this student (``distill --latency-budget``): the budget, the chosen member and the
    runner-up, and the measured table it was chosen from."""
    if not selection:
        return []
    choice = StudentChoice.from_dict(selection)
    chosen, runner = choice.chosen, choice.runner_up
    lines = ["## Why this student", "",
             f"The largest student of the family (most true MACs) measured within {choice.budget_ms:g} ms "
             f"in {choice.runtime} {choice.precision} on {choice.device} "
             f"(`{choice.table}`): **{chosen.name}**, {chosen.ms:.2f} ms, {chosen.true_gmacs:.3f} true GMACs."]
    if runner:
        lines.append(f"Runner-up: {runner.name}, {runner.ms:.2f} ms, {runner.true_gmacs:.3f} true GMACs.")
    lines += ["", "| member | true GMACs | p50 ms | within budget |", "|---|---:|---:|---|"]
    lines += [f"| {c.name} | {c.true_gmacs:.3f} | {c.ms:.2f} | {'yes' if c.ms <= choice.budget_ms else 'no'} |"
              for c in choice.candidates]
    if choice.plot:
        lines += ["", f"![latency against MACs, with the budget]({choice.plot})"]
    return lines + [""]


def _init_line(student: dict) -> str:
    init = student.get("init") or "random"
    if init != "teacher":
        return init
    kept = (student.get("inherited") or {}).get("kept", {})
    stream = len(kept.get("stream", []))
    # a shuffle-ended student keeps no stem: its two end layers have no teacher weights to slice
    ends = "" if "stem" in kept else "; the shuffle ends, which the teacher lacks, fitted alone"
    return ("the teacher's own, pruned (its most important channels on 32 training views, each layer re-fitted "
            f"by least squares; residual stream {stream} channels{ends}): `inherit.json` lists the kept channels")


def _compute_note(compute: dict | None) -> str:
    if not compute:
        return ""
    return (f"; {compute['gflop_per_image']:.2f} GFLOP an image (every network, forward and backward), "
            f"{compute['gflops']:.1f} GFLOP/s: {compute['share']:.0%} of this CPU's "
            f"{compute.get('precision', 'fp32')} matmul roofline "
            f"({compute['matmul_gflops']:.0f} GFLOP/s, {compute['threads']} threads, measured in the same process)")
