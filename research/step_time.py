"""How long one training step of a run takes, as the run takes it: the run's own set-up
(``RunSetup``: teacher, student, inherited weights, the labelled view bank) and its own step
(``RunStep``: every loss term, the optimiser, clipping), timed on batches drawn from the bank.

``profile --train-step`` times a student on synthetic targets; this times the whole step of a
config, the discriminator included when the config has one, and after the run's FLOP count
(which once slowed every later step, docs/distill.md). The figures in docs/distill.md ("A step
twice as fast on a CPU with AMX") come from::

    python -m research.step_time                       # the main job, bf16 where the CPU has it
    python -m research.step_time --fp32
    python -m research.step_time --fp32 student.arch=mobile_resnet_9blocks_ngf16_colour \\
        student.init=random loss.gan=1                 # the previous main job

Labels the bank first when it is not on disk (the main job's: about a minute with AMX).
"""

from __future__ import annotations

import argparse
import time

import torch

from crd_edge.analysis.roofline import count_flops
from crd_edge.config import load_config
from crd_edge.training import distributed as D
from crd_edge.training.loop import Meter
from crd_edge.training.run_setup import RunSetup
from crd_edge.training.run_step import RunStep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config keys as for --set (key=value)")
    parser.add_argument("--fp32", action="store_true", help="no autocast (train.amp=false)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 6 warm ones)")
    parser.add_argument("--profile", action="store_true", help="also print torch's profiler table of 10 steps")
    args = parser.parse_args(argv)
    cfg = load_config(overrides=[*args.overrides, f"train.amp={str(not args.fp32).lower()}"])
    torch.manual_seed(cfg.train.seed)
    setup = RunSetup(cfg, torch.device("cpu"), D.setup_distributed("cpu"))
    setup.views.bank.fill()
    if setup.init_note == "teacher":
        setup.inherit_teacher(None)
    step, meter, batch_size = RunStep(setup), Meter(), cfg.data.batch_size

    def batch(i: int) -> dict:
        x, t = setup.views.bank.sample(batch_size, torch.Generator().manual_seed(i))
        return {"A": x, "T": t}

    step(batch(0), 0, 0, meter)
    flops = count_flops(lambda: step(batch(1), 0, 1, meter))  # as the run does
    for i in range(2, 6):
        step(batch(i), 0, i, meter)
    start = time.perf_counter()
    for i in range(6, 6 + args.steps):
        step(batch(i), 0, i, meter)
    seconds = (time.perf_counter() - start) / args.steps
    print(f"{cfg.student.arch}, {'bf16 autocast' if setup.amp else 'fp32'}, batch {batch_size} of "
          f"{cfg.data.size} px, {torch.get_num_threads()} threads: {seconds * 1e3:.0f} ms a step, "
          f"{batch_size / seconds:.1f} images/s, {flops / batch_size / 1e9:.2f} GFLOP an image")
    if args.profile:
        with torch.profiler.profile() as prof:
            for i in range(10):
                step(batch(i), 0, i, meter)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
