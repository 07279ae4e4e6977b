"""A store of N items (default 10M; both modalities, SQLite metadata) built, opened and searched,
each phase in its own process so that its peak memory is its own; codes drawn around a learned
model's outputs (``chunk_codes``). Tables to benchmarks/results/scale.json; benchmarks/README.md
says how each phase is measured.

    python benchmarks/bench_scale.py [--n 10000000] [--backends flat,ivf] [--keep]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from helpers import ROOT, kb, learned_model, parser, publish, timed

warnings.filterwarnings("ignore", message=".*pkg_resources.*")
CHUNK = 500_000


def seeds(model_dir: str):
    """Pre-sign image and text outputs (3000, 64) of the learned model."""
    from cmhash.model import load_model

    out, inputs = learned_model(model_dir)
    model = load_model(out, 64, "cpu")
    return model.encode_image(inputs.feat).numpy(), model.encode_text(inputs.data.texts).numpy()


def chunk_codes(h, t, start, n, seed=0):
    """Items [start, start + n): (image codes, text codes) packed, and each item's seed."""
    rng = np.random.default_rng([seed, start])
    s = rng.integers(0, len(h), n)
    img = h[s] + 0.1 * rng.standard_normal((n, h.shape[1]), dtype=np.float32) >= 0
    txt = t[s] + 0.1 * rng.standard_normal((n, t.shape[1]), dtype=np.float32) >= 0
    pack = lambda b: np.packbits(b, axis=1, bitorder="little")  # noqa: E731
    return pack(img), pack(txt), s


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def phase_build(args) -> dict:
    from cmhash.index.store import IndexStore

    h, t = seeds(args.model_dir)
    path = Path(args.out) / args.backend
    t0 = time.perf_counter()
    st = IndexStore.create(path, 64, args.backend, overwrite=True, commit=False, hold_lock=True)
    for start in range(0, args.n, CHUNK):
        m = min(CHUNK, args.n - start)
        img, txt, s = chunk_codes(h, t, start, m)
        items = [{"caption": f"photo {start + j} of scene {int(s[j])}", "labels": [f"scene-{int(s[j]) % 21}"]}
                 for j in range(m)]
        st.add(img, txt, items, ids=np.arange(start, start + m), commit=False)
    t_add = time.perf_counter() - t0
    st.commit()
    t_all = time.perf_counter() - t0
    info = st.info()
    st.close()
    return {"build_s": t_all, "commit_s": t_all - t_add, "rss_mb": peak_rss_mb(), "bytes_per_item": info["bytes_per_item"],
            "bytes": info["bytes_on_disk"], "search": info["search"]}


