"""Search benchmarks, every comparison side by side in one process (ratios are what to quote;
absolute times on shared 2-core machines are noisy). Sections:

  exact    exact top-50 for 2,000 queries: cmhash's flat kernel on every path this CPU has (scalar
           popcnt, AVX2, AVX-512; CMHASH_KERNEL forces each) vs faiss IndexBinaryFlat (and the
           numpy reference at the small sizes), random codes, 32/64/128 bits, N = 20k/200k/1M and
           10M at 64 bits; interleaved repeats, median (min-max) queries/s; results checked equal.
  search   cross-modal and same-modal top-50 on learned 64-bit codes of distinct items (a DJSRH
           model's text codes of new synthetic texts; its image codes as queries), 200k and 1M:
           exhaustive (ours, faiss), multi-index hashing, cmhash's ivf at several nprobe and at the
           nprobe chosen on other queries, faiss IndexBinaryIVF and IndexBinaryHNSW, Milvus
           BIN_IVF_FLAT on a real server; recall@50 against the exact answer.
  metrics  mAP + mAP@50 (+ tie-averaged) for 2,000 x 18,015 against the community's per-query loop.
  milvus   milvus-lite (BIN_FLAT, HAMMING): insert and search throughput, agreement with exact.
  memory   bytes per item in memory and on disk for each backend and for a whole store.

The server under load is benchmarks/bench_service.py; a 10M-item store, benchmarks/bench_scale.py.

    python benchmarks/bench_index.py [--sections exact,search,metrics,milvus,memory] [--quick]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from cmhash import kernels
from cmhash.index import make_index
from cmhash.kernels import kernel_name
from cmhash.utils import write_json_atomic, write_text_atomic

warnings.filterwarnings("ignore", message=".*pkg_resources.*")
ROOT = Path(__file__).resolve().parents[1]


def med(xs):
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"


def timed(fn, reps=1):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def rand_codes(n, bits, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


# --- exact ------------------------------------------------------------------------------------
def cpu_paths():
    """The flat scan's paths this CPU has, fastest last: scalar popcnt, AVX2, AVX-512 VPOPCNTDQ."""
    level = kernels._C.cpu_level() if kernels._C is not None else 0
    return [name for name, lv in kernels.LEVELS.items() if lv <= level]


def forced(path):
    """A callable context: CMHASH_KERNEL=path for the calls inside (the kernels read it per call)."""
    import contextlib
    import os

    @contextlib.contextmanager
    def ctx():
        old = os.environ.get("CMHASH_KERNEL")
        os.environ["CMHASH_KERNEL"] = path
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("CMHASH_KERNEL", None)
            else:
                os.environ["CMHASH_KERNEL"] = old
    return ctx()


