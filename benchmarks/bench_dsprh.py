"""DSPRH against the baselines it builds on, in one run: DJSRH, DSAH and DSPRH at 16/32/64/128
bits on Wiki (wikiData.mat features) and on the embedded dataset (rendered images through the
pretrained EfficientNet-Lite0, conv maps cached), mAP and mAP@50 for I->T and T->I, with random
codes as the floor and DSPRH's loss ablation (each term removed) beside them.

    python benchmarks/bench_dsprh.py [--datasets wiki,synthetic] [--wiki ../shared/data/wiki]
                                     [--ablation-bits 64] [--out runs/bench-dsprh] [--resume]

Every method uses its preset for the dataset (``cmhash/presets/*.yaml``); model selection is on
a validation part of the training set. Wiki is skipped (with a note) when its file is absent.
"""
from __future__ import annotations

import time
from pathlib import Path

from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs
from cmhash.eval.report import Report
from cmhash.train.sweep import slug
from common import bench_parser, finish_dataset, run_datasets, seeds_of
from cmhash.train.protocol import run_into

ABLATION = {"DSPRH w/o alignment": {"alpha": 0.0}, "DSPRH w/o cosine triplet": {"beta": 0.0},
            "DSPRH w/o pairwise": {"gamma": 0.0}}


def bench_dataset(dataset: str, root: str | None, bits: list[int], methods: list[str], ablation_bits: list[int],
                  out: Path, resume: bool, seeds: list[int]) -> Report:
    base = {"data": {"root": root}} if root else {}
    cfgs = [(m.upper(), m, b, {}) for m in methods for b in bits]
    cfgs += [(name, "dsprh", b, ov) for name, ov in ABLATION.items() for b in ablation_bits]
    built = [(name, b, build_config(m, dataset, b, {"method": ov} if ov else {}, base)) for name, m, b, ov in cfgs]
    t0 = time.time()
    # one input for all: pooled features for every method, conv maps too (DSPRH reads them)
    inputs = prepare_inputs(next(c for _, _, c in built if c.method == "dsprh") if "dsprh" in methods
                            else built[0][2])
    print(f"[{dataset}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
    report = Report(dataset, inputs, ("map", "map@50"))
    for s in seeds:
        for name, b, cfg in built:
            cfg.train.seed = s
            # the paper's Figure 6: PR and precision@top-K at the largest code length
            run_into(report, name, cfg, out / dataset / f"{slug(name.lower())}-{b}" / f"seed-{s}", inputs,
                     resume=resume, curves=b == max(bits) and s == seeds[0] and name in [m.upper() for m in methods],
                     seed=s)
    return finish_dataset(report, bits, out / dataset, cca=True, seeds=seeds)


def main() -> None:
    ap = bench_parser(__doc__, "djsrh,dsah,dsprh", "runs/bench-dsprh", results="dsprh.json")
    ap.add_argument("--ablation-bits", default="64", help="code lengths of the loss ablation ('' for none)")
    args = ap.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    abl = [int(b) for b in args.ablation_bits.split(",") if b.strip()]
    run_datasets(args.datasets, args.wiki, "DJSRH vs DSAH vs DSPRH", Path(args.out),
                 lambda ds, root: bench_dataset(ds, root, bits, args.methods.split(","), abl, Path(args.out),
                                                args.resume, seeds_of(args)), args.results, "bench_dsprh.py")

if __name__ == "__main__":
    main()
