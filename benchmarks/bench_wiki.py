"""Real-data benchmark on Wiki (wikiData.mat features): DJSRH, DSAH, JDSH, DGCPN and UCCH at
16/32/64/128 bits over 3 training seeds, beside CCA-ITQ, CCA-RR, real-valued CCA and random codes
computed in the same run, and the
DJSRH paper's Wiki row (which used raw images through AlexNet, not these SIFT features).

    python benchmarks/bench_wiki.py --data ../shared/data/wiki [--epochs N] [--out runs/bench-wiki] [--resume]
"""
from __future__ import annotations

from pathlib import Path

from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs
from cmhash.eval.report import Report
from common import bench_parser, finish_dataset, save_results, seeds_of
from cmhash.train.protocol import run_into

PAPER_DJSRH_WIKI = {  # DJSRH (ICCV 2019) Table, mAP@50, AlexNet on raw Wiki images
    "i2t": {16: .388, 32: .403, 64: .412, 128: .421}, "t2i": {16: .611, 32: .635, 64: .646, 128: .658}}


def main() -> None:
    ap = bench_parser(__doc__, "djsrh,dsah,jdsh,dgcpn,ucch", "runs/bench-wiki", datasets=None, results="wiki.json")
    ap.add_argument("--epochs", type=int, default=None, help="default: each method's Wiki preset")
    args = ap.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    out = Path(args.out)
    over = {"train": {"epochs": args.epochs}} if args.epochs else {}
    cfgs = [build_config(m, "wiki", b, over, {"data": {"root": args.wiki}}) for m in args.methods.split(",")
            for b in bits]
    report = Report("Wiki (wikiData.mat: 128-d SIFT BoVW images, 10-d LDA texts)", prepare_inputs(cfgs[0]),
                    ("map", "map@50"))
    seeds = seeds_of(args)
    for s in seeds:
        for cfg in cfgs:
            cfg.train.seed = s
            run_into(report, cfg.method.upper(), cfg, out / f"{cfg.method}-{cfg.bits}" / f"seed-{s}", report.inputs,
                     resume=args.resume, seed=s)
    for b in bits:
        if b in PAPER_DJSRH_WIKI["i2t"]:
            report.add("DJSRH paper (raw images, AlexNet)", b, {
                "i2t": {"map@50": PAPER_DJSRH_WIKI["i2t"][b]}, "t2i": {"map@50": PAPER_DJSRH_WIKI["t2i"][b]}})
    finish_dataset(report, bits, out, cca=True, seeds=seeds)
    print("\n" + report.markdown())
    save_results(args.results, "bench_wiki.py", {"wiki": report})


if __name__ == "__main__":
    main()
