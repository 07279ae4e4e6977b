"""DSPRH examined (docs/dsprh.md), two kinds of run, both mean ± std over training seeds:

- ``--path``: the ablation path from DSAH to DSPRH, one setting at a time (the built-in sweep
  ``dsprh-path``, or ``--spec FILE``), at the spec's code lengths (16 and 64) -> results/dsprh-path.json;
- otherwise: methods side by side (default DSAH and DSPRH, 16-128 bits, 3 seeds), beside CCA-ITQ,
  CCA-RR, real-valued CCA and random codes -> results/dsprh.json.

Datasets: ``ucm`` (UCM-captions photos, the captioning split, ``--encoder words|minilm``), ``synthetic``
(the embedded set: rendered images through the frozen EfficientNet-Lite0, conv maps cached) and
``wiki`` (wikiData.mat features; skipped with a note when absent).

    python benchmarks/bench_dsprh.py --path [--datasets ucm,synthetic] [--reuse ucm.json:words@ucm]
                                     [--reuse before.json:words@ucm/10=DSPRH]
    python benchmarks/bench_dsprh.py [--datasets ucm,synthetic,wiki] [--methods dsah,dsprh] [--bits 16,32,64,128]
    python benchmarks/bench_dsprh.py --datasets ucm --bits 64 --set backbone.finetune=true \
        --set backbone.image_size=96 --results benchmarks/results/dsprh-finetune.json   # fine-tuned backbone

Like bench_ucm.py it always resumes and can be shared: each run folder is locked while it
trains, so ``--no-baselines`` workers into the same ``--out`` split the runs, and a last run
(or ``--collect``) writes the results file. Rows already in the results file are not trained
again; ``--reuse FILE:SECTION@DATASET`` takes a method's rows from another results file where a
row is that method at its preset (same protocol and seeds), e.g. DSAH's UCM rows from ucm.json.
Every run uses its method's preset for the dataset (``cmhash/presets/*.yaml``) plus the row's
settings; model selection is on a validation part of the training set, never on the queries.
"""
from __future__ import annotations

import time
from pathlib import Path

from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs
from cmhash.eval.report import Report
from cmhash.overrides import nest, parse_pairs
from cmhash.train.protocol import run_into
from cmhash.train.sweep import Point, load_spec, slug
from cmhash.eval.report import read_results
from common import DEFAULT_UCM, RESULTS, bench_parser, run_queue, save_results, seeds_of, stored_rows
from tables import render_file

#: dataset -> (preset, what its data section needs)
PRESETS = {"ucm": "folder", "synthetic": "synthetic", "wiki": "wiki"}


def data_base(dataset: str, args) -> dict | None:
    """The data section of a dataset's runs; None when its files are absent."""
    if dataset == "ucm":
        root = Path(args.ucm)
        if not (root / "captions.tsv").is_file():
            return None
        return {"data": {"root": str(root), "split_file": str(root / "split-karpathy.json"),
                         "text_encoder": args.encoder}}
    if dataset == "wiki":
        return {"data": {"root": args.wiki}} if (Path(args.wiki) / "wikiData.mat").exists() else None
    return {}


def run_config(p: Point, dataset: str, bits: int, seed: int, base: dict, threads: int | None, sets: dict | None = None):
    """The config of one run: the point's method at its preset for ``dataset``, the point's
    settings and ``sets`` over it, the thread count and the training seed."""
    flat = {**p.overrides, **(sets or {})}
    c = build_config(p.method, PRESETS[dataset], bits, nest(flat) if flat else None, base)
    c.train.num_threads, c.train.seed = threads, seed
    return c


def reused_rows(specs: list[str], dataset: str, points: list[Point]) -> dict[tuple[str, int, int], dict]:
    """(row name, bits, seed) -> row taken from other results files. ``FILE:SECTION@DATASET``: for
    the rows that are a method at its preset (no settings of their own), that method's rows;
    ``FILE:SECTION@DATASET/N=NAME``: the rows named NAME stand for the row numbered N (a row whose
    settings reproduce a configuration measured before, e.g. DSPRH as first shipped)."""
    out = {}
    for spec in specs:
        where, _, target = spec.partition("@")
        ds, _, mapping = target.partition("/")
        file, _, section = where.partition(":")
        if ds != dataset:
            continue
        path = Path(file) if Path(file).is_file() else RESULTS / file
        rows = stored_rows(read_results(path), section)
        if mapping:
            number, _, name = mapping.partition("=")
            named = [(p, name) for p in points if p.name.split()[0] == number]
        else:
            named = [(p, p.method.upper()) for p in points if not p.overrides]
        for p, name in named:
            out.update({(p.name, b, s): dict(r, name=p.name) for (n, b, s), r in rows.items() if n == name})
    return out


