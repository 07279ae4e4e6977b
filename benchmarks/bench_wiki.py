"""Real-data benchmark on Wiki (wikiData.mat features): DJSRH and DSAH at 16/32/64/128 bits,
beside a CCA + random-rotation hashing baseline and random codes computed in the same run, and
the DJSRH paper's Wiki row (which used raw images through AlexNet, not these SIFT features).

    python benchmarks/bench_wiki.py --data ../shared/data/wiki [--epochs N] [--out runs/bench-wiki] [--resume]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from cmhash.baselines import cca_hash_codes
from cmhash.config import build_config
from cmhash.eval.runner import evaluate_codes, markdown_table
from cmhash.train.trainer import label_prior, prepare_inputs, random_codes_metrics, run_experiment
from cmhash.utils import write_json_atomic, write_text_atomic

PAPER_DJSRH_WIKI = {  # DJSRH (ICCV 2019) Table, mAP@50, AlexNet on raw Wiki images
    "i2t": {16: .388, 32: .403, 64: .412, 128: .421}, "t2i": {16: .611, 32: .635, 64: .646, 128: .658}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki"))
    ap.add_argument("--bits", default="16,32,64,128")
    ap.add_argument("--methods", default="djsrh,dsah")
    ap.add_argument("--epochs", type=int, default=None, help="default: each method's Wiki preset")
    ap.add_argument("--out", default="runs/bench-wiki")
    ap.add_argument("--resume", action="store_true", help="reuse finished runs (metrics.json) in --out")
    args = ap.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    out = Path(args.out)
    rows = []
    inputs = None
    for method in args.methods.split(","):
        for b in bits:
            over = {"train": {"epochs": args.epochs}} if args.epochs else {}
            cfg = build_config(method, "wiki", b, over, {"data": {"root": args.data}})
            inputs = inputs or prepare_inputs(cfg)
            t = time.time()
            m = run_experiment(cfg, out / f"{method}-{b}", inputs, resume=args.resume, progress=False,
                               curves=False)
            rows.append({"name": method.upper(), "bits": b, **m})
            print(f"{method:>6} {b:>3} bits: I->T mAP@50 {m['i2t']['map@50']:.3f} | T->I mAP@50 {m['t2i']['map@50']:.3f}"
                  f"  ({cfg.train.epochs} epochs, best {m['best_epoch']}, {time.time() - t:.0f}s)", flush=True)
    d, s = inputs.data, inputs.split
    lab = d.labels
    for b in bits:
        codes = cca_hash_codes(inputs.feat, d.texts, s.train, s.query, s.database, b, seed=0)
        rows.append({"name": "CCA + random rotation", "bits": b,
                     **evaluate_codes(codes, lab[s.query], lab[s.database], curves=False)})
        rows.append({"name": "random codes", "bits": b, **random_codes_metrics(inputs, b, curves=False)})
    rows += [{"name": "DJSRH paper (raw images, AlexNet)", "bits": b,
              "i2t": {"map@50": PAPER_DJSRH_WIKI["i2t"][b]}, "t2i": {"map@50": PAPER_DJSRH_WIKI["t2i"][b]}}
             for b in bits if b in PAPER_DJSRH_WIKI["i2t"]]
    table = markdown_table(rows)
    prior = label_prior(inputs)
    text = (f"# Wiki (wikiData.mat: 128-d SIFT BoVW images, 10-d LDA texts), query {len(s.query)}, "
            f"database {len(s.database)}\n\nlabel prior {prior:.3f}\n\n{table}")
    print("\n" + text)
    write_text_atomic(out / "results.md", text)
    write_json_atomic(out / "results.json", {"label_prior": prior, "rows": [{k: v for k, v in r.items() if k != "curves"}
                                                                          for r in rows]})


if __name__ == "__main__":
    main()
