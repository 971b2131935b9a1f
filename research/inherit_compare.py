"""Inherited against random first weights, by seed and by number of training photos.

The same student network (the main job's, ``resnet_9blocks_inherited``) and the main job's
settings, trained once from the teacher's own weights (``--init teacher``) and once from random
weights (``--init random``), for each seed and each number of training photos
(``data.train_photos``; 0 means all 205). Both first weights of one seed and photo count share
one labelled view bank, and the same network means the same latency in every runtime, so the
comparison is at equal measured latency by construction. Each run is a plain ``crd-edge
distill`` (a child process, so one failing run leaves the others); a finished run is reused, so
an interrupted comparison continues where it stopped.

::

    python -m research.inherit_compare --out runs/compare --seeds 0 1 2 --photos 0
    python -m research.inherit_compare --out runs/compare --seeds 0 --photos 51 102 0

writes ``compare.md`` (mean and spread over seeds, as ratios to copying the input) and
``compare.png`` (each figure against the number of photos, a dot per seed) in ``--out``; the
figures and the grids' description are in docs/distill.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

INITS = ("teacher", "random")
ALL_PHOTOS = 205  # the built-in training split; data.train_photos=0 means all of it


DEFAULT_STUDENT = "default"  # the config's student; any other is named in the run's folder


def run_name(init: str, photos: int, seed: int, student: str = DEFAULT_STUDENT) -> str:
    base = f"{init}-p{photos or ALL_PHOTOS}-s{seed}"
    return base if student == DEFAULT_STUDENT else f"{student}-{base}"


def finished(run_dir: Path) -> dict | None:
    """The run's summary when it ran to its last step and was scored, else None."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    done = summary.get("step") == summary.get("total_steps") and not summary.get("interrupted")
    return summary if done and summary.get("heldout") else None


def train(runs: Path, init: str, photos: int, seed: int, extra: list[str], student: str = DEFAULT_STUDENT) -> dict:
    name = run_name(init, photos, seed, student)
    summary = finished(runs / name)
    if summary is not None:
        print(f"{name}: finished earlier, reused", flush=True)
        return summary
    resume = ["--resume", str(runs / name)] if (runs / name / "checkpoint.pt").is_file() else []
    command = [sys.executable, "-m", "crd_edge", "distill", "--name", name, "--runs-dir", str(runs),
               "--init", init, "--seed", str(seed), "--set", f"data.train_photos={photos}", "--quiet", *extra]
    if student != DEFAULT_STUDENT:
        command += ["--student", student]
    if resume:  # the config comes from the checkpoint
        command = [sys.executable, "-m", "crd_edge", "distill", *resume, "--quiet"]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    summary = finished(runs / name)
    if summary is None:
        raise SystemExit(f"{name}: the run ended without a scored summary; see {runs / name}")
    return summary


def row(init: str, photos: int, seed: int, summary: dict, student_name: str = DEFAULT_STUDENT) -> dict:
    held = summary["heldout"]
    student, copy = held["student"], held["input"]
    return {"student": student_name, "init": init, "photos": photos or ALL_PHOTOS, "seed": seed,
            "run": summary["run_dir"],
            "kid_x": student["kid"] / copy["kid"], "vgg_x": student["vgg_dist"] / copy["vgg_dist"],
            "psnr_gain": student["psnr"] - copy["psnr"], "kid": student["kid"], "vgg_dist": student["vgg_dist"],
            "psnr": student["psnr"], "train_seconds": summary.get("train_seconds"),
            "images_per_second": summary.get("images_per_second")}


def collect(runs: Path) -> list[dict]:
    """A row for every finished run under ``runs`` named as :func:`run_name` names them."""
    rows = []
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        match = re.fullmatch(r"(?:(\w+)-)?(teacher|random)-p(\d+)-s(\d+)", run_dir.name)
        summary = finished(run_dir) if match else None
        if summary is not None:
            init, photos, seed = match[2], int(match[3]), int(match[4])
            rows.append(row(init, photos, seed, summary, match[1] or DEFAULT_STUDENT))
    return rows


