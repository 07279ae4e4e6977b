"""``cmhash demo``: the main job on the embedded dataset, from nothing to a searchable index."""
from __future__ import annotations

import time
from pathlib import Path

import click

from .app import code_lengths, main, registry_choice

DEMO_QUERY, DEMO_LABEL = "dog puppy", "dog"  # the query the demo ends on, and the label it looks for


@main.command()
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("cmhash-demo"), show_default=True,
              help="the demo's folder: its run, results, codes and index")
@click.option("--n-items", type=click.IntRange(min=100), default=3000, show_default=True,
              help="size of the embedded dataset")
@click.option("--bits", "-b", default="16,32,64", show_default=True, help="code lengths, comma-separated")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="training epochs (default: the preset's)")
@click.option("--text-encoder", type=registry_choice("text encoders"), default="minilm", show_default=True,
              help="how the tags become text vectors: minilm, the pretrained sentence encoder (any English words "
                   "as queries); words, the embedded tag list as a vocabulary")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for training (default: the cores other processes leave free); the README's "
                   "table states how much its numbers move with this")
@click.option("--resume", is_flag=True, help="continue an interrupted demo")
@click.option("--overwrite", is_flag=True, help="train again over a finished demo in --out")
def demo(out: Path, n_items: int, bits: str, epochs: int | None, text_encoder: str, threads: int | None,
         resume: bool, overwrite: bool):
    """The main job: generate the embedded dataset, train DJSRH through the pretrained backbone at
    16/32/64 bits, evaluate against random codes, save curves, index the 64-bit codes and query them.

    The tags are read by the pretrained MiniLM sentence encoder by default, so a query may use any
    English words (docs/text.md has the measurements against the tag vocabulary, --text-encoder
    words)."""
    from ..index.folders import build_index
    from ..search import open_for_search
    from ..train.protocol import train_lengths

    t0 = time.time()
    click.secho(f"cmhash demo: DJSRH on the embedded synthetic dataset (rendered images + noisy tags, text encoder "
                f"{text_encoder})", bold=True)
    base = {"data": {"options": {"n_items": n_items}, "text_encoder": text_encoder},
            "train": {**({"epochs": epochs} if epochs else {}), **({"num_threads": threads} if threads else {})}}
    bit_list = code_lengths(bits)
    _, inputs = train_lengths("djsrh", "synthetic", bit_list, out, base=base, resume=resume, overwrite=overwrite,
                              echo=click.echo)
    k = max(bit_list)
    click.echo(f"\nencoding all {len(inputs.data)} items with the {k}-bit model and indexing them ...")
    from ..codes_folder import write_collection
    from ..encoder import Encoder

    enc = Encoder.load(out, k, "auto")
    write_collection(enc, inputs.data, out / "codes", progress=False, overwrite=True)  # from the models just trained
    build_index([out / "codes"], out / "index", overwrite=True)
    store, enc = open_for_search(out / "index")
    try:
        hits = store.search(enc.query_code(DEMO_QUERY)[0], 10, target="image", source="text")[0]
    finally:
        store.close()
    click.echo(f"  text query {DEMO_QUERY!r} -> images, top 10 (Hamming distance: labels):")
    for h in hits:
        click.echo(f"    d={h['distance']:<3} {', '.join(h['labels'])}")
    found = sum(DEMO_LABEL in h["labels"] for h in hits)
    click.echo(f"  {found} of these 10 images are labelled {DEMO_LABEL!r} ({DEMO_LABEL} is on "
               f"{inputs.data.labels[:, inputs.data.label_names.index(DEMO_LABEL)].mean():.0%} of all images)")
    click.echo(f"\ndone in {time.time() - t0:.0f}s. Everything is in {out}/:")
    for name in ("results.md", "results.json", "split.json"):
        click.echo(f"  {out / name}")
    for p in sorted(out.glob("curves-*.png")):
        click.echo(f"  {p}  (PR and precision@top-K curves)")
    click.echo(f"  {out}/bits-*/last.pt  (checkpoints: `cmhash evaluate {out}` re-scores them)")
    click.echo(f"  {out / 'index'}/  (the {k}-bit codes of all {len(inputs.data)} items, indexed)")
    click.secho(f"\nSearch it in a browser: cmhash serve {out / 'index'}   then open http://127.0.0.1:8000/", bold=True)
    click.echo(f"or from here: cmhash search {out / 'index'} --text \"{DEMO_QUERY}\"")

