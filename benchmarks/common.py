"""What the benchmark scripts share: the per-dataset loop and the written summary."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from cmhash.utils import write_text_atomic

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