FIGURES = (("kid_x", "KID / copying's", "{:.2f}x"), ("vgg_x", "vgg_dist / copying's", "{:.2f}x"),
           ("psnr_gain", "PSNR - copying's (dB)", "{:+.2f}"))


def _cell(values: list[float], spec: str) -> str:
    if len(values) == 1:
        return spec.format(values[0])
    return f"{spec.format(statistics.mean(values))} ({spec.format(min(values))} to {spec.format(max(values))})"


def _variants(rows: list[dict]) -> list[tuple[str, str]]:
    """(student, first weights) pairs in the rows: the default student first, then by name."""
    return sorted({(r["student"], r["init"]) for r in rows},
                  key=lambda v: (v[0] != DEFAULT_STUDENT, v[0], INITS.index(v[1])))


def render(rows: list[dict]) -> str:
    lines = ["| training photos | student | first weights | seeds | " + " | ".join(f[1] for f in FIGURES) + " |",
             "|---:|---|---|---|" + "---:|" * len(FIGURES)]
    for photos in sorted({r["photos"] for r in rows}):
        for student, init in _variants(rows):
            mine = [r for r in rows if r["photos"] == photos and (r["student"], r["init"]) == (student, init)]
            if mine:
                cells = [_cell([r[key] for r in mine], spec) for key, _, spec in FIGURES]
                seeds = ", ".join(str(r["seed"]) for r in mine)
                lines.append(f"| {photos} | {student} | {init} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMean over seeds (lowest to highest); bars of the main job: KID <= 0.8x, " \
                              "vgg_dist <= 0.80x, PSNR >= +3 dB.\n"


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crd_edge._io import save_figure
    bars = {"kid_x": 0.8, "vgg_x": 0.80, "psnr_gain": 3.0}
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(4.2 * len(FIGURES), 3.4))
    for ax, (key, label, _) in zip(axes, FIGURES):
        for (student, init), colour in zip(_variants(rows), ("#08519c", "#d95f0e", "#31a354", "#756bb1")):
            mine = [r for r in rows if (r["student"], r["init"]) == (student, init)]
            photos = sorted({r["photos"] for r in mine})
            means = [statistics.mean(r[key] for r in mine if r["photos"] == p) for p in photos]
            label = f"--init {init}" if student == DEFAULT_STUDENT else f"{student}, --init {init}"
            ax.plot(photos, means, "-", color=colour, label=label)
            ax.scatter([r["photos"] for r in mine], [r[key] for r in mine], color=colour, s=14, zorder=3)
        ax.axhline(bars[key], color="grey", linestyle=":", linewidth=1, label="main job's bar")
        ax.axhline(0.0 if key == "psnr_gain" else 1.0, color="grey", linestyle="--", linewidth=1,
                   label="copy the input")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["photos"] for r in rows}), [str(p) for p in sorted({r["photos"] for r in rows})])
        ax.set_xlabel("training photos")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--photos", type=int, nargs="+", default=[0], help="training photos (0: all 205)")
    parser.add_argument("--init", nargs="+", default=list(INITS), choices=INITS)
    parser.add_argument("--student", default=DEFAULT_STUDENT,
                        help="a registered student to train instead of the config's (named in the run folders)")
    parser.add_argument("extra", nargs="*", help="more distill options after --, e.g. -- --teacher NAME")
    args = parser.parse_args(argv)
    runs = args.out / "runs"
    for photos in args.photos:
        for seed in args.seeds:
            for init in args.init:  # one bank per (photos, seed): the first run labels it, the second reuses it
                train(runs, init, photos, seed, args.extra, args.student)
    rows = collect(runs)  # every finished run in the folder: later invocations add to the table
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    table = render(rows)
    (args.out / "compare.md").write_text(table)
    print(table)
    print(f"plot: {plot(rows, args.out / 'compare.png')}")


if __name__ == "__main__":
    main()
