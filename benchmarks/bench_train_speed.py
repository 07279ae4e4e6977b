"""Training time per epoch of several methods on one dataset, side by side in one process.

Each method trains at its preset for ``--epochs`` epochs, ``--rounds`` times, the rounds
interleaved (A B A B ...) so that a machine's slow spell hits every method alike; the table shows
the median seconds per epoch (the trainer's per-epoch clock: the steps only, not validation or
checkpoints) and each method's ratio to the first one.

    python benchmarks/bench_train_speed.py [--methods dsah,dsprh] [--dataset ucm] [--bits 64]
                                           [--epochs 3] [--rounds 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs
from cmhash.train.protocol import train_run
from bench_dsprh import PRESETS, data_base
from common import DEFAULT_UCM, DEFAULT_WIKI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="dsah,dsprh")
    ap.add_argument("--dataset", default="ucm", choices=sorted(PRESETS))
    ap.add_argument("--ucm", default=DEFAULT_UCM)
    ap.add_argument("--wiki", default=DEFAULT_WIKI)
    ap.add_argument("--encoder", default="words")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    base = data_base(args.dataset, args)
    if base is None:
        raise SystemExit(f"{args.dataset}: its data is absent (see --ucm / --wiki)")
    methods = args.methods.split(",")
    cfgs = {m: build_config(m, PRESETS[args.dataset], args.bits, {"train": {"epochs": args.epochs}}, base)
            for m in methods}
    for c in cfgs.values():
        c.train.num_threads, c.train.eval_every = args.threads, 10 ** 6  # no validation inside the clock
    inputs = prepare_inputs(next(iter(cfgs.values())), with_maps=args.dataset != "wiki")
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            res = train_run(cfgs[m], None, inputs, progress=False)
            seconds[m] += [h["seconds"] for h in res.history]
    first = statistics.median(seconds[methods[0]])
    print(f"\n{args.dataset}, {args.bits} bits, {args.threads} threads (torch {torch.__version__}), "
          f"{args.epochs} epochs x {args.rounds} rounds\n")
    print("| method | s / epoch (median) | min | max | ratio |\n|---|---|---|---|---|")
    for m in methods:
        s = seconds[m]
        print(f"| {m.upper()} | {statistics.median(s):.2f} | {min(s):.2f} | {max(s):.2f} | "
              f"{statistics.median(s) / first:.2f}x |")


if __name__ == "__main__":
    main()
