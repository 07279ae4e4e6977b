"""Choose settings on the validation part of the training set, never on the queries.

Each point of a sweep spec (its ``variants``) is trained on the training part of each dataset at
each code length and seed; the score is the model's best validation score (the trainer's
``select_metric``, mAP@50 averaged over I->T and T->I, on the 10 % of training items it holds
out), and the queries are never encoded. The table shows validation mAP and mAP@50 per point;
the last line names the point with the highest validation score averaged over every dataset,
code length and seed.

    python benchmarks/select_on_validation.py --spec dsprh-select [--datasets ucm,synthetic]
                                              [--bits 16,64] [--seeds 0] [--out runs/select]

Runs are resumable and shareable as in bench_ucm.py (a locked folder per run; ``--collect`` reads
the finished ones). The results file (default ``benchmarks/results/<spec>.json``) holds the
validation numbers in the usual row format, so ``benchmarks/tables.py`` renders them.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cmhash.data.inputs import prepare_inputs
from cmhash.train.protocol import train_run
from cmhash.train.sweep import load_spec, slug
from cmhash.utils import read_json, write_json_atomic
from bench_dsprh import data_base, run_config
from common import DEFAULT_UCM, RESULTS, bench_parser, run_queue, save_results, seeds_of
from tables import render_file


class ValidationReport:
    """Rows of validation scores in a Report's shape (what ``save_results`` writes)."""

    def __init__(self, title: str, inputs):
        self.title, self.inputs, self.rows, self.label_prior = title, inputs, [], None


def val_row(name: str, bits: int, seed: int, metrics: dict) -> dict:
    v = metrics["best_val"]
    return {"name": name, "bits": bits, "seed": seed, "best_epoch": metrics["best_epoch"],
            "i2t": {"map": v["map_i2t"], "map@50": v["map@50_i2t"]},
            "t2i": {"map": v["map_t2i"], "map@50": v["map@50_t2i"]}, "score": v["map@50"],
            "train_seconds": metrics["train_seconds"]}


def main() -> None:
    ap = bench_parser(__doc__, "", "runs/select", datasets="ucm,synthetic")
    ap.add_argument("--spec", default="dsprh-select")
    ap.add_argument("--ucm", default=DEFAULT_UCM)
    ap.add_argument("--encoder", default="words")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--results", default=None)
    ap.add_argument("--no-baselines", action="store_true", help="train only (a helper worker)")
    ap.add_argument("--collect", action="store_true", help="train nothing: the table from the finished runs")
    ap.set_defaults(bits=None, seeds="0")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    bits = [int(b) for b in args.bits.split(",")] if args.bits else spec.bits
    seeds = seeds_of(args)
    results = Path(args.results or RESULTS / f"{Path(args.spec).stem}.json")
    reports = {}
    for ds in args.datasets.split(","):
        base = data_base(ds, args)
        if base is None:
            print(f"## {ds}: skipped (its data is absent)")
            continue

        def cfg_for(p, b, s, ds=ds, base=base):
            return run_config(p, ds, b, s, base, args.threads)

        t0 = time.time()
        inputs = prepare_inputs(cfg_for(spec.points[0], bits[0], seeds[0]), with_maps=ds != "wiki")
        print(f"[{ds}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
        rep = reports[ds] = ValidationReport(f"{ds}: validation part of the training set ({spec.title})", inputs)

        def run_one(run: Path, p, b, s, rep=rep, cfg_for=cfg_for, inputs=inputs):
            done = run / "metrics.json"
            if not done.exists():
                if args.collect:
                    return
                cfg = cfg_for(p, b, s)
                res = train_run(cfg, run, inputs, resume=True, progress=False)
                write_json_atomic(done, {"best_epoch": res.best_epoch, "best_val": res.best_val,
                                         "train_seconds": round(res.seconds, 1), "config": cfg.to_dict()})
            row = val_row(p.name, b, s, read_json(done, "metrics"))
            rep.rows.append(row)
            print(f"  {p.name}, {b} bits, seed {s}: validation mAP@50 {row['score']:.3f} "
                  f"(mAP {row['i2t']['map']:.3f} / {row['t2i']['map']:.3f}, best epoch {row['best_epoch']})", flush=True)

        run_queue([(Path(args.out) / ds / slug(p.name.lower()) / f"bits-{b}" / f"seed-{s}", p, b, s)
                   for s in seeds for b in bits for p in spec.points], run_one, wait_for_held=not args.collect)
    if args.no_baselines:
        return
    save_results(results, "select_on_validation.py", reports, {"spec": args.spec})
    print(render_file(results))
    scores = {}
    for rep in reports.values():
        for r in rep.rows:
            scores.setdefault(r["name"], []).append(r["score"])
    best = max(scores, key=lambda n: np.mean(scores[n]))
    print(f"\nhighest mean validation mAP@50: {best} ({np.mean(scores[best]):.3f} over {len(scores[best])} runs)")


if __name__ == "__main__":
    main()