def bench_exact(args, res):
    """Every path this CPU has (forced with CMHASH_KERNEL) and faiss IndexBinaryFlat, interleaved
    in one process: the AVX2 column is what an AVX2-only CPU runs (scalar popcnt where it has
    neither)."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = [20_000, 200_000] if args.quick else [20_000, 200_000, 1_000_000]
    cases = [(b, n) for b in (32, 64, 128) for n in sizes]
    if not args.quick and not args.no_10m:
        cases.append((64, 10_000_000))
    paths = cpu_paths()
    rows = ["| bits | N | faiss IndexBinaryFlat q/s | " + " | ".join(f"cmhash {p} q/s | {p} : faiss" for p in paths)
            + " | numpy reference q/s | equal |",
            "|---|---|---|" + "---|---|" * len(paths) + "---|---|"]
    out = []
    for bits, n in cases:
        db, q = rand_codes(n, bits, 1), rand_codes(args.queries, bits, 2)
        qps = {p: [] for p in paths + ["faiss"]}
        ix = faiss.IndexBinaryFlat(bits)
        ix.add(db)
        reps = args.repeats if n < 10_000_000 else max(1, args.repeats - 1)
        answers = {}
        for _ in range(reps):  # interleaved
            for p in paths:
                with forced(p):
                    answers[p], t = timed(lambda: kernels.knn(db, q, 50, args.threads))
                qps[p].append(len(q) / t)
            answers["faiss"], t = timed(lambda: ix.search(q, 50))
            qps["faiss"].append(len(q) / t)
        ref = answers[paths[0]]
        # distances equal everywhere; rows equal between cmhash's paths (faiss orders ties its own way)
        equal = all((answers[p][0] == ref[0]).all() for p in answers) and all(
            (answers[p][1] == ref[1]).all() for p in paths)
        naive = "-"
        if n <= 200_000:
            nq = 200 if n == 200_000 else 500
            (d3, i3), t3 = timed(lambda: kernels.knn_numpy(db, q[:nq], 50))
            naive = f"{nq / t3:,.0f}"
            equal = equal and bool((d3 == ref[0][:nq]).all() and (i3 == ref[1][:nq]).all())
        f = statistics.median(qps["faiss"])
        ratios = {p: statistics.median(qps[p]) / f for p in paths}
        rows.append(f"| {bits} | {n:,} | {med(qps['faiss'])} | "
                    + " | ".join(f"{med(qps[p])} | {ratios[p]:.2f}x" for p in paths) + f" | {naive} | {equal} |")
        print(rows[-1], flush=True)
        out.append({"bits": bits, "n": n, "faiss_qps": qps["faiss"], **{f"{p}_qps": qps[p] for p in paths},
                    "ratio": {p: ratios[p] for p in paths}, "numpy_qps": naive, "equal": equal})
    res["exact"] = out
    return ("## Exact top-50, 2,000 queries, random codes, "
            f"{args.threads} threads each (default path here: {kernels.kernel_variant()})\n\n" + "\n".join(rows))


# --- learned codes ----------------------------------------------------------------------------
def learned_model(args):
    """A DJSRH 64-bit model on the embedded dataset (trained here once, then reused)."""
    from cmhash.config import build_config
    from cmhash.data.inputs import prepare_inputs
    from cmhash.train import run_experiment

    out = Path(args.model_dir)
    cfg = build_config("djsrh", "synthetic", 64, {}, {"backbone": {"cache_dir": str(ROOT / ".cache" / "cmhash")}})
    inputs = prepare_inputs(cfg)
    if not (out / "bits-64" / "metrics.json").exists():
        print("training DJSRH 64 bits on the embedded dataset for learned codes ...", flush=True)
        run_experiment(cfg, out / "bits-64", inputs, resume=True, progress=False, curves=False)
    return out, inputs


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

    out, inputs = learned_model(args)
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
    return db, {"image->text (cross-modal)": qi, "text->text (same-modal)": qt}, distinct


def faiss_ivf(db, nlist):
    import faiss

    quant = faiss.IndexBinaryFlat(64)
    ix = faiss.IndexBinaryIVF(quant, 64, nlist)
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


def bench_search(args, res):
    """Same-modal and cross-modal top-50 on learned codes: exhaustive (ours, faiss), MIH, ivf,
    faiss IndexBinaryIVF and HNSW, Milvus BIN_IVF_FLAT on a server; recall against the exact answer."""
    import faiss

    from cmhash.index.ivf import calibrate, default_nlist, recall_at_k

    faiss.omp_set_num_threads(args.threads)
    sizes = [200_000] if args.quick else [200_000, 1_000_000]
    rows = ["| N | queries | k-th distance | method | q/s | x exhaustive (ours) | recall@50 | strict recall |",
            "|---|---|---|---|---|---|---|---|"]
    out = []

    def row(n, qname, kth, name, qps, base, rec=None, strict=None):
        rows.append(f"| {n:,} | {qname} | {kth:.1f} | {name} | {qps:,.0f} | {qps / base:.1f}x | "
                    + (f"{rec:.3f} | {strict:.3f} |" if rec is not None else "exact | exact |"))
        print(rows[-1], flush=True)
        out.append({"n": n, "queries": qname, "kth": kth, "method": name, "qps": float(qps), "speedup": float(qps / base),
                    "recall": None if rec is None else float(rec), "recall_strict": None if strict is None else float(strict)})

    for n in sizes:
        db, qsets, distinct = distinct_codes(args, n)
        print(f"{n:,} codes, {distinct:,} distinct", flush=True)
        flat = make_index("flat", 64, threads=args.threads)
        flat.add(db)
        fx = faiss.IndexBinaryFlat(64)
        fx.add(db)
        mih = make_index("mih", 64, threads=args.threads)
        mih.add(db)
        nlist = default_nlist(n)
        ivf = make_index("ivf", 64, threads=args.threads)
        ivf.add(db)
        _, t_build = timed(ivf.prepare)
        fivf = faiss_ivf(db, nlist)
        hnsw = None
        if n <= 200_000:
            hnsw = faiss.IndexBinaryHNSW(64, 32)
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
            times = {"flat": [], "faiss": [], "mih": []}
            for _ in range(args.repeats):  # interleaved
                (exact_d, exact_i), a = timed(lambda: flat.search(q, 50))
                _, b = timed(lambda: fx.search(q, 50))
                (md, mi), c = timed(lambda: mih.search(q, 50))
                times["flat"].append(len(q) / a)
                times["faiss"].append(len(q) / b)
                times["mih"].append(len(q) / c)
            base = statistics.median(times["flat"])
            kth = float(exact_d[:, -1].mean())
            row(n, qname, kth, "exhaustive, cmhash flat", base, base)
            row(n, qname, kth, "exhaustive, faiss IndexBinaryFlat", statistics.median(times["faiss"]), base)
            row(n, qname, kth, f"MIH (exact, m={len(mih.substrings)})", statistics.median(times["mih"]), base)
            chosen = calibrate(ivf, q_cal, k=50, target=0.95)["nprobe"]
            for npr in sorted({16, 32, 64, chosen}):
                ts = []
                for _ in range(args.repeats):
                    (d, _), t = timed(lambda: ivf.search(q, 50, nprobe=npr))
                    ts.append(len(q) / t)
                how = f"nprobe {npr}" + (", chosen on the other half for recall .95" if npr == chosen else "")
                row(n, qname, kth, f"ivf, cmhash (nlist {ivf.n_lists}, {how})", statistics.median(ts), base,
                    recall_at_k(exact_d, d).mean(), recall_at_k(exact_d, d, strict=True).mean())
            for npr in (16, 32, 64):
                fivf.nprobe = npr
                (d, _), t = timed(lambda: fivf.search(q, 50))
                row(n, qname, kth, f"faiss IndexBinaryIVF (nlist {nlist}, nprobe {npr})", len(q) / t, base,
                    recall_at_k(exact_d, d).mean(), recall_at_k(exact_d, d, strict=True).mean())
            if hnsw is not None:
                for ef in (64, 256):
                    hnsw.hnsw.efSearch = ef
                    (d, _), t = timed(lambda: hnsw.search(q, 50))
                    row(n, qname, kth, f"faiss IndexBinaryHNSW (M 32, efSearch {ef})", len(q) / t, base,
                        recall_at_k(exact_d, d).mean(), recall_at_k(exact_d, d, strict=True).mean())
            if mil is not None:
                for npr in (16, 64):
                    mil.nprobe = npr
                    (d, _), t = timed(lambda: mil.search(q[:500], 50))
                    row(n, qname, kth, f"Milvus 2.3.5 server BIN_IVF_FLAT (nlist 1024, nprobe {npr})", 500 / t, base,
                        recall_at_k(exact_d[:500], d).mean(), recall_at_k(exact_d[:500], d, strict=True).mean())
        if srv is not None:
            mil.close()
            srv.stop()
        out.append({"n": n, "ivf_build_s": t_build, "distinct": distinct})
    res["search"] = out
    return ("## Cross-modal and same-modal top-50, learned 64-bit codes of distinct items\n\n"
            "Database: a DJSRH model's text codes of N new texts drawn as the embedded dataset's are (distinct "
            "items; the distinct codes are counted above each size). Image queries are the model's image codes of "
            "the embedded items (cross-modal); text queries are text codes of other new texts (same-modal). Each "
            "query set is cut in two: ivf's nprobe is chosen on the first half (the smallest reaching recall@50 "
            ".95), and every row is measured on the second half. 'x exhaustive': q/s over cmhash's exhaustive "
            "scan in the same run. recall@50: "
            "returned codes within the exact 50th distance (as ann-benchmarks counts it); strict: the exact "
            "distances matched as multisets. The Milvus server answers over gRPC in batches of 256 (500 queries). "
            "ivf's lists are trained once; its distances are exact.\n\n" + "\n".join(rows))


def bench_metrics(args, res):
    """mAP + mAP@50 for 2,000 x 18,015 (MIRFlickr's protocol sizes): cmhash vs the community loop."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_metrics import community_loop, label_codes, labels

    from cmhash.eval import evaluate_retrieval

    rng = np.random.default_rng(0)
    lab, src = labels(2000 + 18015, rng)
    ql, dl = lab[:2000], lab[2000:]
    rows = ["| bits | cmhash mAP + mAP@50 + tie-averaged mAP (s) | community loop, mAP + mAP@50 (s) | speed-up | same numbers |",
            "|---|---|---|---|---|"]
    out = []
    for k in (64, 128):
        codes = label_codes(lab, k, rng)
        q, db = codes[:2000], codes[2000:]
        ours = []
        for _ in range(args.repeats + 2):
            r, t = timed(lambda: evaluate_retrieval(q, db, ql, dl, topk=50, tie_averaged=True))
            ours.append(t)
        ref, tl = timed(lambda: community_loop(q.astype(np.float32), db.astype(np.float32), ql, dl, 50))
        same = bool(abs(r["map"] - ref["map"]) < 1e-9 and abs(r["map@50"] - ref["map@50"]) < 1e-9)
        m = statistics.median(ours)
        rows.append(f"| {k} | {m:.3f} ({min(ours):.3f}-{max(ours):.3f}) | {tl:.2f} | {tl / m:.0f}x | "
                    f"{'yes' if same else 'NO'} (mAP {r['map']:.4f}, mAP@50 {r['map@50']:.4f}) |")
        print(rows[-1], flush=True)
        out.append({"bits": k, "cmhash_s": ours, "loop_s": tl, "speedup": tl / m, "same": same})
    res["metrics"] = out
    return (f"## Metrics: 2,000 queries x 18,015 items, labels: {src}\n\n"
            "The community loop is DJSRH's calculate_map + calculate_top_map with a stable sort (benchmarks/"
            "bench_metrics.py). cmhash computes the tie-averaged mAP in the same call.\n\n" + "\n".join(rows))


# --- milvus -----------------------------------------------------------------------------------
def bench_milvus(args, res):
    path = Path(args.out) / "milvus"
    shutil.rmtree(path, ignore_errors=True)
    rows = ["| N | insert rows/s | Milvus q/s (k=50) | flat q/s | flat / Milvus | exact lists equal | on disk bytes/item |",
            "|---|---|---|---|---|---|---|"]
    out = []
    for n in ([20_000] if args.quick else [20_000, 200_000]):
        db, qsets, _ = distinct_codes(args, n)
        q = qsets["image->text (cross-modal)"][:1000]
        ix = make_index("milvus", 64, uri=str(path / f"m{n}.db"), collection=f"bench{n}")
        _, ti = timed(lambda: ix.add(db))
        flat = make_index("flat", 64)
        flat.add(db)
        (md, mi), tm = timed(lambda: ix.search(q, 50))
        (fd, fi), tf = timed(lambda: flat.search(q, 50))
        raw = ix._fetch(q[:200], 50)  # Milvus's own order, before the tie fix
        raw_d = np.array([d for d, _ in raw])
        same = bool((md == fd).all() and (mi == fi).all())
        ix.save(path / f"m{n}.cmhidx")
        ix.close()
        disk = (path / f"m{n}.db").stat().st_size  # milvus-lite keeps one file
        rows.append(f"| {n:,} | {n / ti:,.0f} | {len(q) / tm:,.0f} | {len(q) / tf:,.0f} | {tm / tf:.1f}x | "
                    f"{same} (raw distances equal: {bool((raw_d == fd[:200]).all())}) | {disk / n:.0f} |")
        print(rows[-1], flush=True)
        out.append({"n": n, "insert_rows_s": n / ti, "milvus_qps": len(q) / tm, "flat_qps": len(q) / tf,
                    "identical": same, "disk_bytes_per_item": disk / n})
    res["milvus"] = out
    return "## Milvus-lite (BIN_FLAT, HAMMING), 64-bit learned codes, 1,000 queries\n\n" + "\n".join(rows)


# --- memory -----------------------------------------------------------------------------------
def bench_memory(args, res):
    import tracemalloc

    n = 200_000 if args.quick else 1_000_000
    db, _, _ = distinct_codes(args, n)
    rows = ["| backend | N | memory bytes/item | index file bytes/item |", "|---|---|---|---|"]
    out = []
    for backend in ("flat", "mih", "ivf", "faiss"):
        tracemalloc.start()
        ix = make_index(backend, 64)
        ix.add(db)
        if backend == "mih":
            ix._build()
        if backend == "ivf":
            ix._build()
            ix.prepare()
        cur, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mem = cur + (ix._index.ntotal * 8 if backend == "faiss" else 0)  # faiss's own buffer is not traced
        p = ix.save(Path(args.out) / f"mem-{backend}.cmhidx")
        fsize = p.stat().st_size
        p.unlink()
        rows.append(f"| {backend} | {n:,} | {mem / n:.1f} | {fsize / n:.1f} |")
        out.append({"backend": backend, "n": n, "mem_per_item": mem / n, "file_per_item": fsize / n})
        del ix
    demo = ROOT / "cmhash-demo" / "index"
    if (demo / "manifest.json").exists():
        from cmhash.index.store import IndexStore

        info = IndexStore.open(demo).info()
        rows.append(f"| whole store (demo: 2 modalities + SQLite captions/labels) | {info['items']:,} | - | "
                    f"{info['bytes_per_item']} |")
        out.append({"backend": "store", "n": info["items"], "file_per_item": info["bytes_per_item"]})
    res["memory"] = out
    return "## Memory and file size per item, 64-bit codes (8 bytes of code + an 8-byte id)\n\n" + "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="exact,search,metrics,milvus,memory")
    ap.add_argument("--no-milvus-server", action="store_true", help="no Milvus server rows in the search section")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--no-10m", action="store_true", help="skip the 10M-code case")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-index"))
    ap.add_argument("--model-dir", default=str(ROOT / "runs" / "bench-index" / "model"),
                    help="where the DJSRH model for learned codes is trained (once) and read")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    res, parts = {"kernel": kernel_name(), "threads": args.threads, "queries": args.queries}, []
    fns = {"exact": bench_exact, "search": bench_search, "metrics": bench_metrics, "milvus": bench_milvus,
           "memory": bench_memory}
    for s in args.sections.split(","):
        parts.append(fns[s](args, res))
        write_json_atomic(Path(args.out) / "results.json", res)
    text = "# Search benchmarks\n\n" + "\n\n".join(parts) + "\n"
    print("\n" + text)
    write_text_atomic(Path(args.out) / "results.md", text)


if __name__ == "__main__":
    main()
