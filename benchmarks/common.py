"""What the benchmark scripts share: their options, the per-dataset loop, the baselines and the summary
(one run into a report is ``cmhash.train.protocol.run_into``, as for train and sweep)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from cmhash.eval.report import Report
from cmhash.utils import write_text_atomic

DEFAULT_WIKI = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki")


def bench_parser(doc: str, methods: str, out: str, datasets: str | None = "wiki,synthetic") -> argparse.ArgumentParser:
    """The options every training benchmark takes (more are added by each script)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if datasets:
        ap.add_argument("--datasets", default=datasets)
    ap.add_argument("--wiki", "--data", dest="wiki", default=DEFAULT_WIKI, help="the Wiki folder (wikiData.mat)")
    ap.add_argument("--bits", default="16,32,64,128")
    ap.add_argument("--methods", default=methods)
    ap.add_argument("--out", default=out)
    ap.add_argument("--resume", action="store_true", help="reuse finished runs (metrics.json) in --out")
    return ap


def run_datasets(datasets: str, wiki: str, title: str, out: Path, bench: Callable[[str, str | None], str]) -> str:
    """``bench(dataset, root)`` for each comma-separated dataset (Wiki skipped, with a note, when
    ``wiki``/wikiData.mat is absent); prints the joined sections and writes ``out``/results.md."""
    parts = []
    for ds in datasets.split(","):
        root = None
        if ds == "wiki":
            root = wiki
            if not (Path(root) / "wikiData.mat").exists():
                parts.append(f"## wiki: skipped ({root}/wikiData.mat not found)")
                print(parts[-1])
                continue
        parts.append(bench(ds, root))
    text = f"# {title}\n\n" + "\n\n".join(parts)
    print("\n" + text)
    write_text_atomic(Path(out) / "results.md", text)
    return text


def finish_dataset(report: Report, bits: list[int], out: Path, cca: bool = False) -> str:
    """Random codes (and CCA hashing) beside the rows, ``out``/results.json and the curves at the
    largest code length; returns the dataset's Markdown section."""
    report.add_baselines(bits, cca=cca)
    report.write(out, plot_bits=max(bits))
    return report.markdown(level=2)
