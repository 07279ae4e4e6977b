"""``cmhash encode | index build/add/info | search | serve``: from a trained model to a searchable collection."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..spec import TextSpec
from ..utils import CmhashError
from .app import key_values, main, registry_choice


@main.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--bits", "-b", type=int, default=None, help="code length, when MODEL is a run folder [the longest]")
@click.option("--dataset", "-d", default=None, help="collection to encode [the model's training dataset]")
@click.option("--data-root", type=click.Path(), default=None, help="folder holding the dataset's files")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="output folder for the codes")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="encode only the first N items")
@click.option("--id-start", type=int, default=0, show_default=True, help="ids are id-start + row number")
@click.option("--data-option", "data_options", multiple=True,
              help="dataset loader option, e.g. --data-option captions=more.tsv")
@click.option("--workers", type=int, default=None, help="image reading processes [the model's backbone.workers]")
@click.option("--device", default="auto", show_default=True)
def encode(model, bits, dataset, data_root, out, batch_size, limit, id_start, data_options, workers, device):
    """Encode a collection (images and texts) with a trained MODEL (run folder or checkpoint).

    Under torchrun (``torchrun --nproc-per-node N [--nnodes M ...] -m cmhash encode ...``) each
    process encodes its share of the collection on its own device (GPU LOCAL_RANK on CUDA) and one
    codes folder results, the same as one process would write; OUT must be reachable by every rank."""
    from ..data import load_dataset
    from ..distributed import init_from_env, launched, shutdown, world
    from ..encoder import Encoder
    from ..utils import resolve_device

    if launched():
        device = str(init_from_env(resolve_device(device)))
    rank, size = world()
    enc = Encoder.load(model, bits, device)
    if workers is not None:
        enc.cfg.backbone.workers = workers
    dc = enc.cfg.data
    name = dataset or dc.dataset
    opts = dict(dc.options) if name == dc.dataset and not data_root else {}
    opts.update(key_values(data_options, "--data-option"))
    data = load_dataset(name, data_root or (dc.root if name == dc.dataset else None), **opts).data
    if batch_size < 1:
        raise CmhashError("--batch-size must be positive")
    n = len(data) if limit is None else min(limit, len(data))
    if n == 0:
        raise CmhashError(f"{data.name} holds no items to encode")
    rows = np.arange(n)
    if rank == 0:
        click.echo(f"encoding {n} items of {data.name} with {enc.method} ({enc.bits} bits, model {enc.fingerprint}, "
                   f"image input: {enc.image_mode})" + (f" in {size} processes" if size > 1 else ""))
    try:
        enc.encode_collection(data, out, batch_size=batch_size, rows=rows, ids=rows + id_start,
                              cache_dir=enc.cfg.backbone.cache_dir, shard=(rank, size))
    finally:
        shutdown()
    if rank == 0:
        click.echo(f"wrote {out}/ (image.npy, text.npy: {n} x {enc.bits // 8} bytes each; items.jsonl; codes.json)")


def demo_index(out: Path, bits: int, data) -> Path:
    """The demo's last step: encode every item with the ``bits`` model and index the codes."""
    from ..encoder import Encoder
    from ..index.store import IndexStore

    enc = Encoder.load(out, bits, "auto")
    click.echo(f"\nencoding all {len(data)} items with the {bits}-bit model and indexing them ...")
    codes = enc.encode_collection(data, out / "codes", cache_dir=enc.cfg.backbone.cache_dir, progress=False)
    loaded = _read_folders([codes])
    store = IndexStore.create(out / "index", bits, "flat", model=enc.info(), vocab=enc.vocab,
                              label_names=data.label_names, overwrite=True, commit=False, hold_lock=True)
    _add_folders(store, loaded, present="error")
    query = "dog puppy canine pet"
    hits = store.search(enc.encode_texts([query]), 5, target="image", source="text")[0]
    store.close()
    click.echo(f"  text query {query!r} -> images, top 5 (Hamming distance: labels):")
    for h in hits:
        click.echo(f"    d={h['distance']:<3} {', '.join(h['labels'])}")
    return out / "index"


@main.group()
def index():
    """Build, grow, shrink and describe a searchable index of encoded collections."""


def _read_folders(folders, bits: int | None = None, fingerprint: str | None = None,
                  where: str = "the first folder") -> list:
    """Every codes folder read and checked, against each other and against the index (``bits``,
    ``fingerprint``), before anything is changed: (folder, codes, ids) per folder."""
    from ..encoder import read_codes

    folders = [Path(f) for f in folders]
    twice = [f for i, f in enumerate(folders) if f in folders[:i]]
    if twice:
        raise CmhashError(f"{twice[0]} is given twice")
    loaded = []
    for f in folders:
        c = read_codes(f, items=False)  # records checked, not held: added in chunks
        meta = c["meta"]
        bits = meta["bits"] if bits is None else bits
        if meta["bits"] != bits:
            raise CmhashError(f"{f}: {meta['bits']}-bit codes; {where} holds {bits}-bit codes")
        fp = meta["model"].get("fingerprint")
        fingerprint = fp if fingerprint is None else fingerprint
        if fp != fingerprint:
            raise CmhashError(f"{f}: encoded by model {fp}, {where} by model {fingerprint}: "
                              "codes of different models are not comparable")
        ids = c["ids"]  # unique (read_codes)
        for other, _, other_ids in loaded:  # arrays, not a dict of ids: memory stays ~8 bytes an item
            shared = ids[np.isin(ids, other_ids)]
            if len(shared):
                raise CmhashError(f"{f}: id {int(shared[0])} is also in {other}; encode one of them with --id-start")
        loaded.append((f, c, ids))
    return loaded


