"""The one results path of train, evaluate, sweep, demo and every benchmark script.

    report = Report("djsrh on synthetic", inputs)
    report.add("DJSRH", 64, metrics)                  # metrics as run_experiment returns them
    report.add_baselines([16, 32, 64], cca=False)     # random codes (and CCA hashing), same split
    text = report.write(out)                          # results.md, results.json, curves-<K>bits.png

Rows are ``{"name", "bits", "i2t": {...}, "t2i": {...}}`` plus anything a caller adds (a sweep's
varied parameter); the table is ``runner.markdown_table``; the label prior is written beside it.
"""
from __future__ import annotations

from pathlib import Path

from ..utils import write_json_atomic, write_text_atomic
from .baselines import cca_baselines, label_prior, random_codes_metrics
from .runner import markdown_table, plot_curves, seed_summary


class Report:
    def __init__(self, title: str, inputs=None, metrics=("map", "map@50", "ndcg@50")):
        self.title, self.inputs, self.metrics = title, inputs, tuple(metrics)
        self.rows: list[dict] = []
        self.curves: dict[int, dict[str, dict]] = {}  # bits -> name -> PR / top-K curves

    def add(self, name: str, bits: int, metrics: dict, **extra) -> dict:
        row = {"name": name, "bits": bits, **extra, **metrics}
        self.rows.append(row)
        if metrics.get("curves"):
            self.curves.setdefault(bits, {})[name] = metrics["curves"]
        return row

    #: the shallow rows ``add_baselines(cca=True)`` adds, by ``baselines.cca_metrics`` kind
    CCA_ROWS = {"itq": "CCA-ITQ", "random": "CCA-RR", "real": "CCA (real-valued)"}

    def add_baselines(self, bits: list[int], random: bool = True, cca: bool = False, seed: int = 0,
                      curves: bool = False, seeds: list[int] | None = None) -> None:
        """Random codes (and CCA-ITQ, CCA-RR and real-valued CCA) on the report's inputs, at each
        code length; with ``seeds``, one row per seed (random rotations and codes differ), as the
        trained rows have. Real-valued CCA has no code length: one row per seed, at every length."""
        for s in (seeds if seeds is not None else [seed]):
            extra = {"seed": s} if seeds is not None else {}
            shallow = cca_baselines(self.inputs, list(bits), tuple(self.CCA_ROWS), s, curves) if cca else {}
            for b in bits:
                for kind, name in self.CCA_ROWS.items():
                    if (kind, b) in shallow:
                        self.add(name, b, shallow[kind, b], **extra)
                if random:
                    self.add("random codes", b, random_codes_metrics(self.inputs, b, seed=s, curves=curves), **extra)

    @property
    def label_prior(self) -> float | None:
        return label_prior(self.inputs) if self.inputs is not None else None

    def table(self) -> str:
        return markdown_table(self.rows, self.metrics)

    def summary(self) -> str:
        """One line: the split's sizes and the label prior."""
        if self.inputs is None:
            return ""
        s = self.inputs.split
        return (f"query {len(s.query)}, training {len(s.train)}, database {len(s.database)}, "
                f"label prior (random ranking precision) {self.label_prior:.3f}")

    def markdown(self, level: int = 1) -> str:
        return f"{'#' * level} {self.title}\n\n{self.summary()}\n\n{self.table()}"

    def write(self, out: str | Path, plot_bits: int | None = None, **extra) -> str:
        """``out``/results.md, results.json (rows without curves, ``extra`` keys) and the PR /
        precision@top-K plot at ``plot_bits`` (default: the largest length with curves)."""
        out = Path(out)
        text = self.markdown()
        write_text_atomic(out / "results.md", text + "\n")
        s = self.inputs.split if self.inputs is not None else None
        write_json_atomic(out / "results.json", {
            "title": self.title, "label_prior": self.label_prior, "split": s.sizes() if s else None,
            "info": getattr(self.inputs, "info", None), **extra,
            "rows": [{k: v for k, v in r.items() if k != "curves"} for r in self.rows]})
        bits = plot_bits if plot_bits is not None else max(self.curves, default=None)
        if bits in self.curves:
            plot_curves(self.curves[bits], out / f"curves-{bits}bits.png", f"{self.title}, {bits} bits")
        return text


