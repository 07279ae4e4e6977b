"""Seconds per training epoch of several methods on one dataset (a section of a sweep spec),
side by side in one process, the rounds interleaved; the median and each method's ratio to the first.

    python benchmarks/bench_train_speed.py [--methods dsah,dsprh] [--spec dsprh] [--section ucm] [--bits 64]
"""
from __future__ import annotations

import statistics

import torch

from cmhash.config import build_config
from cmhash.overrides import nest
from cmhash.train.protocol import prepare, train_run
from cmhash.train.sweep import load_spec
from helpers import parser, publish


def main() -> None:
    ap = parser(__doc__, "bench-train-speed")
    for name, default in (("methods", "dsah,dsprh"), ("spec", "dsprh"), ("section", "ucm"), ("bits", 64), ("epochs", 3),
                          ("rounds", 2), ("threads", 2)):
        ap.add_argument(f"--{name}", default=default, type=type(default))
    args = ap.parse_args()
    section = load_spec(args.spec).datasets()[args.section]
    methods = args.methods.split(",")
    flat = {**section.settings, "train.epochs": args.epochs, "train.num_threads": args.threads,
            "train.eval_every": 10 ** 6}  # no validation inside the clock
    cfgs = {m: build_config(m, section.dataset, args.bits, nest(flat), {"data": {"root": section.root}} if section.root
                            else {}) for m in methods}
    _, inputs = prepare(next(iter(cfgs.values())), with_maps=True)
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):  # interleaved
        for m in methods:
            seconds[m] += [h["seconds"] for h in train_run(cfgs[m], None, inputs, progress=False).history]
    first = statistics.median(seconds[methods[0]])
    publish(args.results / "train-speed.json", args.section, f"Seconds per epoch: {args.section}, {args.bits} bits, "
            f"{args.threads} threads (torch {torch.__version__}), {args.epochs} epochs x {args.rounds} rounds",
            ["method", "s / epoch (median)", "min", "max", "ratio"],
            [[m.upper(), f"{statistics.median(s):.2f}", f"{min(s):.2f}", f"{max(s):.2f}",
              f"{statistics.median(s) / first:.2f}x"] for m, s in seconds.items()])


if __name__ == "__main__":
    main()