ADD_CHUNK = 500_000  # item records per store.add: about 200 MB of records at a time


def _add_folders(store, loaded, present: str) -> tuple[int, int]:
    """Add every folder's items in one transaction (one commit); returns (added, already there)."""
    added = skipped = 0
    for f, c, ids in loaded:
        at = 0
        for items in c["chunks"](ADD_CHUNK):  # bounded memory: a chunk of records at a time
            m = len(items)
            got = store.add(np.asarray(c["image"][at:at + m]), np.asarray(c["text"][at:at + m]), items,
                            ids=ids[at:at + m], root=c["meta"].get("root"), commit=False, present=present)
            added, skipped, at = added + len(got), skipped + m - len(got), at + m
    store.commit()
    return added, skipped


def _folders_fingerprint(folders) -> list[str]:
    """What a build was made from: each codes folder's files, hashed (``index build`` run again on the
    same folders finds its index complete)."""
    from ..index.store import sha256_file

    return [":".join(sha256_file(Path(f) / n)[:16] for n in ("codes.json", "image.npy", "text.npy", "items.jsonl"))
            for f in folders]


_WAIT = click.option("--wait", type=click.FloatRange(0), default=600.0, show_default=True,
                     help="seconds to wait for another writer of the index to finish")


@index.command("build")
@click.argument("codes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="index folder")
@click.option("--backend", type=registry_choice("index backends"), default="flat", show_default=True,
              help="flat: exact scan (own kernel); mih: multi-index hashing (exact, sublinear); faiss; milvus")
@click.option("--param", "params", multiple=True, help="backend parameter, e.g. --param m=4 or --param uri=http://h:19530")
@click.option("--overwrite", is_flag=True, help="replace an existing index in --out (kept until the new one is complete)")
@_WAIT
def index_build(codes, out, backend, params, overwrite, wait):
    """Build an index from one or more folders written by `cmhash encode`.

    All-or-nothing: every folder is checked first, and the index (or the one it replaces) changes
    only when the whole build is written; a build that dies is completed by running it again."""
    from ..index.store import IndexStore, StoreError, read_manifest

    loaded = _read_folders(codes)
    made_from = _folders_fingerprint(codes)
    if (out / "manifest.json").exists() and not overwrite:
        try:
            old = read_manifest(out)  # the manifest only: what the index was built from
        except StoreError:
            old = {}
        if old.get("built_from") == made_from and old.get("backend") == backend:
            click.echo(f"{out} was already built from these folders ({old.get('n_items')} items): nothing to do")
            return
    first = loaded[0][1]["meta"]
    store = IndexStore.create(out, first["bits"], backend, model=first["model"],
                              vocab=TextSpec.from_dict(first["spec"]["text"]).vocab,
                              label_names=first.get("label_names"), backend_params=key_values(params, "--param"),
                              overwrite=overwrite, commit=False, hold_lock=True, wait=wait, on_wait=click.echo)
    try:
        store.manifest["built_from"] = made_from
        total, _ = _add_folders(store, loaded, present="error")
        info = store.info()
    finally:
        store.close()
    click.echo(f"built {out}: {total} items, {info['bits']} bits, backend {backend}, "
               f"{info['bytes_per_item']} bytes/item on disk")
    click.echo(f"search it: cmhash search {out} --text \"...\"   or serve it: cmhash serve {out}")


@index.command("add")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("codes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_WAIT
def index_add(index_dir, codes, wait):
    """Add encoded collections to an existing index (same model, same code length).

    One transaction: all folders or none. Run again after a failure or a kill, it completes the
    add (items already in the index with the same codes are skipped)."""
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir, hold_lock=True, wait=wait, on_wait=click.echo)
    try:
        loaded = _read_folders(codes, store.bits, store.manifest.get("model", {}).get("fingerprint"),
                               where=f"the index {index_dir}")
        added, skipped = _add_folders(store, loaded, present="skip")
    finally:
        store.close()
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
@click.option("--json", "as_json", is_flag=True)
@click.option("--recall", "recall_queries", type=click.IntRange(0), default=0, show_default=True,
              help="measure the recall@50 of approximate directions now, on this many sampled queries")
def index_info(index_dir, as_json, recall_queries):
    """Describe an index: size, code length, backend, model, how each query direction is searched
    (exact, or approximate with its recall@50 measured at the last commit), files (checksums verified)."""
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir)
    info = store.info()
    if recall_queries:
        info["recall_now"] = {d: f"recall@{r['k']} {r['recall']:.3f} (strict {r['recall_strict']:.3f}) at nprobe "
                                 f"{r['nprobe']} on {r['queries']} sampled queries"
                              for d, r in store.estimate_recall(recall_queries).items()} or "no approximate direction"
    store.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        click.echo(f"{k:>15}: {v}")


