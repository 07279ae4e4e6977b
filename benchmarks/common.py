"""What the benchmark scripts share: the per-dataset loop and the written summary."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from cmhash.eval.runner import markdown_table, plot_curves
from cmhash.train.trainer import label_prior, random_codes_metrics
from cmhash.utils import write_json_atomic, write_text_atomic

DEFAULT_WIKI = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki")


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


def finish_dataset(dataset: str, inputs, rows: list[dict], curves: dict, bits: list[int], out: Path,
                   metrics=("map", "map@50")) -> str:
    """Add random codes (the floor) to ``rows``, plot the PR / top-K ``curves`` at the largest code
    length, write ``out``/dataset/results.json; returns the dataset's Markdown section."""
    rows = rows + [{"name": "random codes", "bits": b, **random_codes_metrics(inputs, b, curves=False)} for b in bits]
    if curves:
        plot_curves(curves, out / dataset / f"curves-{max(bits)}bits.png", f"{dataset}, {max(bits)} bits")
    s = inputs.split
    write_json_atomic(out / dataset / "results.json",
                      {"dataset": dataset, "info": inputs.info, "split": s.sizes(),
                       "rows": [{k: v for k, v in r.items() if k != "curves"} for r in rows]})
    return (f"## {dataset}: query {len(s.query)}, training {len(s.train)}, database {len(s.database)}, "
            f"label prior {label_prior(inputs):.3f}\n\n{markdown_table(rows, metrics)}")
