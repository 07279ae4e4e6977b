"""Tables rendered from results files, never typed: ``cmhash tables`` rewrites every marked table of
Markdown files (the README's and docs' from ``benchmarks/results/*.json``, or a paper's from a
sweep's results) and ``--check`` fails when one differs from its results.

A table in a Markdown file is a marked block::

    <!-- table: ucm.json section=words metric=map bits=16,64 -->
    | map | I→T 16 | ... |
    <!-- /table -->

What the marker's settings mean:

- ``section``: the results file's section (a sweep's dataset; UCM: the text encoder).
- ``metric``: the metric (map, map@50, ndcg@50).
- ``bits``: the code lengths (default: all).
- ``names``: the rows, comma-separated (default: every row, in the file's order).
- ``sections=words,minilm`` with one ``bits`` value: one column per section instead, each
  "I→T / T→I" (a side-by-side of text encoders).
- ``kind=short``: the typed-query table (``short_queries``: a sweep's ``label_queries``).
- ``kind=table``: a speed benchmark's table as it measured it (a section of ``header`` and ``cells``).
- ``kind=gap`` with ``sections=`` and ``bits=``: per section and code length, the trained row
  with the best mean validation score (``best_val``'s ``select``, default ``map``: chosen without
  the queries) against CCA-ITQ, each direction's gap in ``metric`` and whether it is larger than
  twice the larger of the two rows' stds over seeds (``gap_table``).

Rows of several training seeds show mean ± std, and a one-seed cell among them is marked *
(``runner.markdown_table``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..utils import CmhashError, write_text_atomic
from .report import read_results
from .runner import cell, markdown_table, seed_summary

#: the rows a benchmark adds beside the trained methods (``Report.add_baselines``)
BASELINE_ROWS = ("CCA-ITQ", "CCA-RR", "CCA (real-valued)", "random codes")
BLOCK = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``ucm.json section=words metric=map`` -> ("ucm.json", {"section": "words", "metric": "map"})."""
    parts = spec.split()
    if not parts:
        raise CmhashError("a table marker needs a results file name")
    opts = {}
    for p in parts[1:]:
        if "=" not in p:
            raise CmhashError(f"table marker setting {p!r}: expected key=value")
        k, v = p.split("=", 1)
        opts[k] = v
    return parts[0], opts


def sections_of(results: dict) -> dict:
    """A results file's sections; a run folder's ``results.json`` (one report) is one section, ``default``."""
    return results["sections"] if "sections" in results else {"default": results}


def _rows(results: dict, section: str, opts: dict) -> list[dict]:
    sections = sections_of(results)
    if section not in sections:
        raise CmhashError(f"no section {section!r} in the results (has: {', '.join(sections) or 'none'})")
    rows = sections[section]["rows"]
    if "bits" in opts:
        keep = {int(b) for b in opts["bits"].split(",")}
        rows = [r for r in rows if r["bits"] in keep]
    if "names" in opts:
        names = opts["names"].split(",")
        rows = sorted((r for r in rows if r["name"] in names), key=lambda r: names.index(r["name"]))
    return rows


def render(results: dict, opts: dict) -> str:
    """One table (no trailing newline) from a results file's contents and a marker's settings."""
    kind = opts.get("kind", "metric")
    if kind == "short":
        return short_table(results, opts)
    if kind == "table":
        sec = sections_of(results).get(opts.get("section", ""))
        if sec is None or "header" not in sec:
            raise CmhashError(f"no table section {opts.get('section')!r} in the results")
        return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in [sec["header"], ["---"] * len(sec["header"]),
                                                                        *sec["cells"]])
    if kind == "gap":
        return gap_table(results, opts)
    if kind != "metric":
        raise CmhashError(f"unknown table kind {kind!r}; known: metric, short, table, gap")
    metric = opts.get("metric", "map")
    if "sections" in opts:
        return side_by_side(results, opts["sections"].split(","), metric, opts)
    rows = _rows(results, opts.get("section", next(iter(sections_of(results)), "")), opts)
    return markdown_table(rows, (metric,)).strip()