def open_for_search(index_dir: Path, model: Path | None, device: str = "auto"):
    """The store and an encoder whose model matches it (fingerprint checked)."""
    from ..encoder import Encoder
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir)
    m = store.manifest.get("model", {})
    src = model or (Path(m["checkpoint"]) if m.get("checkpoint") else None)
    if src is None or not Path(src).exists():
        raise CmhashError(f"{index_dir}: the model it was built with ({m.get('checkpoint')}) is not there; "
                          "pass --model")
    enc = Encoder.load(src, store.bits, device)
    if m.get("fingerprint") and enc.fingerprint != m["fingerprint"]:
        raise CmhashError(f"{src}: model {enc.fingerprint} is not the one the index was built with "
                          f"({m['fingerprint']}): its codes would not be comparable")
    if enc.bits != store.bits:
        raise CmhashError(f"{src}: a {enc.bits}-bit model; the index holds {store.bits}-bit codes")
    return store, enc


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--text", default=None, help="query text (finds images by default)")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="query image file (finds texts by default)")
@click.option("-k", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.option("--same-modal", is_flag=True, help="text->texts or image->images instead of across modalities")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="model run/checkpoint [the one the index was built with]")
@click.option("--json", "as_json", is_flag=True)
@click.option("--device", default="auto", show_default=True)
def search(index_dir, text, image, k, same_modal, model, as_json, device):
    """Search an index with a text or an image."""
    if (text is None) == (image is None):
        raise CmhashError("give exactly one of --text or --image")
    store, enc = open_for_search(index_dir, model, device)
    words = None
    if text is not None:
        (code, words), modality = enc.encode_query(text), "text"  # no known word: an error naming the encoder
    else:
        if not image.is_file():
            raise CmhashError(f"{image}: no such image file")
        code, modality = enc.encode_image_files([image]), "image"
    target = modality if same_modal else ("image" if modality == "text" else "text")
    hits = store.search(code, k, target=target, source=modality)[0]
    store.close()
    if as_json:
        out = {"query": text or str(image), "target": target, "results": hits}
        if words is not None:
            out.update(known_words=words["used"], unknown_words=words["unknown"], text_encoder=words["encoder"])
        click.echo(json.dumps(out, indent=2))
        return
    if words is not None:
        unknown = f"; unknown: {' '.join(words['unknown'])}" if words["unknown"] else ""
        click.echo(f"text encoder {words['encoder']}: words used: {' '.join(words['used'])}{unknown}")
    click.echo(f"{modality} -> {target}, top {len(hits)} of {store.ntotal}:")
    for rank, h in enumerate(hits, 1):
        cap = (h.get("caption") or "")[:60]
        click.echo(f"{rank:>3}. id {h['id']:<8} d={h['distance']:<3} {', '.join(h.get('labels') or [])[:40]:<40} {cap}")


LOOPBACK = ("localhost", "127.0.0.1", "::1")


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0 exposes it)")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="a host name clients may use in the Host header; bound to loopback, only localhost, "
                   "127.0.0.1 and ::1 are accepted unless more are given (* accepts any)")
@click.option("--image-workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="image uploads decoded and encoded at a time (the rest queue; text queries never wait)")
@click.option("--device", default="auto", show_default=True)
def serve(index_dir, model, host, port, allow_hosts, image_workers, device):
    """Serve an index over HTTP: a JSON API and a web page (http://HOST:PORT/).

    A writer (`cmhash index add` / `remove`) may change the index while it is served: requests
    switch to the new generation once it is verified."""
    import socket

    import uvicorn

    from ..service import ServiceConfig, create_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # a clear error before anything is loaded or printed
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:  # in use, not an address of this machine, no permission
            raise CmhashError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                              + (" (another server is using it: pick another --port)" if e.errno == 98 else "")) from None
    store, enc = open_for_search(index_dir, model, device)
    if allow_hosts:
        hosts = list(allow_hosts)
    elif host in LOOPBACK:
        hosts = list(LOOPBACK)
    else:
        hosts = ["*"]  # bound to a public address: any name may reach it (restrict with --allow-host)
    app = create_app(store, enc, ServiceConfig(image_workers=image_workers),
                     allowed_hosts=hosts + ([host] if "*" not in hosts else []))
    click.echo(f"serving {store.ntotal} items ({store.bits} bits, {store.manifest['backend']}) "
               f"on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    # uvicorn binds the port itself: serving on a socket bound here measured 40% fewer text queries a
    # second (161 against 261 req/s, 8 clients: benchmarks/bench_service.py's setting)
    uvicorn.run(app, host=host, port=port, log_level="warning")
