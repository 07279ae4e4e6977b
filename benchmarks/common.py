"""What the benchmark scripts share: their options, the per-dataset loop, the baselines and the summary
(one run into a report is ``cmhash.train.protocol.run_into``, as for train and sweep)."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Callable

from cmhash.eval.report import Report
from cmhash.eval.runner import seed_summary
from tables import BASELINE_ROWS
from cmhash.train.protocol import locked_run_folder
from cmhash.utils import CmhashError, write_text_atomic

DEFAULT_WIKI = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki")
DEFAULT_UCM = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ucm-captions")
#: where every benchmark writes the results its README / docs tables are rendered from (``tables.py``)
RESULTS = Path(__file__).resolve().parent / "results"


def bench_parser(doc: str, methods: str, out: str, datasets: str | None = "wiki,synthetic",
                 results: str | None = None) -> argparse.ArgumentParser:
    """The options every training benchmark takes (more are added by each script); ``results``:
    the default results file name under ``benchmarks/results/``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if datasets:
        ap.add_argument("--datasets", default=datasets)
    ap.add_argument("--wiki", "--data", dest="wiki", default=DEFAULT_WIKI, help="the Wiki folder (wikiData.mat)")
    ap.add_argument("--bits", default="16,32,64,128")
    ap.add_argument("--methods", default=methods)
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (train.seed) on the same split: mean ± std")
    ap.add_argument("--out", default=out)
    ap.add_argument("--resume", action="store_true", help="reuse finished runs (metrics.json) in --out")
    if results:
        ap.add_argument("--results", default=str(RESULTS / results),
                        help="the results file the README / docs tables render from (benchmarks/tables.py)")
    return ap


def seeds_of(args) -> list[int]:
    return [int(s) for s in args.seeds.split(",")]


def run_datasets(datasets: str, wiki: str, title: str, out: Path, bench: Callable[[str, str | None], Report],
                 results: str | Path, script: str) -> str:
    """``bench(dataset, root)`` (a finished Report) for each comma-separated dataset (Wiki skipped,
    with a note, when ``wiki``/wikiData.mat is absent); prints the joined sections, writes
    ``out``/results.md and the results file."""
    parts, reports = [], {}
    for ds in datasets.split(","):
        root = None
        if ds == "wiki":
            root = wiki
            if not (Path(root) / "wikiData.mat").exists():
                parts.append(f"## wiki: skipped ({root}/wikiData.mat not found)")
                print(parts[-1])
                continue
        reports[ds] = bench(ds, root)
        parts.append(reports[ds].markdown(level=2))
    text = f"# {title}\n\n" + "\n\n".join(parts)
    print("\n" + text)
    write_text_atomic(Path(out) / "results.md", text)
    save_results(results, script, reports)
    return text


def finish_dataset(report: Report, bits: list[int], out: Path, cca: bool = False,
                   seeds: list[int] | None = None) -> Report:
    """Random codes (and the CCA rows) beside the trained rows, for each seed; ``out``/results.json and
    the curves at the largest code length; returns the report."""
    report.add_baselines(bits, cca=cca, seeds=seeds)
    report.write(out, plot_bits=max(bits))
    return report


def save_results(path, script: str, reports: dict[str, Report | dict], extra: dict | None = None) -> Path:
    """The results file of one benchmark run (``benchmarks/results/<name>.json``): every report's
    rows (each seed's, without curves), their mean ± std per name and length (``summary``), its
    split and label prior, keyed by section name; the
    tables in the README and docs are rendered from it (``python benchmarks/tables.py``)."""
    from cmhash.utils import write_json_atomic

    sections = {}
    for key, r in reports.items():
        if isinstance(r, dict):  # a section kept from the results file as it was
            sections[key] = r
            continue
        s = r.inputs.split
        rows = [{k: v for k, v in row.items() if k not in ("curves", "best_val")} for row in r.rows]
        sections[key] = {"title": r.title, "label_prior": r.label_prior, "split": s.sizes(), "info": r.inputs.info,
                         "rows": rows, "summary": seed_summary(rows)}
    path = Path(path)
    write_json_atomic(path, {"script": script, "sections": sections, **(extra or {})})
    print(f"results: {path}")
    return path


def stored_rows(results: dict, section: str) -> dict[tuple[str, int, int], dict]:
    """(NAME, bits, seed) -> row of the trained methods already in a results file's section ``section``."""
    rows = results.get("sections", {}).get(section, {}).get("rows", [])
    return {(r["name"], r["bits"], r.get("seed", 0)): r for r in rows if r["name"] not in BASELINE_ROWS}


def run_queue(jobs: list, run_one, wait_for_held: bool = True) -> None:
    """Run every job (its run folder first) whose folder no other process holds; then wait for the
    held ones in turn (another worker, e.g. a second ``bench_ucm.py`` into the same --out, trains
    them; ``run_one`` then reads its finished run back). ``wait_for_held=False``: ``run_one`` for
    every job at once, without locks (it reads finished runs only)."""
    if not wait_for_held:  # reading finished runs only: no lock, no folder made
        for job in jobs:
            run_one(*job)
        return
    pending = list(jobs)
    for wait in (0.0, 24 * 3600.0):
        left = []
        for job in pending:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(locked_run_folder(job[0], wait=wait))
                except CmhashError:
                    left.append(job)  # another worker trains it now
                    continue
                run_one(*job)
        pending = left
