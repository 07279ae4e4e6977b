"""Search benchmarks, every comparison side by side in one process, interleaved (quote ratios):
exact (the flat kernel on every CPU path vs faiss), search (MIH, ivf, faiss IVF / HNSW, Milvus on
learned codes of distinct items, recall@50), metrics (vs the community's per-query loop), milvus
(milvus-lite), memory (bytes per item). Tables to benchmarks/results/index.json; benchmarks/README.md
says how each is measured.

    python benchmarks/bench_index.py [--sections exact,search,metrics,milvus,memory] [--quick]
"""
from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np

from cmhash import kernels
from cmhash.index import make_index
from helpers import ROOT, SHARED, learned_model, parser, publish, rand_codes, timed

warnings.filterwarnings("ignore", message=".*pkg_resources.*")
SIZE = {20_000: "20k", 200_000: "200k", 1_000_000: "1M", 10_000_000: "10M"}


def bench_exact(args):
    import faiss

    faiss.omp_set_num_threads(args.threads)
    cases = [(b, n) for b in (32, 64, 128) for n in ([20_000, 200_000] if args.quick else [20_000, 200_000, 1_000_000])]
    cases += [] if args.quick or args.no_10m else [(64, 10_000_000)]
    level = kernels._C.cpu_level() if kernels._C is not None else 0
    paths = [name for name, lv in kernels.LEVELS.items() if lv <= level]  # scalar, avx2, avx512 as the CPU has
    cells, ratios = [], {}
    for bits, n in cases:
        db, q = rand_codes(n, bits, 1), rand_codes(args.queries, bits, 2)
        ix = faiss.IndexBinaryFlat(bits)
        ix.add(db)
        qps, answers = {p: [] for p in paths + ["faiss"]}, {}
        for _ in range(args.repeats if n < 10_000_000 else max(1, args.repeats - 1)):  # interleaved
            for p in paths:
                with mock.patch.dict(os.environ, {"CMHASH_KERNEL": p}):  # the kernels read it per call
                    answers[p], t = timed(lambda: kernels.knn(db, q, 50, args.threads))
                qps[p].append(len(q) / t)
            answers["faiss"], t = timed(lambda: ix.search(q, 50))
            qps["faiss"].append(len(q) / t)
        ref = answers[paths[0]]  # distances equal everywhere; rows between cmhash's paths (faiss orders ties its way)
        equal = all((a[0] == ref[0]).all() for a in answers.values()) and all((answers[p][1] == ref[1]).all() for p in paths)
        if n <= 200_000:
            (d3, i3) = kernels.knn_numpy(db, q[:200], 50)
            equal = equal and bool((d3 == ref[0][:200]).all() and (i3 == ref[1][:200]).all())
        assert equal, f"the paths disagree at {bits} bits, N {n}"
        m = {p: statistics.median(v) for p, v in qps.items()}
        ratios[bits, n] = {p: m[p] / m["faiss"] for p in paths}
        cells.append([bits, SIZE[n], f"{m['faiss']:,.0f}", *(f"{m[p]:,.0f} ({m[p] / m['faiss']:.2f}x)" for p in paths)])
    names = {"scalar": "scalar", "avx2": "AVX2", "avx512": "AVX-512"}
    publish(args.results / "index.json", "exact", "Exact top-50, 2,000 queries, random codes: faiss IndexBinaryFlat and every cmhash "
            f"path ({args.threads} threads each)", ["bits", "N", "faiss q/s", *(f"{names[p]} q/s (: faiss)" for p in paths)],
            cells)
    if not args.quick:
        publish(args.results / "index.json", "exact-ratios", "Exact scan : faiss IndexBinaryFlat at 200k / 1M codes",
                ["bits", *(names[p] + (" popcnt" if p == "scalar" else "") for p in paths)],
                [[b, *(f"{ratios[b, 200_000][p]:.2f}x / {ratios[b, 1_000_000][p]:.2f}x"
                       if p != "avx512" or b % 64 == 0 else "(AVX2 path)" for p in paths)] for b in (32, 64, 128)])