def bench_dataset(dataset: str, base: dict, points: list[Point], bits: list[int], seeds: list[int], args,
                  old: dict) -> Report:
    out = Path(args.out) / dataset

    def cfg_for(p: Point, b: int, s: int):
        return run_config(p, dataset, b, s, base, args.threads, args.sets)

    t0 = time.time()
    inputs = prepare_inputs(cfg_for(points[0], bits[0], seeds[0]), with_maps=dataset != "wiki")
    print(f"[{dataset}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
    report = Report(f"{dataset}" + (f", text encoder {args.encoder}" if dataset == "ucm" else ""), inputs,
                    ("map", "map@50"))
    stored = stored_rows(old, dataset) | (reused_rows(args.reuse, dataset, points) if not args.sets else {})

    def run_one(run: Path, p: Point, b: int, s: int) -> None:
        row = stored.get((p.name, b, s))
        skip = args.collect or (args.rows is not None and p.name.split()[0] not in args.rows.split(","))
        if not (run / "metrics.json").exists() and (row is not None or skip):
            if row is not None:
                report.rows.append(row)  # measured before
            return
        run_into(report, p.name, cfg_for(p, b, s), run, inputs, resume=True, curves=False, seed=s)

    run_queue([(out / slug(p.name.lower()) / f"bits-{b}" / f"seed-{s}", p, b, s)
               for s in seeds for b in bits for p in points], run_one, wait_for_held=not args.collect)
    if not args.no_baselines and not args.path:
        report.add_baselines(bits, cca=True, seeds=seeds)
    if not args.no_baselines:
        report.write(out)
    return report


def main() -> None:
    ap = bench_parser(__doc__, "dsah,dsprh", "runs/bench-dsprh", datasets="ucm,synthetic,wiki")
    ap.add_argument("--path", action="store_true", help="the ablation path from DSAH to DSPRH (--spec)")
    ap.add_argument("--spec", default="dsprh-path", help="the sweep spec of the path (a file or a built-in name)")
    ap.add_argument("--ucm", default=DEFAULT_UCM, help="the UCM-captions folder")
    ap.add_argument("--encoder", default="words", help="UCM's text encoder (words | minilm)")
    ap.add_argument("--threads", type=int, default=None, help="train.num_threads (default: the free cores)")
    ap.add_argument("--results", default=None, help="the results file (default results/dsprh-path.json with "
                                                    "--path, else results/dsprh.json)")
    ap.add_argument("--reuse", action="append", default=[], metavar="FILE:SECTION@DATASET",
                    help="take a method's rows at its preset from another results file")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting for every run, e.g. backbone.finetune=true backbone.image_size=96")
    ap.add_argument("--rows", default=None, help="train only these rows of the path (their leading numbers, "
                                                  "e.g. 5,6,7); the others are read from finished runs")
    ap.add_argument("--no-baselines", action="store_true", help="train only (a helper worker)")
    ap.add_argument("--collect", action="store_true", help="train nothing: the tables from the finished runs")
    ap.set_defaults(bits=None)
    args = ap.parse_args()
    args.sets = parse_pairs(args.sets)
    if args.path:
        spec = load_spec(args.spec)
        points, bits = spec.points, [int(b) for b in args.bits.split(",")] if args.bits else spec.bits
        seeds = spec.seeds if args.seeds == "0,1,2" and spec.seeds else seeds_of(args)
    else:
        points = [Point(m.upper(), m, {}) for m in args.methods.split(",")]
        bits, seeds = [int(b) for b in (args.bits or "16,32,64,128").split(",")], seeds_of(args)
    results = Path(args.results or RESULTS / ("dsprh-path.json" if args.path else "dsprh.json"))
    old = read_results(results) if results.exists() else {}
    reports: dict = {}
    for ds in args.datasets.split(","):
        base = data_base(ds, args)
        if base is None:
            print(f"## {ds}: skipped (its data is absent; see --ucm / --wiki)")
            continue
        reports[ds] = bench_dataset(ds, base, points, bits, seeds, args, old)
    if args.no_baselines:
        return
    for ds, section in old.get("sections", {}).items():  # datasets not run now stay as they were
        reports.setdefault(ds, section)
    save_results(results, "bench_dsprh.py", reports, {"path": args.spec} if args.path else None)
    print(render_file(results))


if __name__ == "__main__":
    main()
