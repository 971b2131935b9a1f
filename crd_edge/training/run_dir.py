"""Run directories (``runs/<name>``, never overwritten) and the run's report files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def new_run_dir(runs_dir: str | Path, name: str | None, default: str = "distill") -> Path:
    """``runs/<name>``; when it exists, ``<name>-2``, ``<name>-3``, ... (never reuses a folder)."""
    root = Path(runs_dir)
    base = name or default
    candidate, n = root / base, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{base}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def append_jsonl(path: str | Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def render_report(summary: dict) -> str:
    """A short Markdown report of a distillation run, from its summary dict only."""
    h = summary.get("heldout") or {}
    lines = [f"# Distillation run `{summary['run_dir']}`", "",
             f"* teacher: {summary['teacher'].get('source')} ({summary['teacher'].get('kind')}, "
             f"sha256 {summary['teacher'].get('sha256', '')[:12]})",
             f"* student: `{summary['student']['arch']}` {summary['student']['kwargs']}: "
             f"{summary['student']['params']:,} params, {summary['student']['true_gmacs']:.3f} true GMACs, "
             f"{summary['student']['paper_gmacs']:.3f} GMACs (paper convention) at 256x256",
             f"* data: {summary['data']['description']}; {summary['data']['train_images']} training images, "
             f"{summary['data']['test_images']} held-out; skipped files: {summary['data']['skipped'] or 'none'}",
             f"* steps: {summary['step']} of {summary['total_steps']} (batch {summary['batch_size']}, crop "
             f"{summary['crop_size']}), {summary['train_seconds']:.0f} s, {summary['images_per_second']:.2f} images/s"
             f" on {summary['device']}",
             f"* loss terms: {', '.join(summary['loss_terms'])}",
             f"* VGG16 weights: {summary.get('vgg') or 'not used'}",
             f"* GAN term: {summary['gan_note']}",
             f"* teacher outputs: {summary['cache_note']}", ""]
    if h:
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
    lines += ["Samples (input | teacher | student): `samples/`. Per-step losses: `metrics.jsonl`.", ""]
    return "\n".join(lines)