def phase_open(args) -> dict:
    """Open as a server or a CLI search does (files mapped, sizes and headers checked), then the
    first query and later ones, one at a time with metadata; then the open with every checksum
    read (``index info --verify``), for comparison."""
    from cmhash.index.store import IndexStore

    base = kb() / 1024
    st, t_open = timed(lambda: IndexStore.open(Path(args.out) / args.backend))
    rss_open = kb() / 1024
    q = np.random.default_rng(5).integers(0, 256, (21, st.bits // 8), dtype=np.uint8)
    lat = [timed(lambda j=j: st.search(q[j:j + 1], 10, target="image", source="text"))[1] for j in range(len(q))]
    n, rss_search = st.ntotal, kb() / 1024
    st.close()
    _, t_verify = timed(lambda: IndexStore.open(Path(args.out) / args.backend, verify=True).close())
    return {"open_s": t_open, "rss_before_mb": base, "rss_open_mb": rss_open, "first_search_s": lat[0],
            "later_search_s": float(np.median(lat[1:])), "rss_after_search_mb": rss_search,
            "open_verify_s": t_verify, "rss_mb": peak_rss_mb(), "items": n}


def phase_search(args) -> dict:
    from cmhash import kernels
    from cmhash.index.ivf import recall_at_k
    from cmhash.index.store import IndexStore

    h, t = seeds(args.model_dir)
    rng = np.random.default_rng(7)
    qs = rng.integers(0, len(h), args.queries)
    q_text = np.packbits(t[qs] >= 0, axis=1, bitorder="little")  # the model's text codes: cross-modal
    q_img = chunk_codes(h, t, 10**12, args.queries, seed=3)[0]  # new image copies: same-modal
    st = IndexStore.open(Path(args.out) / args.backend, verify=False)
    ix = st.indexes["image"]
    rows = {}
    (exact_d, _), te = timed(lambda: kernels.knn(ix.codes, q_text, 50))
    rows["text->image, exact scan (flat kernel)"] = {"qps": len(q_text) / te}
    if getattr(ix, "approximate", False):
        st.search(q_text[:10], 50, target="image", source="text")  # warm: the lists
        mode = st.search_mode("text", "image")
        d, ta = timed(lambda: ix.search(q_text, 50, nprobe=mode["nprobe"])[0])
        rows[f"text->image, ivf approximate (nprobe {mode['nprobe']})"] = {
            "qps": len(q_text) / ta, "recall": float(recall_at_k(exact_d, d).mean()),
            "recall_strict": float(recall_at_k(exact_d, d, strict=True).mean())}
        ix.search(q_img[:10], 50, exact=True)  # warm: MIH tables
        (dm, _), tm = timed(lambda: ix.search(q_img, 50, exact=True))
        (df, _), tf = timed(lambda: kernels.knn(ix.codes, q_img, 50))
        rows["image->image, exact scan (flat kernel)"] = {"qps": len(q_img) / tf}
        rows["image->image, exact MIH"] = {"qps": len(q_img) / tm, "identical": bool((dm == df).all())}
    (hits, tt) = timed(lambda: [st.search(q_text[j:j + 1], 10, target="image", source="text") for j in range(200)])
    rows["text->image, one query at a time with metadata (store.search, k=10)"] = {
        "qps": 200 / tt, "mode": {"approx": "approximate"}.get(st.search_mode("text", "image")["mode"], "exact")}
    st.close()
    return {"rows": rows, "rss_mb": peak_rss_mb()}


def run_phase(phase: str, args, backend: str) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--backend", backend, "--n", str(args.n), "--out", args.out,
           "--model-dir", args.model_dir, "--queries", str(args.queries)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{phase} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = parser(__doc__, "bench-scale")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--backends", default="flat,ivf")
    ap.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--model-dir", default=str(ROOT / "runs" / "bench-index" / "model"))
    ap.add_argument("--keep", action="store_true", help="keep the stores (deleted after the run otherwise)")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps({"build": phase_build, "open": phase_open, "search": phase_search}[args.phase](args)))
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    seeds(args.model_dir)  # train the seed model once, before any timed phase
    stores, searches = [], []
    for backend in args.backends.split(","):
        b, o, s = (run_phase(phase, args, backend) for phase in ("build", "open", "search"))
        stores.append([backend, f"{b['build_s']:.0f} ({b['commit_s']:.0f})", f"{b['rss_mb']:,.0f} MB",
                       f"{b['bytes_per_item']} B/item", f"{o['open_s']:.2f}",
                       f"{o['rss_open_mb']:,.0f} MB ({o['rss_before_mb']:,.0f})", f"{1e3 * o['first_search_s']:.1f} ms",
                       f"{1e3 * o['later_search_s']:.1f} ms", f"{o['rss_after_search_mb']:,.0f} MB",
                       f"{o['open_verify_s']:.1f} s"])
        for name, r in s["rows"].items():
            quality = (f"recall@50 {r['recall']:.3f} (strict {r['recall_strict']:.3f})" if "recall" in r else
                       f"exact (identical to the scan: {r['identical']})" if "identical" in r else r.get("mode", "exact"))
            searches.append([backend, name, f"{r['qps']:,.0f}", quality])
        if not args.keep:
            shutil.rmtree(Path(args.out) / backend, ignore_errors=True)
    n = f"{args.n / 1e6:g}M" if args.n >= 10**6 else f"{args.n:,}"
    publish(args.results / "scale.json", "store", f"A store of {n} items: build, open, first search",
            ["backend", "build s (commit s)", "build peak RSS", "on disk", "open s", "RSS after open (before)",
             "first search", "later searches", "RSS after searches", "open with `--verify`"], stores)
    publish(args.results / "scale.json", "search", f"A store of {n} items: search, {args.queries:,} queries per row",
            ["store", "path", "queries/s", "quality"], searches)


if __name__ == "__main__":
    main()