# --- learned codes ----------------------------------------------------------------------------
def distinct_codes(args, n_db, seed=0):
    """Learned 64-bit codes of distinct items, packed: (database (n_db, 8), {query set: codes}, distinct codes).

    The database is the bench DJSRH model's text codes of ``n_db`` new texts drawn as the embedded
    dataset's are (``synthetic_texts``: labels, then tags; no images, so a million encode in about
    a minute): distinct items, as a real collection holds, not copies of a few thousand. Cross-modal
    queries are the model's image codes of the embedded items (an image finding its texts);
    same-modal queries are text codes of other new texts."""
    import torch

    from cmhash.data.synthetic import synthetic_texts
    from cmhash.model import load_model

    out, inputs = learned_model(args.model_dir)
    model = load_model(out, 64, "cpu")
    pack = lambda x: np.ascontiguousarray(np.packbits(x >= 0, axis=1, bitorder="little"))  # noqa: E731

    def text_codes(n, s):
        parts = []
        for start in range(0, n, 100_000):
            t, _ = synthetic_texts(min(100_000, n - start), seed=s * 1000 + start // 100_000)
            with torch.inference_mode():
                parts.append(pack(model.encode_text(t).numpy()))
        return np.concatenate(parts)

    db = text_codes(n_db, seed + 1)
    rng = np.random.default_rng(seed)
    with torch.inference_mode():
        img = pack(model.encode_image(inputs.feat).numpy())
    qi = np.ascontiguousarray(img[rng.choice(len(img), args.queries, replace=len(img) < args.queries)])
    qt = text_codes(args.queries, seed + 2)
    distinct = len(np.unique(db.view(np.uint64)))
    return db, {"image → text": qi, "text → text": qt}, distinct


def faiss_ivf(db, nlist):
    import faiss

    ix = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, nlist)
    ix.train(db[np.random.default_rng(0).choice(len(db), min(len(db), 64 * nlist), replace=False)])
    ix.add(db)
    return ix


def milvus_ivf(args, db, nlist):
    """BIN_IVF_FLAT on a real Milvus server (the milvus package's embedded standalone), indexed."""
    from milvus import MilvusServer

    srv = MilvusServer()
    srv.set_base_dir(str(Path(args.out) / "milvus-server"))
    srv.start()
    uri = f"http://{srv.server_address}:{srv.listen_port}"
    ix = make_index("milvus", 64, uri=uri, collection="bench", index_type="BIN_IVF_FLAT", nlist=nlist, overwrite=True)
    ix.add(db)
    ix._c.flush("bench")
    for _ in range(600):  # wait until the sealed segment is indexed, then load that index
        info = ix._c.describe_index("bench", "code")
        if info.get("indexed_rows", 0) >= len(db) and not info.get("pending_index_rows", 0):
            break
        time.sleep(1)
    ix._c.release_collection("bench")
    ix._c.load_collection("bench")
    return srv, ix


