"""mAP and mAP@50 for 2,000 queries x 18,015 database items (MIRFlickr's protocol sizes), side by
side with a per-query loop written like the community's code (DJSRH's calculate_map /
calculate_top_map), in one process, interleaved. Prints median (min-max) over repeats and the
ratio; checks that both give the same numbers.

    python benchmarks/bench_metrics.py [--bits 16,32,64,128] [--repeats 5] [--loop-repeats 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from cmhash.eval import evaluate_retrieval


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
    lall = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k" / "mirflickr25k-lall.mat"
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


def timed(fn, *a, **kw):
    t = time.perf_counter()
    r = fn(*a, **kw)
    return time.perf_counter() - t, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", default="16,32,64,128")
    ap.add_argument("--n-query", type=int, default=2000)
    ap.add_argument("--n-db", type=int, default=18015)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-repeats", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lab, lab_src = labels(args.n_query + args.n_db, rng)
    ql, dl = lab[: args.n_query], lab[args.n_query:]
    print(f"{args.n_query} queries x {args.n_db} items, labels: {lab_src}; mAP + mAP@50 in one call\n")
    print("| bits | cmhash (s) median (min-max) | per-query loop (s) | speed-up | same result |")
    print("|---|---|---|---|---|")
    for k in [int(b) for b in args.bits.split(",")]:
        codes = label_codes(lab, k, rng)
        q, db = codes[: args.n_query], codes[args.n_query:]
        ours, loop = [], []
        for r in range(max(args.repeats, args.loop_repeats)):
            if r < args.repeats:
                t, res = timed(evaluate_retrieval, q, db, ql, dl, topk=50)
                ours.append(t)
            if r < args.loop_repeats:
                t, ref = timed(community_loop, q.astype(np.float32), db.astype(np.float32), ql, dl, 50)
                loop.append(t)
        same = abs(res["map"] - ref["map"]) < 1e-9 and abs(res["map@50"] - ref["map@50"]) < 1e-9
        med, lmed = statistics.median(ours), statistics.median(loop)
        print(f"| {k} | {med:.3f} ({min(ours):.3f}-{max(ours):.3f}) | {lmed:.2f} | {lmed / med:.0f}x | "
              f"{'yes' if same else 'NO'} (mAP {res['map']:.4f}, mAP@50 {res['map@50']:.4f}) |", flush=True)


if __name__ == "__main__":
    main()
