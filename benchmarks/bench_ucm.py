"""Real photos: UCM-captions (2,100 aerial photos of the UC Merced Land Use set, 21 classes, 5
English captions each) with the captioning community's split (queries = test + val, 420;
training = database = train, 1,680):

- every method (ten by default) x 16/32/64/128 bits x text encoders {words, minilm}, each trained
  with 3 seeds at 16 and 64 bits and seed 0 at 32 and 128 (``--seeds``, ``--all-seeds-at``), beside
  CCA-ITQ, CCA-RR, real-valued CCA and random codes computed on the same split for each seed;
  mAP and mAP@50, I->T and T->I, mean ± std over the seeds;
- a short-query table: each of the 21 class names typed as a free-text query ("tennis court",
  "river", ...), text -> image over the database, precision@10 of that class, per encoder and
  method (seed 0, ``--query-bits``).

    python benchmarks/bench_ucm.py [--data ../shared/data/ucm-captions] [--bits 16,32,64,128]
                                   [--methods djsrh,...] [--encoders words,minilm] [--seeds 0,1,2]
                                   [--out runs/bench-ucm] [--threads N] [--results FILE]

It always resumes: finished runs in ``--out`` are read back, and rows already in the results
file (``benchmarks/results/ucm.json``) are not trained again, so the work can be spread over
sessions and machines. Several processes can share it: each run folder is locked while it trains,
so ``--threads 1 --no-baselines`` workers into the same ``--out`` take the runs the others have
not, and a last run (or ``--collect``, which trains nothing) writes the tables and the results
file, from which ``benchmarks/tables.py`` renders the README's and docs' tables.

Every method uses its ``folder`` preset (cmhash/presets/*.yaml: sized for about 2,000 items, scaled
by the training-set size); the images go once through the frozen EfficientNet-Lite0 at 224 px
(pooled features and conv maps, cached), the captions once through each text encoder (fitted on
the training part only).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cmhash.codes import sign_codes
from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs
from cmhash.eval.hamming import hamming_pm1
from cmhash.eval.report import Report
from cmhash.model import encode_items, load_model
from cmhash.eval.report import read_results
from cmhash.utils import CmhashError
from common import DEFAULT_UCM, RESULTS, bench_parser, run_queue, save_results, seeds_of, stored_rows
from tables import render_file
from cmhash.train.protocol import run_into

METHODS = ("djsrh", "dsah", "jdsh", "dgcpn", "ucch", "dsprh", "dcmh", "ssah", "udsph", "sdeh")
#: the 21 UC Merced class names as a person would type them
CLASS_QUERIES = {"agricultural": "agricultural land", "airplane": "airplane", "baseballdiamond": "baseball diamond",
                 "beach": "beach", "buildings": "buildings", "chaparral": "chaparral",
                 "denseresidential": "dense residential", "forest": "forest", "freeway": "freeway",
                 "golfcourse": "golf course", "harbor": "harbor", "intersection": "intersection",
                 "mediumresidential": "medium residential", "mobilehomepark": "mobile home park",
                 "overpass": "overpass", "parkinglot": "parking lot", "river": "river", "runway": "runway",
                 "sparseresidential": "sparse residential", "storagetanks": "storage tanks",
                 "tenniscourt": "tennis court"}


def class_name_precision(run: Path, inputs, k: int = 10) -> dict[str, float | None]:
    """Precision@k of each class-name query (text -> database images) for the model in ``run``;
    None where the model's text encoder knows none of the query's words."""
    model = load_model(run, device="cpu")
    db = inputs.split.database
    db_codes = encode_items(model.net, inputs, db, "image", "cpu")  # (N, K) int8
    names = inputs.data.label_names
    out: dict[str, float | None] = {}
    for label, query in CLASS_QUERIES.items():
        if not model.text_encoder.explain(query)["used"]:
            out[label] = None
            continue
        q = sign_codes(model.encode_text([query]))  # (1, K)
        d = hamming_pm1(q, db_codes)[0]
        top = np.argsort(d, kind="stable")[:k]
        out[label] = float(inputs.data.labels[db[top], names.index(label)].mean())
    return out


def short_query_table(results: dict[tuple[str, str], dict], encoders: list[str], methods: list[str]) -> str:
    cols = [(e, m) for e in encoders for m in methods if (e, m) in results]
    lines = ["| class query | " + " | ".join(f"{m.upper()} {e}" for e, m in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, query in CLASS_QUERIES.items():
        cells = [results[c][label] for c in cols]
        lines.append(f"| {query} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in cells) + " |")
    for title, fn in (("mean", np.mean), ("min", np.min)):
        cells = [fn([v or 0.0 for v in results[c].values()]) for c in cols]
        lines.append(f"| **{title}** | " + " | ".join(f"**{v:.2f}**" for v in cells) + " |")
    return "\n".join(lines)


def seed_plan(bits: list[int], seeds: list[int], all_seeds_at: list[int]) -> list[tuple[int, int]]:
    """(bits, seed) pairs in the order they run: every seed at ``all_seeds_at`` first (the table's
    mean ± std columns), then seed 0 alone at the other lengths."""
    first = [(b, s) for b in bits if b in all_seeds_at for s in seeds]
    return first + [(b, seeds[0]) for b in bits if b not in all_seeds_at]


def main() -> None:
    ap = bench_parser(__doc__, ",".join(METHODS), "runs/bench-ucm", datasets=None)
    ap.add_argument("--encoders", default="words,minilm")
    ap.add_argument("--query-bits", type=int, default=64, help="code length of the short-query table")
    ap.add_argument("--all-seeds-at", default="16,64", help="code lengths run with every seed; others with the first")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None, help="train.num_threads (default: the free cores)")
    ap.add_argument("--results", default=str(RESULTS / "ucm.json"),
                    help="the results file: read first (its rows are not trained again), then rewritten with "
                         "every row; the README / docs tables render from it")
    ap.add_argument("--no-baselines", action="store_true", help="train only (a helper worker)")
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: the tables from the runs finished so far (and the results file)")
    ap.set_defaults(wiki=DEFAULT_UCM)
    args = ap.parse_args()
    root, out = Path(args.wiki), Path(args.out)
    if not (root / "captions.tsv").is_file():
        raise SystemExit(f"{root}: no captions.tsv (UCM-captions in the folder format); give --data")
    bits = [int(b) for b in args.bits.split(",")]
    seeds = seeds_of(args)
    plan = seed_plan(bits, seeds, [int(b) for b in args.all_seeds_at.split(",")])
    methods, encoders = args.methods.split(","), args.encoders.split(",")
    results_file = Path(args.results)
    old = read_results(results_file) if results_file.exists() else {}
    reports, short = {}, dict(old.get("short_queries", {}))
    for enc in encoders:
        base = {"data": {"root": str(root), "split_file": str(root / "split-karpathy.json"), "text_encoder": enc}}

        def cfg_for(m, b, s):
            c = build_config(m, "folder", b, None, base)
            c.train.epochs = max(1, round(c.train.epochs * args.epochs_scale))
            c.train.num_threads = args.threads
            c.train.seed = s
            return c

        t0 = time.time()
        inputs = prepare_inputs(cfg_for(methods[0], bits[0], seeds[0]), with_maps=True)
        print(f"[ucm {enc}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
        report = Report(f"UCM-captions, text encoder {enc}", inputs, ("map", "map@50"))
        stored = stored_rows(old, enc)

        def run_one(run: Path, m: str, b: int, s: int) -> None:
            row = stored.get((m.upper(), b, s))
            if not (run / "metrics.json").exists() and (row is not None or args.collect):
                if row is not None:
                    report.rows.append(row)  # measured before (the results file)
                return
            run_into(report, m.upper(), cfg_for(m, b, s), run, inputs, resume=True, curves=False, seed=s)
            if b == args.query_bits and s == seeds[0]:
                try:
                    short[f"{enc}/{m}"] = class_name_precision(run, inputs)
                except CmhashError as e:
                    print(f"  short queries skipped: {e}")

        run_queue([(out / enc / f"{m}-{b}" / f"seed-{s}", m, b, s) for b, s in plan for m in methods], run_one,
                  wait_for_held=not args.collect)
        if args.no_baselines:
            continue
        report.add_baselines(bits, cca=True, seeds=seeds)
        report.write(out / enc)
        reports[enc] = report
    if args.no_baselines:
        return
    for enc, section in old.get("sections", {}).items():  # encoders not run now stay as they were
        reports.setdefault(enc, section)
    save_results(results_file, "bench_ucm.py", reports, {"short_queries": short, "query_bits": args.query_bits})
    print(render_file(results_file))


if __name__ == "__main__":
    main()
