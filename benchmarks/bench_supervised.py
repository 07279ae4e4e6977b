"""The supervised table in one run: DCMH, SSAH, UDSPH and SDEH, with the unsupervised DSPRH beside
them, at 16/32/64/128 bits on Wiki (wikiData.mat features, its own split) and on the embedded
dataset (rendered images through the pretrained EfficientNet-Lite0, conv maps cached; the
supervised protocol scaled to 3,000 items: 300 random queries, database = the rest, 1,500
training items from it). mAP, mAP@50 and NDCG@50 (graded by shared-label count) for I->T and T->I,
random codes as the floor.

    python benchmarks/bench_supervised.py [--datasets wiki,synthetic] [--wiki ../shared/data/wiki]
                                          [--bits 16,32,64,128] [--epochs-scale 1.0]
                                          [--epochs dsprh=40]
                                          [--out runs/bench-supervised] [--resume]

Every method uses its preset for the dataset (``cmhash/presets/*.yaml``) and every method, DSPRH
included, reads the same split and the same cached features; model selection is on a validation
part of the training set. ``--epochs-scale`` multiplies every preset's epochs (a quicker look);
``--epochs m=N,...`` sets one method's epochs (the default runs DSPRH for 40 epochs on both sets,
half its Wiki preset, to keep the whole run near an hour on 2 cores).
Wiki is skipped (with a note) when its file is absent.
"""
from __future__ import annotations

import time
from pathlib import Path

from cmhash.config import build_config
from cmhash.presets import load_preset
from cmhash.data.inputs import prepare_inputs, reads_maps
from cmhash.eval.report import Report
from common import bench_parser, finish_dataset, run_datasets, seeds_of
from cmhash.train.protocol import run_into

METHODS = ("dcmh", "ssah", "udsph", "sdeh", "dsprh")
METRICS = ("map", "map@50", "ndcg@50")


def bench_dataset(dataset: str, root: str | None, bits: list[int], methods: list[str], out: Path, resume: bool,
                  epochs_scale: float, epochs: dict[str, int], seeds: list[int]) -> Report:
    base = {"data": {"root": root}} if root else {}
    split = load_preset("dcmh", dataset).get("data", {})  # the supervised protocol, for DSPRH too

    def cfg_for(m, b):
        c = build_config(m, dataset, b, {"data": dict(split)}, base)
        c.train.epochs = max(1, round(epochs.get(m, c.train.epochs) * epochs_scale))
        c.train.eval_every = min(c.train.eval_every, c.train.epochs)
        return c

    built = [(m, b, cfg_for(m, b)) for m in methods for b in bits]
    t0 = time.time()
    # one input for all: pooled features, and conv maps for the methods that read them
    inputs = prepare_inputs(built[0][2], with_maps=any(reads_maps(c) for _, _, c in built))
    print(f"[{dataset}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
    report = Report(dataset, inputs, METRICS)
    for s in seeds:
        for m, b, cfg in built:
            cfg.train.seed = s
            name = m.upper() + (" (unsupervised)" if m == "dsprh" else "")
            run_into(report, name, cfg, out / dataset / f"{m}-{b}" / f"seed-{s}", inputs, resume=resume,
                     curves=b == max(bits) and s == seeds[0], seed=s)
    return finish_dataset(report, bits, out / dataset, cca=True, seeds=seeds)


def main() -> None:
    ap = bench_parser(__doc__, ",".join(METHODS), "runs/bench-supervised", results="supervised.json")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--epochs", default="dsprh=40", help="per-method epochs, e.g. dsprh=40,dcmh=100 ('' for presets)")
    args = ap.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    epochs = {k: int(v) for k, v in (p.split("=") for p in args.epochs.split(",") if p.strip())}
    title = "Supervised cross-modal hashing: DCMH, SSAH, UDSPH, SDEH (and DSPRH, unsupervised)"
    run_datasets(args.datasets, args.wiki, title, Path(args.out),
                 lambda ds, root: bench_dataset(ds, root, bits, args.methods.split(","), Path(args.out), args.resume,
                                                args.epochs_scale, epochs, seeds_of(args)),
                 args.results, "bench_supervised.py")

if __name__ == "__main__":
    main()
