"""Retrieval metrics, computed the way the community's code does (DJSRH / DSAH / JDSH / DGCPN).

- Relevant: the query and the item share at least one label.
- Ranking: by Hamming distance, ties broken by database index (a stable sort). The references
  use an unstable argsort, so their scores wobble at ties; ours are deterministic.
- mAP: per query, mean over its relevant items of (relevant items up to that rank) / rank; a
  query with no relevant item adds 0 and still counts in the mean (``calculate_map``).
- mAP@k: the same inside the top k only, dividing by the relevant items found in the top k; a
  query with none there adds 0 and still counts (``calculate_top_map``). This is *not* the
  "first min(k, R) relevant hits anywhere" number of some toolboxes.
- Tie-averaged mAP (option ``ties="average"``): the expected AP when the items at equal distance
  are in random order (McSherry and Najork, ECIR 2008), in closed form per distance group.
- PR by Hamming radius r = 0..K: per query, precision = relevant within r / retrieved within r,
  recall = relevant within r / relevant; averaged over queries with at least one relevant item,
  a query retrieving nothing within r being left out of that radius' precision mean.
- Precision@K: relevant items among the first K of the tie-ordered ranking, / K.
- Graded relevance (``graded_relevance``): beside the binary "shares a label", multi-label items
  are related by degree: ``shared`` = number of shared labels (DSRH, Zhao et al., CVPR 2015),
  ``jaccard`` = |l_q & l_d| / |l_q | l_d|, ``cosine`` = l_q . l_d / (|l_q| |l_d|).
- NDCG@k (Jarvelin and Kekalainen, TOIS 2002, with DSRH's gain): DCG@k = sum_{r<=k} (2^g_r - 1)
  / log2(r + 1) over the tie-ordered ranking, divided by the DCG@k of the ideal order (grades
  sorted high to low over the whole database). A query whose database holds no item of grade > 0
  has no ideal DCG; it adds 0 and still counts, as in mAP.

Everything runs on blocks of queries so memory stays bounded whatever the database size. mAP,
mAP@k and the tie-averaged mAP come from the compiled counting-sort kernel
(``cmhash.kernels.rank_metrics``: only K + 1 distances exist, so a per-query histogram and one
walk in database order rank every item, ties by index, with no sort) when it is built and the
labels are non-negative (then "shares a label" is "label bit sets intersect"); otherwise, and for
precision@K and NDCG, a stable argsort per query block.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..utils import CmhashError
from .hamming import binarize, hamming_pm1, pack_codes


GRADES = ("shared", "jaccard", "cosine", "binary")


def relevance(q_labels, db_labels) -> np.ndarray:
    """(nq, ndb) bool: shares at least one label."""
    return (np.asarray(q_labels, np.float32) @ np.asarray(db_labels, np.float32).T) > 0


def graded_relevance(q_labels, db_labels, kind: str = "shared") -> np.ndarray:
    """(nq, ndb) float64 grades of relevance from label overlap (see module docstring)."""
    ql, dl = np.asarray(q_labels, np.float32), np.asarray(db_labels, np.float32)
    return _grades(ql @ dl.T, ql, dl, kind)


def _grades(inter: np.ndarray, ql: np.ndarray, dl: np.ndarray, kind: str) -> np.ndarray:
    """Grades (b, N) float64 from the label overlap ``inter`` = ql @ dl.T (labels only read for
    the normalised kinds)."""
    inter = np.asarray(inter, np.float64)
    if kind == "shared":
        return inter
    if kind == "binary":
        return (inter > 0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "jaccard":
            union = ql.sum(1, dtype=np.float64)[:, None] + dl.sum(1, dtype=np.float64)[None, :] - inter
            return np.where(union > 0, inter / union, 0.0)
        if kind == "cosine":
            norm = (np.sqrt(np.square(ql, dtype=np.float64).sum(1))[:, None]
                    * np.sqrt(np.square(dl, dtype=np.float64).sum(1))[None, :])
            return np.where(norm > 0, inter / norm, 0.0)
    raise CmhashError(f"unknown relevance grade {kind!r}; use one of {', '.join(GRADES)}")


@dataclass
class _Inputs:
    q: np.ndarray
    db: np.ndarray
    ql: np.ndarray
    dl: np.ndarray
    k: int


def _check(q_codes, db_codes, q_labels, db_labels) -> _Inputs:
    q, db = binarize(q_codes), binarize(db_codes)
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    if q.shape[1] != db.shape[1]:
        raise CmhashError(f"query codes have {q.shape[1]} bits, database codes {db.shape[1]}")
    if ql.ndim != 2 or dl.ndim != 2 or ql.shape[1] != dl.shape[1]:
        raise CmhashError(f"label shapes do not match: {ql.shape} vs {dl.shape}")
    if len(ql) != len(q) or len(dl) != len(db):
        raise CmhashError(f"codes and labels differ in length: {len(q)}/{len(ql)} queries, {len(db)}/{len(dl)} items")
    return _Inputs(q, db, ql, dl, q.shape[1])


def _blocks(n_q: int, n_db: int, budget: int = 1 << 22):
    step = max(1, budget // max(1, n_db))
    for s in range(0, n_q, step):
        yield slice(s, min(n_q, s + step))


def evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk: int | None = 50,
                       precision_ks: tuple[int, ...] = (), full_map: bool = True,
                       tie_averaged: bool = False, ndcg_k: int | None = None, grade: str = "shared") -> dict:
    """All ranking metrics from one sort per query block.

    Returns ``{"map": .., "map@<topk>": .., "map_tie_avg": .., "p@<K>": .., "ndcg@<k>": ..}`` for
    what was asked (NDCG with relevance grades of kind ``grade``).
    """
    x = _check(q_codes, db_codes, q_labels, db_labels)
    n_q, n_db = len(x.q), len(x.db)
    ks = sorted({int(k) for k in precision_ks})
    if topk is not None and topk < 1 or any(k < 1 for k in ks) or ndcg_k is not None and ndcg_k < 1:
        raise CmhashError("k must be >= 1")
    if grade not in GRADES:
        raise CmhashError(f"unknown relevance grade {grade!r}; use one of {', '.join(GRADES)}")
    sums = {"map": 0.0, "topk": 0.0, "tie": 0.0, "ndcg": 0.0}
    prec = np.zeros(len(ks))
    ranks = np.arange(1, n_db + 1, dtype=np.float64)
    dl = np.asarray(x.dl, np.float32)  # converted once, not per query block
    counted = _counted(x, topk or 1) if (full_map or topk or tie_averaged) else None
    if counted is not None:
        ap, apk, hn, hr = counted
        sums["map"], sums["topk"] = ap.sum(), apk.sum()
        if tie_averaged:
            sums["tie"] = _tie_averaged_ap(hn.astype(np.float64), hr.astype(np.float64)).sum()
        full_map_here, topk_here, tie_here = False, None, False  # done: the loop below is for the rest
    else:
        full_map_here, topk_here, tie_here = full_map, topk, tie_averaged
    for sl in _blocks(n_q, n_db) if (full_map_here or topk_here or tie_here or ks or ndcg_k) else ():
        dist = hamming_pm1(x.q[sl], x.db)  # (b, N) small uints
        ql = np.asarray(x.ql[sl], np.float32)
        inter = ql @ dl.T  # (b, N) label overlap
        rel = inter > 0  # (b, N)
        # stable: ties by database index; numpy radix-sorts uint8/uint16 keys, faster than a
        # partial selection of the top k on these sizes
        order = np.argsort(dist, axis=1, kind="stable")
        srel = np.take_along_axis(rel, order, axis=1)  # (b, N) relevance in rank order
        hits = np.cumsum(srel, axis=1, dtype=np.int32)
        _add_ap(sums, srel, hits, ranks, full_map_here, topk_here)
        for j, k in enumerate(ks):
            prec[j] += (hits[:, min(k, n_db) - 1] / k).sum()
        if tie_here:
            sums["tie"] += _tie_averaged_ap(*_histograms(dist, rel, x.k)).sum()
        if ndcg_k:
            gain = np.exp2(_grades(inter, ql, dl, grade)) - 1.0  # (b, N)
            sums["ndcg"] += _ndcg(gain, order, min(ndcg_k, n_db)).sum()
    out = {}
    if full_map:
        out["map"] = sums["map"] / n_q
    if topk:
        out[f"map@{topk}"] = sums["topk"] / n_q
    if tie_averaged:
        out["map_tie_avg"] = sums["tie"] / n_q
    if ndcg_k:
        out[f"ndcg@{ndcg_k}"] = sums["ndcg"] / n_q
    for j, k in enumerate(ks):
        out[f"p@{k}"] = prec[j] / n_q
    return {k: float(v) for k, v in out.items()}


def _add_ap(sums: dict, srel: np.ndarray, hits: np.ndarray, ranks: np.ndarray, full_map: bool,
            topk: int | None) -> None:
    """Add a query block's AP (``map``) and AP@topk (``topk``) to ``sums``, from its relevance in rank
    order ``srel`` (b, N) and the running hit counts ``hits`` (module docstring's definitions)."""
    if full_map:
        sums["map"] += ((hits / ranks * srel).sum(1) / np.maximum(hits[:, -1], 1)).sum()
    if topk:
        t = min(topk, srel.shape[1])
        tr = srel[:, :t]
        sums["topk"] += ((hits[:, :t] / ranks[:t] * tr).sum(1) / np.maximum(tr.sum(1), 1)).sum()


def cosine_retrieval(q, db, q_labels, db_labels, topk: int | None = 50, ndcg_k: int | None = 50,
                     grade: str = "shared") -> dict:
    """The metrics of ``evaluate_retrieval`` for real-valued embeddings ranked by cosine similarity
    (high first, ties by database index): the unhashed reference beside a hashing table."""
    q, db = np.asarray(q, np.float64), np.asarray(db, np.float64)
    ql, dl = np.asarray(q_labels, np.float32), np.asarray(db_labels, np.float32)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise CmhashError(f"embedding shapes do not match: {q.shape} vs {db.shape}")
    if len(ql) != len(q) or len(dl) != len(db):
        raise CmhashError(f"embeddings and labels differ in length: {len(q)}/{len(ql)} queries, "
                          f"{len(db)}/{len(dl)} items")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    db = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    n_q, n_db = len(q), len(db)
    ranks = np.arange(1, n_db + 1, dtype=np.float64)
    sums = {"map": 0.0, "topk": 0.0, "ndcg": 0.0}
    for sl in _blocks(n_q, n_db):
        order = np.argsort(-(q[sl] @ db.T), axis=1, kind="stable")  # (b, N)
        inter = ql[sl] @ dl.T  # (b, N)
        srel = np.take_along_axis(inter > 0, order, axis=1)
        _add_ap(sums, srel, np.cumsum(srel, axis=1, dtype=np.int32), ranks, True, topk)
        if ndcg_k:
            gain = np.exp2(_grades(inter, ql[sl], dl, grade)) - 1.0
            sums["ndcg"] += _ndcg(gain, order, min(ndcg_k, n_db)).sum()
    out = {"map": sums["map"] / n_q}
    if topk:
        out[f"map@{topk}"] = sums["topk"] / n_q
    if ndcg_k:
        out[f"ndcg@{ndcg_k}"] = sums["ndcg"] / n_q
    return {k: float(v) for k, v in out.items()}


def _ndcg(gain: np.ndarray, order: np.ndarray, t: int) -> np.ndarray:
    """Per query NDCG@t from gains (b, N) and the ranking ``order`` (b, N)."""
    disc = 1.0 / np.log2(np.arange(2, t + 2, dtype=np.float64))  # (t,)
    dcg = (np.take_along_axis(gain, order[:, :t], axis=1) * disc).sum(1)
    top = -np.partition(-gain, t - 1, axis=1)[:, :t]  # (b, t) the t largest gains
    best = -np.sort(-top, axis=1)  # high to low
    idcg = (best * disc).sum(1)
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def ndcg_at_k(q_codes, db_codes, q_labels, db_labels, k: int = 50, grade: str = "shared") -> float:
    """NDCG@k of Hamming ranking with graded relevance (see module docstring)."""
    return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=None, full_map=False, ndcg_k=k,
                              grade=grade)[f"ndcg@{k}"]


