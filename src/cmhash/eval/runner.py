"""The protocol runner: query and database codes in both modalities -> I->T / T->I metrics,
JSON, a Markdown table and PR / precision@top-K plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import cosine_retrieval, evaluate_retrieval, pr_curve

TOPK_POINTS = (1, 10, 50, 100, 200, 500, 1000, 2000, 5000)
NOT_SCORED = ("retrieval cannot be scored: the data has no labels (relevance is shared labels); the model is "
              "trained: encode, index and search with it, or add labels (a third column in captions.tsv) to score it")


def evaluate_codes(codes: dict, q_labels, db_labels, topk: int = 50, curves: bool = True,
                   tie_averaged: bool = False, ndcg_k: int | None = 50, grade: str = "shared") -> dict:
    """``codes`` holds q_img, q_txt, db_img, db_txt ({-1,+1} or real). Returns
    ``{"i2t": {"map", "map@50", "ndcg@50", ...}, "t2i": {...}, "curves": {...}}`` (NDCG with graded
    relevance of kind ``grade``: shared-label count by default)."""
    n_db = len(db_labels)
    ks = tuple(k for k in TOPK_POINTS if k <= n_db) if curves else ()
    out: dict = {"curves": {}}
    for task, q, db in (("i2t", codes["q_img"], codes["db_txt"]), ("t2i", codes["q_txt"], codes["db_img"])):
        r = evaluate_retrieval(q, db, q_labels, db_labels, topk=topk, precision_ks=ks, tie_averaged=tie_averaged,
                               ndcg_k=ndcg_k, grade=grade)
        out[task] = {k: v for k, v in r.items() if not k.startswith("p@")}
        if curves:
            p, rc = pr_curve(q, db, q_labels, db_labels)
            out["curves"][task] = {"precision": p.tolist(), "recall": rc.tolist(),
                                   "topk": list(ks), "p_at_k": [r[f"p@{k}"] for k in ks]}
    return out


def evaluate_real(emb: dict, q_labels, db_labels, topk: int = 50, curves: bool = False, ndcg_k: int | None = 50) -> dict:
    """``evaluate_codes`` for real-valued embeddings (the same four keys), ranked by cosine
    similarity; no curves (PR by Hamming radius has no meaning here)."""
    out: dict = {"curves": {}}
    for task, q, db in (("i2t", emb["q_img"], emb["db_txt"]), ("t2i", emb["q_txt"], emb["db_img"])):
        out[task] = cosine_retrieval(q, db, q_labels, db_labels, topk=topk, ndcg_k=ndcg_k)
    return out


def seed_summary(rows: list[dict], metrics=None) -> list[dict]:
    """Rows of several training seeds -> one row per (name, bits): each metric's mean over the
    seeds, its sample standard deviation (ddof 1) under ``"<task>_std"`` and the seeds under
    ``"seeds"``. Rows without a ``seed`` key count as seed 0; of the other keys only a sweep's
    ``param`` / ``value`` are kept (per-run ones such as the best epoch differ by seed)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["name"], r["bits"]), []).append(r)
    out = []
    for (name, bits), rs in groups.items():
        row = {"name": name, "bits": bits, **{k: rs[0][k] for k in ("param", "value") if k in rs[0]}}
        row["seeds"] = [r.get("seed", 0) for r in rs]
        for task in ("i2t", "t2i"):
            keys = [k for k in rs[0].get(task, {}) if metrics is None or k in metrics]
            vals = {k: np.array([r[task][k] for r in rs], np.float64) for k in keys}
            row[task] = {k: float(v.mean()) for k, v in vals.items()}
            row[f"{task}_std"] = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in vals.items()}
        out.append(row)
    return out


def markdown_table(rows: list[dict], metrics=("map", "map@50", "ndcg@50")) -> str:
    """rows: {"name", "bits", "i2t": {...}, "t2i": {...}} -> one line per name, columns per bits.
    Rows of several seeds (a ``seed`` key) are summarised first (``seed_summary``): a cell is
    mean ± std, and a cell of one seed is marked * when others have more."""
    if any("seed" in r for r in rows):
        rows = seed_summary(rows)
    names = list(dict.fromkeys(r["name"] for r in rows))
    bits = sorted({r["bits"] for r in rows})
    several = any(len(r.get("seeds", ())) > 1 for r in rows)
    lines = []
    for metric in metrics:
        head = "| " + metric + " | " + " | ".join(f"I→T {b}" for b in bits) + " | " + \
               " | ".join(f"T→I {b}" for b in bits) + " |"
        lines += [head, "|" + "---|" * (1 + 2 * len(bits))]
        for n in names:
            by_bits = {r["bits"]: r for r in rows if r["name"] == n}
            cells = [cell(by_bits.get(b, {}), task, metric, several) for task in ("i2t", "t2i") for b in bits]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if several:
        lines.append(f"mean ± standard deviation over training seeds; * one seed.\n")
    return "\n".join(lines)


def cell(row: dict, task: str, metric: str, several: bool = False) -> str:
    """One table cell: ``0.812``, ``0.812 ± 0.004`` (several seeds), ``0.812*`` (one seed where
    others have several) or ``–`` (not measured)."""
    scores = row.get(task, {})
    if metric not in scores:
        return "–"
    n = len(row.get("seeds", ()))
    if n > 1:
        return f"{scores[metric]:.3f} ± {row[f'{task}_std'][metric]:.3f}"
    return f"{scores[metric]:.3f}" + ("*" if several else "")


def plot_curves(curves: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """``curves``: name -> {"i2t": {...}, "t2i": {...}} as made by ``evaluate_codes``. Writes one PNG
    with PR and precision@top-K panels for both tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_path

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for col, task in enumerate(("i2t", "t2i")):
        label = "Image→Text" if task == "i2t" else "Text→Image"
        for name, c in curves.items():
            if task not in c:
                continue
            # radii at which no query retrieves anything have no precision (stored as 0): not drawn
            pr = [(r, p) for r, p in zip(c[task]["recall"], c[task]["precision"]) if r > 0 or p > 0]
            axes[0, col].plot([r for r, _ in pr], [p for _, p in pr], marker=".", label=name)
            axes[1, col].plot(c[task]["topk"], c[task]["p_at_k"], marker="o", label=name)
        axes[0, col].set(title=f"{label}: PR by Hamming radius", xlabel="recall", ylabel="precision",
                         xlim=(0, 1), ylim=(0, 1))
        axes[1, col].set(title=f"{label}: precision@top-K", xlabel="K", ylabel="precision", xscale="log",
                         ylim=(0, 1))
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