def side_by_side(results: dict, sections: list[str], metric: str, opts: dict) -> str:
    """Rows by name, one "I→T / T→I" column per section, at one code length."""
    bits = opts.get("bits", "")
    if "," in bits or not bits:
        raise CmhashError("a side-by-side table needs exactly one bits= value")
    per = {sec: {r["name"]: r for r in seed_summary(_rows(results, sec, opts))} for sec in sections}
    several = any(len(r.get("seeds", ())) > 1 for rows in per.values() for r in rows.values())
    names = list(dict.fromkeys(n for sec in sections for n in per[sec]))
    lines = [f"| {metric} I→T / T→I, {bits} bits | " + " | ".join(sections) + " |", "|---|" + "---|" * len(sections)]
    for n in names:
        cells = []
        for sec in sections:
            r = per[sec].get(n)
            cells.append("–" if r is None else f"{cell(r, 'i2t', metric, several)} / {cell(r, 't2i', metric, several)}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_table(results: dict, opts: dict, against: str = "CCA-ITQ") -> str:
    """The trained row chosen on validation against ``against``, per section and code length."""
    metric, select = opts.get("metric", "map"), opts.get("select", "map")
    sections = opts.get("sections", "").split(",")
    bits = [int(b) for b in opts.get("bits", "").split(",") if b]
    if not sections[0] or not bits:
        raise CmhashError("a gap table needs sections= and bits=")
    lines = [f"| set | bits | chosen on validation (val. {select}) | {metric} I→T: it / {against} | "
             f"{metric} T→I: it / {against} | more than 2 std? |", "|---|---|---|---|---|---|"]
    for sec in sections:
        raw = _rows(results, sec, {})
        summary = {(r["name"], r["bits"]): r for r in seed_summary(raw)}
        for b in bits:
            val: dict[str, list[float]] = {}
            for r in raw:
                if r["bits"] == b and r["name"] not in BASELINE_ROWS and select in (r.get("best_val") or {}):
                    val.setdefault(r["name"], []).append(r["best_val"][select])
            base = summary.get((against, b))
            if not val or base is None:
                continue
            name = max(val, key=lambda n: (np.mean(val[n]), n))
            row, verdict, cells = summary[(name, b)], [], []
            for task, arrow in (("i2t", "I→T"), ("t2i", "T→I")):
                gap = row[task][metric] - base[task][metric]
                spread = 2 * max(row[f"{task}_std"][metric], base[f"{task}_std"][metric])
                cells.append(f"{cell(row, task, metric, True)} / {cell(base, task, metric, True)}")
                if len(row["seeds"]) < 2:
                    verdict.append(f"{arrow} one seed")
                else:
                    word = "above" if gap > spread else "below" if gap < -spread else "within"
                    verdict.append(f"{arrow} {word} ({gap:+.3f}, 2 std {spread:.3f})")
            lines.append(f"| {sec} | {b} | {name} ({np.mean(val[name]):.3f}) | {cells[0]} | {cells[1]} | "
                         f"{'; '.join(verdict)} |")
    return "\n".join(lines)


def short_table(results: dict, opts: dict) -> str:
    """Precision@10 of each class name typed as a query, per encoder/method column."""
    short = results.get("short_queries", {})
    cols = [c for c in (opts["columns"].split(",") if "columns" in opts else short) if c in short]
    if not cols:
        raise CmhashError("the results file holds no short-query results")
    labels = list(short[cols[0]])
    lines = ["| class query | " + " | ".join(c.replace("/", " ").upper() for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label in labels:
        vals = [short[c].get(label) for c in cols]
        lines.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in vals) + " |")
    for title, fn in (("mean", np.mean), ("min", np.min)):
        vals = [fn([v or 0.0 for v in short[c].values()]) for c in cols]
        lines.append(f"| **{title}** | " + " | ".join(f"**{v:.2f}**" for v in vals) + " |")
    return "\n".join(lines)


def render_file(path: str | Path) -> str:
    """Every section of a results file as Markdown (mAP and mAP@50 tables), for printing."""
    results = read_results(path)
    out = []
    for name, sec in sections_of(results).items():
        if "header" in sec:
            out.append(f"## {sec.get('title', name)}\n\n" + render(results, {"kind": "table", "section": name}))
            continue
        metrics = sorted({k for r in sec["rows"] for k in r.get("i2t", {})} & {"map", "map@50", "ndcg@50"})
        out.append(f"## {sec.get('title', name)}\n\n" + markdown_table(sec["rows"], metrics))
    return "\n".join(out)


def update_text(text: str, results_dir: Path, where: str = "") -> tuple[str, list[str]]:
    """``text`` with every marked table rendered again; and the markers whose table changed."""
    changed, cache = [], {}

    def repl(m: re.Match) -> str:
        name, opts = parse_spec(m.group("spec"))
        if name not in cache:
            f = results_dir / name
            if not f.is_file():
                raise CmhashError(f"{where}: table marker names {f}, which does not exist")
            cache[name] = read_results(f)
        body = render(cache[name], opts) + "\n"
        if body != m.group("body"):
            changed.append(f"{where}: <!-- table: {m.group('spec')} -->")
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(repl, text), changed


def render_documents(docs: list[Path], results_dir: Path, check: bool, root: Path) -> tuple[int, list[str]]:
    """Every marked table of ``docs`` rendered from ``results_dir``; rewritten unless ``check``.
    Returns (the number of tables, the markers whose table differed)."""
    stale, n = [], 0
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        where = str(doc.relative_to(root)) if doc.is_relative_to(root) else str(doc)
        new, changed = update_text(text, results_dir, where)
        n += len(BLOCK.findall(text))
        stale += changed
        if changed and not check:
            write_text_atomic(doc, new)
    return n, stale
