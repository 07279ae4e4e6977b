"""Search planning: exact or approximate per query direction, decided at each commit and kept in the
manifest (``manifest["search"]``, shown by ``cmhash index info``).

A backend whose class says ``approximate = True`` (``base.HammingIndex``) gets its cross-modal
directions (text->image, image->text) answered approximately once the target index holds
``approx_from`` codes, with the smallest nprobe whose recall@50 (the backend's ``calibrate``)
reaches ``target_recall`` on 200 of the store's own codes of the query modality as queries;
same-modal directions stay exact unless ``approx_same_modal``. Other backends answer every
direction exactly. Nothing here names a backend."""
from __future__ import annotations

import numpy as np

MODALITIES = ("image", "text")


def sample_codes(index, n: int, rng) -> np.ndarray:
    """n of an index's own codes (rows in order): queries for measuring recall."""
    return index.codes[np.sort(rng.choice(index.ntotal, min(n, index.ntotal), replace=False))]


def plan_search(indexes: dict) -> dict | None:
    """{"SRC->TGT": {"mode": "exact"} or {"mode": "approx", "nprobe", "recall", ...}}; None when the
    backend is exact."""
    if not indexes["image"].approximate:
        return None
    plan, rng = {}, np.random.default_rng(0)
    for src in MODALITIES:
        for tgt in MODALITIES:
            ix = indexes[tgt]
            if (src == tgt and not ix.approx_same_modal) or ix.ntotal < max(1, ix.approx_from):
                plan[f"{src}->{tgt}"] = {"mode": "exact"}
                continue
            cal = ix.calibrate(sample_codes(indexes[src], 200, rng), k=50, target=ix.target_recall)
            plan[f"{src}->{tgt}"] = {"mode": "approx", **cal}
    return plan


def estimate_recall(indexes: dict, plan: dict | None, queries: int = 200, seed: int = 1) -> dict:
    """Recall@50 of each approximate direction measured now, at its planned nprobe, on ``queries``
    codes of the query modality sampled from the store (``cmhash index info --recall N``)."""
    out, rng = {}, np.random.default_rng(seed)
    for key, p in (plan or {}).items():
        if p.get("mode") == "approx":
            src, tgt = key.split("->")
            out[key] = indexes[tgt].calibrate(sample_codes(indexes[src], queries, rng), k=50, target=0.0,
                                              nprobes=(p["nprobe"],))
    return out


def search_mode(plan: dict | None, source: str | None, target: str) -> dict:
    """How a query from ``source`` into ``target`` is answered: {"mode": "exact"} or
    {"mode": "approx", "nprobe", "recall", ...}."""
    p = (plan or {}).get(f"{source}->{target}") if source else None
    return p if p and p.get("mode") == "approx" else {"mode": "exact"}


def describe(plan: dict | None) -> dict | str:
    """The plan as ``cmhash index info`` prints it."""
    return {d: p["mode"] + (f" (nprobe {p['nprobe']}, recall@{p['k']} {p['recall']:.3f} on "
                            f"{p['queries']} sampled queries)" if p["mode"] == "approx" else "")
            for d, p in (plan or {}).items()} or "exact"