def bench_search(args):
    import faiss

    from cmhash.index.ivf import calibrate, recall_at_k

    faiss.omp_set_num_threads(args.threads)
    sizes = [200_000] if args.quick else [200_000, 1_000_000]
    for n in sizes:
        cells, (db, qsets, distinct) = [], distinct_codes(args, n)
        print(f"{n:,} codes, {distinct:,} distinct", flush=True)
        flat, mih, ivf = (make_index(b, 64, threads=args.threads) for b in ("flat", "mih", "ivf"))
        fx = faiss.IndexBinaryFlat(64)
        for ix in (flat, mih, ivf, fx):
            ix.add(db)
        ivf.prepare()
        fivf = faiss_ivf(db, ivf.n_lists)
        hnsw = faiss.IndexBinaryHNSW(64, 32) if n <= 200_000 else None
        if hnsw is not None:
            hnsw.hnsw.efConstruction = 64
            hnsw.add(db)
        srv = mil = None
        if not args.no_milvus_server:
            try:
                srv, mil = milvus_ivf(args, db, 1024)
            except ImportError:
                print("(the milvus package is not installed: no Milvus server rows)", flush=True)
        for qname, qall in qsets.items():
            half = len(qall) // 2  # nprobe is chosen on one half of the queries, everything measured on the other
            q_cal, q = qall[:half], qall[half:]
            exact_d = flat.search(q, 50)[0]
            label = f"{qname} (50th at {exact_d[:, -1].mean():.1f} bits)"
            rows, base = [], None
            runs = [("exhaustive, cmhash flat", lambda: flat.search(q, 50)),
                    ("exhaustive, faiss IndexBinaryFlat", lambda: fx.search(q, 50)),
                    (f"MIH (m = {len(mih.substrings)})", lambda: mih.search(q, 50))]
            chosen = calibrate(ivf, q_cal, k=50, target=0.95)["nprobe"]
            for npr in sorted({16, 32, 64, chosen}):
                runs.append((f"ivf (nlist {ivf.n_lists}, nprobe {npr}{', chosen' if npr == chosen else ''})",
                             lambda npr=npr: ivf.search(q, 50, nprobe=npr)))
            for npr in (16, 32, 64):
                runs.append((f"faiss IndexBinaryIVF (nlist {ivf.n_lists}, nprobe {npr})",
                             lambda npr=npr: (setattr(fivf, "nprobe", npr), fivf.search(q, 50))[1]))
            for ef in (64, 256) if hnsw is not None else ():
                runs.append((f"faiss IndexBinaryHNSW (M 32, efSearch {ef})",
                             lambda ef=ef: (setattr(hnsw.hnsw, "efSearch", ef), hnsw.search(q, 50))[1]))
            for npr in (16, 64) if mil is not None else ():
                runs.append((f"Milvus server BIN_IVF_FLAT (nlist 1024, nprobe {npr})",
                             lambda npr=npr: (setattr(mil, "nprobe", npr), mil.search(q, 50))[1]))
            times, answers = {name: [] for name, _ in runs}, {}
            for _ in range(args.repeats):  # interleaved
                for name, fn in runs:
                    answers[name], t = timed(fn)
                    times[name].append(t)
            for name, _ in runs:
                t, d = statistics.median(times[name]), answers[name][0]
                base = base or len(q) / t
                exact = name.startswith(("exhaustive", "MIH"))
                rows.append([label if not rows else "", name, f"{len(q) / t:,.0f}", f"{len(q) / t / base:.1f}x",
                             *(("exact", "exact") if exact else (f"{recall_at_k(exact_d, d).mean():.3f}",
                                                                 f"{recall_at_k(exact_d, d, strict=True).mean():.3f}"))])
            cells += rows
        if srv is not None:
            mil.close()
            srv.stop()
        publish(args.results / "index.json", "search" if n == sizes[-1] else f"search-{SIZE[n]}",
                f"Cross-modal and same-modal top-50, learned 64-bit codes of {SIZE[n]} distinct items ({distinct:,} "
                "distinct codes)", ["queries", "method", "q/s", "x exhaustive", "recall@50", "strict"], cells)


def community_loop(qB, rB, qL, rL, topk):
    """DJSRH metric.py, as written, except a stable argsort so that ties agree with ours."""
    num_query = qL.shape[0]
    full = top = 0.0
    for it in range(num_query):
        gnd = (np.dot(qL[it], rL.T) > 0).astype(np.float32)
        hamm = 0.5 * (rB.shape[1] - np.dot(qB[it], rB.T))
        gnd = gnd[np.argsort(hamm, kind="stable")]
        tsum = int(gnd.sum())
        if tsum:
            full += np.mean(np.linspace(1, tsum, tsum) / (np.flatnonzero(gnd == 1) + 1.0))
        tg = gnd[:topk]
        ts = int(tg.sum())
        if ts:
            top += np.mean(np.linspace(1, ts, ts) / (np.flatnonzero(tg == 1) + 1.0))
    return {"map": full / num_query, f"map@{topk}": top / num_query}


def labels(n, rng):
    lall = SHARED / "mirflickr25k" / "mirflickr25k-lall.mat"
    if lall.exists():
        import scipy.io

        lab = scipy.io.loadmat(lall)["LAll"].astype(np.float32)
        return lab[rng.permutation(len(lab))[:n]], "MIRFlickr LAll (real)"
    lab = (rng.random((n, 24)) < 0.12).astype(np.float32)
    return lab, "random multi-hot, 24 classes"


def label_codes(lab, k, rng):
    """{-1,+1} codes correlated with the labels, like trained ones (many ties at short lengths)."""
    proj = rng.normal(size=(lab.shape[1], k))
    return np.where(lab @ proj + rng.normal(scale=1.5, size=(len(lab), k)) >= 0, 1, -1).astype(np.int8)


