"""``cmhash index build | add | remove | info``: the store of encoded collections (``cmhash.index``)."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..utils import CmhashError
from .app import bits_option, key_values, main, registry_choice


@main.group()
def index():
    """Build, grow, shrink and describe a searchable index of encoded collections."""


_WAIT = click.option("--wait", type=click.FloatRange(0), default=600.0, show_default=True,
                     help="seconds to wait for another writer of the index to finish")


@index.command("build")
@click.argument("codes", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="index folder")
@click.option("--folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a folder of images + captions.tsv: features, fit, encode and index it in one run (no CODES)")
@click.option("--method", "-m", type=registry_choice("methods"), default=None,
              help="with --folder: the method to fit [cca-itq: fitted in seconds, as good as the deep "
                   "unsupervised methods on frozen features]")
@bits_option("with --folder: the code length [64]")
@click.option("--text-encoder", type=registry_choice("text encoders"), default=None,
              help="with --folder: how captions become vectors [auto: words, or characters for scripts without spaces]")
@click.option("--set", "sets", multiple=True, help="with --folder: a run setting, e.g. --set train.seed=1")
@click.option("--backend", type=registry_choice("index backends"), default="flat", show_default=True,
              help="flat: exact scan (own kernel); mih: multi-index hashing (exact, sublinear); ivf: approximate "
                   "cross-modal; faiss; milvus")
@click.option("--param", "params", multiple=True, help="backend parameter, e.g. --param m=4 or --param uri=http://h:19530")
@click.option("--overwrite", is_flag=True, help="replace an existing index in --out (kept until the new one is complete)")
@_WAIT
def index_build(codes, out, folder, method, bits, text_encoder, sets, backend, params, overwrite, wait):
    """Build an index from folders written by `cmhash encode` (CODES), or from a folder of photos
    and captions in one run (--folder PHOTOS: features, fit, encode, index, each step timed).

    All-or-nothing: every folder is checked first, and the index (or the one it replaces) changes
    only when the whole build is written; a build that dies is completed by running it again."""
    if folder is not None:
        if codes:
            raise CmhashError("give codes folders or --folder, not both")
        from ..train.folder_index import DEFAULT_METHOD, index_folder

        info = index_folder(folder, out, method or DEFAULT_METHOD, bits or 64, backend, sets, text_encoder, overwrite,
                            click.echo)
        click.echo(f"built {out} in {sum(info['steps'].values()):.1f} s: {info['items']} items, {info['bits']} bits")
        click.echo(f"search it: cmhash search {out} --text \"...\"   or serve it: cmhash serve {out}")
        return
    if not codes:
        raise CmhashError("give the codes folders to index (written by `cmhash encode`), or --folder PHOTOS")
    if method or bits or text_encoder or sets:
        raise CmhashError("--method, --bits, --text-encoder and --set go with --folder (codes folders are encoded "
                          "already)")
    from ..index.folders import build_index

    info = build_index(codes, out, backend, key_values(params, "--param"), overwrite, wait, click.echo)
    if info is None:
        click.echo(f"{out} was already built from these folders: nothing to do")
        return
    click.echo(f"built {out}: {info['items']} items, {info['bits']} bits, backend {backend}, "
               f"{info['bytes_per_item']} bytes/item on disk")
    click.echo(f"search it: cmhash search {out} --text \"...\"   or serve it: cmhash serve {out}")


@index.command("add")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("codes", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a folder of images + captions.tsv, encoded with the index's model and added (no CODES)")
@_WAIT
def index_add(index_dir, codes, folder, wait):
    """Add encoded collections (CODES) to an existing index (same model, same code length), or a
    folder of photos and captions encoded with the index's own model (--folder).

    One transaction: all folders or none. Run again after a failure or a kill, it completes the
    add (items already in the index with the same codes are skipped)."""
    if folder is not None:
        if codes:
            raise CmhashError("give codes folders or --folder, not both")
        from ..train.folder_index import add_folder

        added, store, _ = add_folder(index_dir, folder, click.echo)
        click.echo(f"added {added} items; {index_dir} now holds {store.ntotal} (generation {store.generation})")
        return
    if not codes:
        raise CmhashError("give the codes folders to add (written by `cmhash encode`), or --folder PHOTOS")
    from ..index.folders import add_to_index

    added, skipped, store = add_to_index(index_dir, codes, wait, click.echo)
    again = f" ({skipped} were already there with the same codes)" if skipped else ""
    click.echo(f"added {added} items{again}; {index_dir} now holds {store.ntotal} (generation {store.generation})")


def _id_list(values, ids_file) -> np.ndarray:
    words = list(values)
    if ids_file is not None:
        try:
            words += Path(ids_file).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as e:
            raise CmhashError(f"{ids_file}: cannot read ids ({e})") from None
    out = []
    for w in words:
        for part in w.split(","):
            if not part.strip():
                continue
            try:
                v = int(part)
            except ValueError:
                raise CmhashError(f"{part!r} is not an item id (ids are integers >= 0)") from None
            if not 0 <= v < 2**63:
                raise CmhashError(f"{part}: item ids are integers from 0 to 2^63-1")
            out.append(v)
    if not out:
        raise CmhashError("give the ids to remove (arguments, comma-separated, or --ids-file)")
    return np.unique(np.asarray(out, np.int64))


@index.command("remove")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("ids", nargs=-1)
@click.option("--ids-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a file of ids (whitespace- or comma-separated)")
@_WAIT
def index_remove(index_dir, ids, ids_file, wait):
    """Remove items by id from an index (one transaction); ids not in the index are reported."""
    from ..index.store import IndexStore

    want = _id_list(ids, ids_file)
    store = IndexStore.open(index_dir, hold_lock=True, wait=wait, on_wait=click.echo)
    try:
        gone = store.remove(want, commit=False)
        store.commit()
    finally:
        store.close()
    missing = len(want) - gone
    click.echo(f"removed {gone} items" + (f" ({missing} of the ids given were not in the index)" if missing else "")
               + f"; {index_dir} now holds {store.ntotal} (generation {store.generation})")


@index.command("info")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the description as JSON")
@click.option("--recall", "recall_queries", type=click.IntRange(0), default=0, show_default=True,
              help="measure the recall@50 of approximate directions now, on this many sampled queries")
@click.option("--verify", is_flag=True, help="read every file and check its checksum (a small index always is)")
def index_info(index_dir, as_json, recall_queries, verify):
    """Describe an index: size, code length, backend, model, the search kernel, how each query
    direction is searched (exact, or approximate with its recall@50 measured at the last commit),
    and whether the files' checksums were checked (always for a small index; --verify for any)."""
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir, verify=True if verify else None)
    try:
        info = store.info()
        if recall_queries:
            info["recall_now"] = {d: f"recall@{r['k']} {r['recall']:.3f} (strict {r['recall_strict']:.3f}) at "
                                     f"nprobe {r['nprobe']} on {r['queries']} sampled queries"
                                  for d, r in store.estimate_recall(recall_queries).items()} or "no approximate direction"
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        if k == "model" and isinstance(v, dict) and not v.get("method"):
            v = "none recorded (built from codes without a model)"
        elif k == "model" and isinstance(v, dict):
            v = (f"{v.get('method')} ({v.get('fingerprint')}), {v.get('bits')} bits, image input {v.get('image_input')}"
                 + (f" through {v['backbone']}" if v.get("backbone") else "")
                 + f", text encoder {v.get('text_encoder') or 'dataset vectors'}; {v.get('checkpoint')}")
        if isinstance(v, dict):  # one line per entry (the search plan per direction, recall now)
            click.echo(f"{k:>15}:")
            for kk, vv in v.items():
                click.echo(f"{'':>17}{kk}: {vv}")
            continue
        click.echo(f"{k:>15}: {v}")
