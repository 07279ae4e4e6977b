"""Real photos: UCM-captions (2,100 aerial photos of the UC Merced Land Use set, 21 classes, 5
English captions each) with the captioning community's split (queries = test + val, 420;
training = database = train, 1,680), in one run:

- all seven methods x 16/32/64/128 bits x text encoders {words, minilm}, beside CCA hashing and
  random codes computed in the same run on the same split; mAP and mAP@50, I->T and T->I;
- a short-query table: each of the 21 class names typed as a free-text query ("tennis court",
  "river", ...), text -> image over the database, precision@10 of that class, per encoder and method.

    python benchmarks/bench_ucm.py [--data ../shared/data/ucm-captions] [--bits 16,32,64,128]
                                   [--methods djsrh,dsah,dsprh,dcmh,ssah,udsph,sdeh]
                                   [--encoders words,minilm] [--query-bits 64]
                                   [--out runs/bench-ucm] [--resume] [--threads N]

Two processes can share the work (``--encoders words --threads 1`` and ``--encoders minilm
--threads 1`` into one ``--out``); a last ``--resume`` run with both encoders then reads the
finished runs and writes the joint tables.

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
from cmhash.utils import CmhashError, write_text_atomic
from common import bench_parser, finish_dataset
from cmhash.train.protocol import run_into

DEFAULT_UCM = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ucm-captions")
METHODS = ("djsrh", "dsah", "dsprh", "dcmh", "ssah", "udsph", "sdeh")
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


def main() -> None:
    ap = bench_parser(__doc__, ",".join(METHODS), "runs/bench-ucm", datasets=None)
    ap.add_argument("--encoders", default="words,minilm")
    ap.add_argument("--query-bits", type=int, default=64, help="code length of the short-query table")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None, help="train.num_threads (default: the free cores)")
    ap.set_defaults(wiki=DEFAULT_UCM)
    args = ap.parse_args()
    root, out = Path(args.wiki), Path(args.out)
    if not (root / "captions.tsv").is_file():
        raise SystemExit(f"{root}: no captions.tsv (UCM-captions in the folder format); give --data")
    bits = [int(b) for b in args.bits.split(",")]
    methods, encoders = args.methods.split(","), args.encoders.split(",")
    sections, short = [], {}
    for enc in encoders:
        base = {"data": {"root": str(root), "split_file": str(root / "split-karpathy.json"), "text_encoder": enc}}

        def cfg_for(m, b):
            c = build_config(m, "folder", b, None, base)
            c.train.epochs = max(1, round(c.train.epochs * args.epochs_scale))
            c.train.num_threads = args.threads
            return c

        t0 = time.time()
        inputs = prepare_inputs(cfg_for(methods[0], bits[0]), with_maps=True)
        print(f"[ucm {enc}] {inputs.info} ({time.time() - t0:.0f}s)", flush=True)
        report = Report(f"UCM-captions, text encoder {enc}", inputs, ("map", "map@50"))
        for m in methods:
            for b in bits:
                run = out / enc / f"{m}-{b}"
                run_into(report, m.upper(), cfg_for(m, b), run, inputs, resume=args.resume, curves=False)
                if b == args.query_bits:
                    try:
                        short[(enc, m)] = class_name_precision(run, inputs)
                    except CmhashError as e:
                        print(f"  short queries skipped: {e}")
        sections.append(finish_dataset(report, bits, out / enc, cca=True))
    text = ("# UCM-captions: seven methods, two text encoders\n\n" + "\n\n".join(sections)
            + f"\n\n## Class names as free-text queries (text -> image, precision@10, {args.query_bits} bits)\n\n"
            + short_query_table(short, encoders, methods))
    print("\n" + text)
    write_text_atomic(out / "results.md", text)


if __name__ == "__main__":
    main()