def write_results_file(path: str | Path, sections: dict, script: str, **extra) -> Path:
    """A published results file (``benchmarks/results/<name>.json``, from which the README's and
    docs' tables are rendered): per section (a dataset) its title, label prior, split, every row
    (each seed's, without curves, its validation scores reduced to their means) and their mean ± std per name and length (``summary``). A
    section given as a dict is kept as it was (read from the file before)."""
    out = {}
    for key, r in sections.items():
        if isinstance(r, dict):
            out[key] = r
            continue
        rows = [{k: (_validation(v) if k == "best_val" else v) for k, v in row.items() if k != "curves"}
                for row in r.rows]
        out[key] = {"title": r.title, "label_prior": r.label_prior, "split": r.inputs.split.sizes(),
                    "info": r.inputs.info, "rows": rows, "summary": seed_summary(rows)}
    path = Path(path)
    write_json_atomic(path, {"script": script, "sections": out, **extra})
    return path


def _validation(best_val: dict) -> dict:
    """A row's best validation scores as published: the means of both directions (what chooses)."""
    return {k: v for k, v in best_val.items() if isinstance(v, float) and not k.endswith(("_i2t", "_t2i"))}


def read_results(path: str | Path) -> dict:
    """A results file (a run folder's ``results.json``, or a benchmark's ``{"sections": {NAME:
    report}}``; a speed benchmark's section is a plain table, ``{"header": [...], "cells": [[...]]}``), checked before any table is made of it: every way it can be malformed (missing,
    a folder, not UTF-8 JSON, nested beyond reason, not an object, no ``rows``, a row without a
    name or code length, a metric that is not a number) is one ``CmhashError`` naming the file
    and the place. A UTF-8 byte-order mark is accepted (editors on Windows write one)."""
    import json
    import math

    from ..utils import CmhashError

    path = Path(path)
    if not path.exists():
        raise CmhashError(f"{path}: results file not found")
    if not path.is_file():
        raise CmhashError(f"{path}: is a folder, not a results file")
    try:
        results = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise CmhashError(f"{path}: damaged results file (not UTF-8 text)") from None
    except RecursionError:
        raise CmhashError(f"{path}: not a results file (JSON nested too deeply)") from None
    except ValueError as e:
        raise CmhashError(f"{path}: damaged results file (not JSON: {str(e)[:80]})") from None
    except OSError as e:
        raise CmhashError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if not isinstance(results, dict):
        raise CmhashError(f"{path}: not a results file (a JSON {type(results).__name__}, expected an object with "
                          "\"rows\" or \"sections\")")
    if "sections" in results:
        sections = results["sections"]
        if not isinstance(sections, dict) or not all(isinstance(s, dict) for s in sections.values()):
            raise CmhashError(f"{path}: \"sections\" must be an object of reports ({{name: {{\"rows\": [...]}}}})")
    elif "rows" in results:
        sections = {"default": results}
    else:
        raise CmhashError(f"{path}: not a results file (no \"rows\" and no \"sections\")")
    for name, sec in sections.items():
        if "header" in sec:  # a plain table (a speed benchmark's): a header and rows of cells
            header, cells = sec["header"], sec.get("cells")
            if not (isinstance(header, list) and isinstance(cells, list)
                    and all(isinstance(r, list) and len(r) == len(header) for r in cells)):
                raise CmhashError(f"{path}: section {name!r}: a table needs \"header\" and \"cells\" rows of "
                                  "as many cells")
            continue
        rows = sec.get("rows")
        if not isinstance(rows, list):
            raise CmhashError(f"{path}: section {name!r} has no \"rows\" list")
        for i, row in enumerate(rows):
            where = f"{path}: section {name!r}, row {i + 1}"
            if not isinstance(row, dict) or not isinstance(row.get("name"), str):
                raise CmhashError(f"{where}: a row needs a \"name\" (text)")
            if not isinstance(row.get("bits"), int) or isinstance(row.get("bits"), bool):
                raise CmhashError(f"{where} ({row['name']}): \"bits\" must be a whole number")
            for task in ("i2t", "t2i"):
                scores = row.get(task, {})
                if not isinstance(scores, dict):
                    raise CmhashError(f"{where} ({row['name']}): \"{task}\" must be an object of metrics")
                for metric, v in scores.items():
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                        raise CmhashError(f"{where} ({row['name']}): {task} {metric} is {v!r}, not a number")
    return results