def _histograms(dist: np.ndarray, rel: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: items and relevant items at each distance 0..K -> two (b, K+1) arrays."""
    b = len(dist)
    flat = dist.astype(np.int64) + (np.arange(b) * (k + 1))[:, None]
    n = np.bincount(flat.ravel(), minlength=b * (k + 1)).reshape(b, k + 1)
    r = np.bincount(flat.ravel(), weights=rel.ravel(), minlength=b * (k + 1)).reshape(b, k + 1)
    return n.astype(np.float64), r


def _counted(x: _Inputs, topk: int):
    """(AP, AP@topk, items and relevant items per distance) per query from the counting-sort kernel,
    or None when it is not built or labels are negative (relevance is then not a bit-set test)."""
    if kernels.kernel_name() != "c" or x.k > 65535 or x.k % 8 or (x.ql < 0).any() or (x.dl < 0).any():
        return None
    return kernels.rank_metrics(pack_codes(x.db), pack_codes(x.q), kernels.label_bits(x.ql),
                                kernels.label_bits(x.dl), topk)


def _tie_averaged_ap(n: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Expected AP over random orders within equal-distance groups (closed form, no sort), from the
    per-query histograms of items ``n`` and relevant items ``r`` at each distance (b, K+1).

    A group of n items (r relevant) after p items (h relevant) adds, in expectation,
    sum_{j=1..n} (r/n) (h + 1 + (j-1)(r-1)/(n-1)) / (p + j).
    """
    p = np.cumsum(n, 1) - n
    h = np.cumsum(r, 1) - r
    total_n = int(n.sum(1).max())
    harm = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, total_n + 1))])
    a = harm[(p + n).astype(np.int64)] - harm[p.astype(np.int64)]  # sum 1/(p+j)
    bsum = n - (p + 1) * a  # sum (j-1)/(p+j)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(n > 1, (r - 1) / (n - 1), 0.0)
        contrib = np.where(r > 0, (r / n) * ((h + 1) * a + slope * bsum), 0.0)
    r_tot = r.sum(1)
    return contrib.sum(1) / np.maximum(r_tot, 1)


