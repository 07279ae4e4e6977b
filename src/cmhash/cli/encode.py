"""``cmhash encode``: a trained model + a collection -> a codes folder (``cmhash.codes_folder``)."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..utils import CmhashError
from .app import bits_option, key_values, main


@main.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@bits_option("code length, when MODEL is a run folder [the longest]")
@click.option("--dataset", "-d", default=None, help="collection to encode [the model's training dataset]")
@click.option("--data-root", type=click.Path(), default=None, help="folder holding the dataset's files")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="output folder for the codes")
@click.option("--overwrite", is_flag=True, help="replace the codes already in --out")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="items encoded at a time")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="encode only the first N items")
@click.option("--id-start", type=click.IntRange(0, 2**62), default=0, show_default=True,
              help="ids are id-start + row number")
@click.option("--data-option", "data_options", multiple=True,
              help="dataset loader option, e.g. --data-option captions=more.tsv")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="image reading processes [the model's backbone.workers]")
@click.option("--device", default="auto", show_default=True, help="where items are encoded: auto, cpu, cuda, cuda:N")
def encode(model, bits, dataset, data_root, out, overwrite, batch_size, limit, id_start, data_options, workers,
           device):
    """Encode a collection (images and texts) with a trained MODEL (run folder or checkpoint).

    Under torchrun (torchrun --nproc-per-node N [--nnodes M ...] -m cmhash encode ...) each
    process encodes its share of the collection on its own device (GPU LOCAL_RANK on CUDA) and one
    codes folder results, the same as one process would write; OUT must be reachable by every rank."""
    from ..codes_folder import refuse_existing, write_collection
    from ..distributed import init_from_env, launched, shutdown, world
    from ..encoder import Encoder
    from ..utils import resolve_device

    refuse_existing(out, overwrite)  # before the model or the data is loaded
    if launched():
        device = str(init_from_env(resolve_device(device)))
    rank, size = world()
    enc = Encoder.load(model, bits, device)
    if workers is not None:
        enc.cfg.backbone.workers = workers
    data = enc.load_collection(dataset, data_root, key_values(data_options, "--data-option"))
    n = len(data) if limit is None else min(limit, len(data))
    if n == 0:
        raise CmhashError(f"{data.name} holds no items to encode")
    rows = np.arange(n)
    if rank == 0:
        click.echo(f"encoding {n} items of {data.name} with {enc.method} ({enc.bits} bits, model {enc.fingerprint}, "
                   f"image input: {enc.spec.image.mode})" + (f" in {size} processes" if size > 1 else ""))
    try:
        write_collection(enc, data, out, batch_size=batch_size, rows=rows, ids=rows + id_start, shard=(rank, size),
                         overwrite=overwrite)
    finally:
        shutdown()
    if rank == 0:
        click.echo(f"wrote {out}/ (image.npy, text.npy: {n} x {enc.bits // 8} bytes each; items.jsonl; codes.json)")