def bench_metrics(args):
    from cmhash.eval import evaluate_retrieval

    rng = np.random.default_rng(0)
    lab, src = labels(2000 + 18015, rng)
    ql, dl = lab[:2000], lab[2000:]
    cells = []
    for k in args.metric_bits:
        codes = label_codes(lab, k, rng)
        q, db = codes[:2000], codes[2000:]
        ours = [timed(lambda: evaluate_retrieval(q, db, ql, dl, topk=50, tie_averaged=True)) for _ in range(args.repeats)]
        ref, tl = timed(lambda: community_loop(q.astype(np.float32), db.astype(np.float32), ql, dl, 50))
        r, m = ours[-1][0], statistics.median(t for _, t in ours)
        same = abs(r["map"] - ref["map"]) < 1e-9 and abs(r["map@50"] - ref["map@50"]) < 1e-9
        cells.append([k, f"{m:.3f}", f"{tl:.2f}", f"{tl / m:.0f}x", f"{'yes' if same else 'NO'} (mAP {r['map']:.4f})"])
    publish(args.results / "index.json", "metrics", f"Metrics: 2,000 queries x 18,015 items, labels: {src}",
            ["bits", "cmhash mAP + mAP@50 + tie-averaged mAP (s)", "community loop, mAP + mAP@50 (s)", "speed-up",
             "same numbers"], cells)


def bench_milvus(args):
    cells, path = [], Path(args.out) / "milvus"
    for n in [20_000] if args.quick else [20_000, 200_000]:
        db, qsets, _ = distinct_codes(args, n)
        q = qsets["image → text"][:1000]
        ix = make_index("milvus", 64, uri=str(path / f"m{n}.db"), collection=f"bench{n}", overwrite=True)
        flat = make_index("flat", 64)
        _, ti = timed(lambda: ix.add(db))
        flat.add(db)
        (md, mi), tm = timed(lambda: ix.search(q, 50))
        (fd, fi), tf = timed(lambda: flat.search(q, 50))
        assert (md == fd).all() and (mi == fi).all(), "Milvus and the exact scan disagree"
        ix.close()
        cells.append([SIZE[n], f"{n / ti:,.0f}", f"{len(q) / tm:,.0f}", f"{len(q) / tf:,.0f}"])
    publish(args.results / "index.json", "milvus", "Milvus-lite (BIN_FLAT, HAMMING), 64-bit learned codes, 1,000 queries",
            ["N", "insert rows/s", "Milvus q/s", "flat q/s"], cells)


def bench_memory(args):
    import tracemalloc

    n = 200_000 if args.quick else 1_000_000
    db, _, _ = distinct_codes(args, n)
    cells = []
    for backend in ("flat", "mih", "ivf", "faiss"):
        tracemalloc.start()
        ix = make_index(backend, 64)
        ix.add(db)
        if backend in ("mih", "ivf"):
            ix._build()
            getattr(ix, "prepare", lambda: None)()
        mem = tracemalloc.get_traced_memory()[0] + (ix._index.ntotal * 8 if backend == "faiss" else 0)  # faiss's own
        tracemalloc.stop()
        p = ix.save(Path(args.out) / f"mem-{backend}.cmhidx")
        cells.append([backend, f"{mem / n:.0f} B", f"{p.stat().st_size / n:.0f} B"])
        p.unlink()
    demo = ROOT / "cmhash-demo" / "index"
    if (demo / "manifest.json").exists():
        from cmhash.index.store import IndexStore

        cells.append(["whole demo store (2 modalities + SQLite captions)", "-",
                      f"{IndexStore.open(demo).info()['bytes_per_item']:.0f} B"])
    publish(args.results / "index.json", "memory", "Memory and file size per item, 64-bit codes", ["backend", "memory", "file"], cells)


def main():
    ap = parser(__doc__, "bench-index", "exact,search,metrics,milvus,memory")
    ap.add_argument("--no-milvus-server", action="store_true", help="no Milvus server rows in the search section")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--no-10m", action="store_true", help="skip the 10M-code case")
    ap.add_argument("--metric-bits", default="64,128", type=lambda v: [int(b) for b in v.split(",")])
    ap.add_argument("--model-dir", default=str(ROOT / "runs" / "bench-index" / "model"),
                    help="where the DJSRH model for learned codes is trained (once) and read")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for s in args.sections.split(","):
        {"exact": bench_exact, "search": bench_search, "metrics": bench_metrics, "milvus": bench_milvus,
         "memory": bench_memory}[s](args)


if __name__ == "__main__":
    main()