def mean_average_precision(q_codes, db_codes, q_labels, db_labels, ties: str = "index") -> float:
    """Full-ranking mAP; ``ties`` = 'index' (deterministic) or 'average' (tie-averaged)."""
    if ties not in ("index", "average"):
        raise CmhashError(f"ties must be 'index' or 'average', got {ties!r}")
    if ties == "average":
        return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=None, full_map=False,
                                  tie_averaged=True)["map_tie_avg"]
    return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=None)["map"]


def map_at_k(q_codes, db_codes, q_labels, db_labels, k: int = 50) -> float:
    """mAP@k in the community's convention (see module docstring)."""
    return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=k, full_map=False)[f"map@{k}"]


def precision_at_k(q_codes, db_codes, q_labels, db_labels, ks=(1, 50, 100, 500, 1000)) -> dict[int, float]:
    ks = [k for k in ks if k <= len(np.asarray(db_codes))]
    r = evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=None, precision_ks=tuple(ks), full_map=False)
    return {k: r[f"p@{k}"] for k in ks}


def pr_curve(q_codes, db_codes, q_labels, db_labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at Hamming radius 0..K (see module docstring): two (K+1,) arrays."""
    x = _check(q_codes, db_codes, q_labels, db_labels)
    p_sum, p_cnt = np.zeros(x.k + 1), np.zeros(x.k + 1)
    r_sum, r_cnt = np.zeros(x.k + 1), 0
    counted = _counted(x, 1)
    blocks = [(counted[2].astype(np.float64), counted[3].astype(np.float64))] if counted is not None else (
        _histograms(hamming_pm1(x.q[sl], x.db), relevance(x.ql[sl], x.dl), x.k) for sl in _blocks(len(x.q), len(x.db)))
    for n, r in blocks:
        ret, hit = np.cumsum(n, 1), np.cumsum(r, 1)
        has_rel = hit[:, -1] > 0
        ret, hit, tot = ret[has_rel], hit[has_rel], hit[has_rel][:, -1:]
        ok = ret > 0
        p_sum += np.where(ok, hit / np.where(ok, ret, 1), 0).sum(0)
        p_cnt += ok.sum(0)
        r_sum += (hit / tot).sum(0)
        r_cnt += int(has_rel.sum())
    return p_sum / np.maximum(p_cnt, 1), r_sum / max(r_cnt, 1)
