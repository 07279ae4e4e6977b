"""``cmhash tables``: render the marked tables of Markdown files from results files."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .app import main


@main.command()
@click.argument("docs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="the folder the markers' results files are in")
@click.option("--check", is_flag=True, help="change nothing; exit 1 naming each table that differs from its results")
@click.option("--print", "show", type=click.Path(path_type=Path), default=None, metavar="RESULTS",
              help="print every section of one results file as tables, and stop")
def tables(docs, results_dir, check, show):
    """Rewrite every marked table (<!-- table: FILE.json section=... metric=... -->) of DOCS
    (default: README.md and docs/*.md here) from its results file: tables are rendered, never typed."""
    from ..eval.tables import render_documents, render_file

    if show is not None:
        click.echo(render_file(show))
        return
    root = Path.cwd()
    docs = list(docs) or [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]
    n, stale = render_documents([Path(d).resolve() for d in docs], results_dir, check, root.resolve())
    for c in stale:
        click.echo(("differs from its results: " if check else "rendered: ") + c)
    click.echo(f"{n} tables, {len(stale)} {'differ' if check else 'rewritten'}")
    if check and stale:
        sys.exit(1)
