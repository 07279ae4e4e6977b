"""Training time per epoch of several methods on one dataset, side by side in one process.

Each method trains at its preset for ``--epochs`` epochs, ``--rounds`` times, the rounds
interleaved (A B A B ...) so that a machine's slow spell hits every method alike; the table shows
the median seconds per epoch (the trainer's per-epoch clock: the steps only, not validation or
checkpoints) and each method's ratio to the first one.

    python benchmarks/bench_train_speed.py [--methods dsah,dsprh] [--spec dsprh] [--section ucm]
                                           [--bits 64] [--epochs 3] [--rounds 2] [--threads 2]

The dataset is a section of a sweep spec (``--spec``, ``--section``: its preset, data folder and
settings, as the benchmark sweeps run it).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from cmhash.config import build_config
from cmhash.overrides import nest
from cmhash.train.protocol import prepare, train_run
from cmhash.train.sweep import load_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="dsah,dsprh")
    ap.add_argument("--spec", default="dsprh", help="the sweep spec whose dataset section is used")
    ap.add_argument("--section", default="ucm")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    section = load_spec(args.spec).datasets()[args.section]
    methods = args.methods.split(",")
    # no validation inside the clock
    flat = {**section.settings, "train.epochs": args.epochs, "train.num_threads": args.threads, "train.eval_every": 10 ** 6}
    base = {"data": {"root": section.root}} if section.root else {}
    cfgs = {m: build_config(m, section.dataset, args.bits, nest(flat), base) for m in methods}
    _, inputs = prepare(next(iter(cfgs.values())), with_maps=True)
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            res = train_run(cfgs[m], None, inputs, progress=False)
            seconds[m] += [h["seconds"] for h in res.history]
    first = statistics.median(seconds[methods[0]])
    print(f"\n{args.section}, {args.bits} bits, {args.threads} threads (torch {torch.__version__}), "
          f"{args.epochs} epochs x {args.rounds} rounds\n")
    print("| method | s / epoch (median) | min | max | ratio |\n|---|---|---|---|---|")
    for m in methods:
        s = seconds[m]
        print(f"| {m.upper()} | {statistics.median(s):.2f} | {min(s):.2f} | {max(s):.2f} | "
              f"{statistics.median(s) / first:.2f}x |")


if __name__ == "__main__":
    main()
