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
@click.option("--limit", type=int, default=None, help="encode only the first N items")
@click.option("--id-start", type=int, default=0, show_default=True, help="ids are id-start + row number")
@click.option("--data-option", "data_options", multiple=True,
              help="dataset loader option, e.g. --data-option captions=more.tsv")
@click.option("--workers", type=int, default=None, help="image reading processes [the model's backbone.workers]")
@click.option("--device", default="auto", show_default=True)
def encode(model, bits, dataset, data_root, out, batch_size, limit, id_start, data_options, workers, device):
    """Encode a collection (images and texts) with a trained MODEL (run folder or checkpoint)."""
    from ..data import load_dataset
    from ..encoder import Encoder

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
    n = len(data) if limit is None else max(0, min(limit, len(data)))
    rows = np.arange(n)
    click.echo(f"encoding {n} items of {data.name} with {enc.method} ({enc.bits} bits, model {enc.fingerprint}, "
               f"image input: {enc.image_mode})")
    enc.encode_collection(data, out, batch_size=batch_size, rows=rows, ids=rows + id_start,
                          cache_dir=enc.cfg.backbone.cache_dir)
    click.echo(f"wrote {out}/ (image.npy, text.npy: {n} x {enc.bits // 8} bytes each; items.jsonl; codes.json)")


def demo_index(out: Path, bits: int, data) -> Path:
    """The demo's last step: encode every item with the ``bits`` model and index the codes."""
    from ..encoder import Encoder
    from ..index.store import IndexStore

    enc = Encoder.load(out, bits, "auto")
    click.echo(f"\nencoding all {len(data)} items with the {bits}-bit model and indexing them ...")
    codes = enc.encode_collection(data, out / "codes", cache_dir=enc.cfg.backbone.cache_dir, progress=False)
    store = IndexStore.create(out / "index", bits, "flat", model=enc.info(), vocab=enc.vocab,
                              label_names=data.label_names, overwrite=True)
    _add_codes(store, codes)
    query = "dog puppy canine pet"
    hits = store.search(enc.encode_texts([query]), 5, target="image")[0]
    store.close()
    click.echo(f"  text query {query!r} -> images, top 5 (Hamming distance: labels):")
    for h in hits:
        click.echo(f"    d={h['distance']:<3} {', '.join(h['labels'])}")
    return out / "index"


@main.group()
def index():
    """Build, grow and describe a searchable index of encoded collections."""


def _add_codes(store, codes_dir: Path, chunk: int = 200_000) -> int:
    from ..encoder import read_codes

    c = read_codes(codes_dir)
    meta = c["meta"]
    if meta["bits"] != store.bits:
        raise CmhashError(f"{codes_dir}: {meta['bits']}-bit codes; the index holds {store.bits}-bit codes")
    have = store.manifest.get("model", {}).get("fingerprint")
    if have and have != meta["model"]["fingerprint"]:
        raise CmhashError(f"{codes_dir}: encoded by model {meta['model']['fingerprint']}, the index by {have}: "
                          "codes of different models are not comparable")
    n = meta["n"]
    for s in range(0, n, chunk):
        items = c["items"][s:s + chunk]
        store.add(np.asarray(c["image"][s:s + chunk]), np.asarray(c["text"][s:s + chunk]), items)
    return n


@index.command("build")
@click.argument("codes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="index folder")
@click.option("--backend", type=registry_choice("index backends"), default="flat", show_default=True,
              help="flat: exact scan (own kernel); mih: multi-index hashing (exact, sublinear); faiss; milvus")
@click.option("--param", "params", multiple=True, help="backend parameter, e.g. --param m=4 or --param uri=http://h:19530")
@click.option("--overwrite", is_flag=True, help="replace an existing index in --out")
def index_build(codes, out, backend, params, overwrite):
    """Build an index from one or more folders written by `cmhash encode`."""
    from ..encoder import read_codes
    from ..index.store import IndexStore

    first = read_codes(codes[0])["meta"]
    store = IndexStore.create(out, first["bits"], backend, model=first["model"],
                              vocab=TextSpec.from_dict(first["spec"]["text"]).vocab,
                              label_names=first.get("label_names"), backend_params=key_values(params, "--param"),
                              overwrite=overwrite)
    total = sum(_add_codes(store, Path(c)) for c in codes)
    info = store.info()
    store.close()
    click.echo(f"built {out}: {total} items, {info['bits']} bits, backend {backend}, "
               f"{info['bytes_per_item']} bytes/item on disk")
    click.echo(f"search it: cmhash search {out} --text \"...\"   or serve it: cmhash serve {out}")


@index.command("add")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("codes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def index_add(index_dir, codes):
    """Add encoded collections to an existing index (same model, same code length)."""
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir)
    total = sum(_add_codes(store, Path(c)) for c in codes)
    click.echo(f"added {total} items; {index_dir} now holds {store.ntotal}")
    store.close()


@index.command("info")
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def index_info(index_dir, as_json):
    """Describe an index: size, code length, backend, model, files (checksums verified)."""
    from ..index.store import IndexStore

    store = IndexStore.open(index_dir)
    info = store.info()
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
    hits = store.search(code, k, target=target)[0]
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


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0 exposes it)")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--device", default="auto", show_default=True)
def serve(index_dir, model, host, port, device):
    """Serve an index over HTTP: a JSON API and a web page (http://HOST:PORT/)."""
    import uvicorn

    from ..service import create_app

    store, enc = open_for_search(index_dir, model, device)
    app = create_app(store, enc)
    click.echo(f"serving {store.ntotal} items ({store.bits} bits, {store.manifest['backend']}) "
               f"on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
