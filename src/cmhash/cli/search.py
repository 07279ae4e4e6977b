"""``cmhash search | serve``: query an index with a text or an image, from here or over HTTP."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..utils import CmhashError
from ..search import MAX_K
from .app import main


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--text", default=None, help="query text (finds images by default)")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="query image file (finds texts by default)")
@click.option("-k", type=click.IntRange(1, MAX_K), default=10, show_default=True,
              help=f"how many results (at most {MAX_K}, as the service)")
@click.option("--same-modal", is_flag=True, help="text->texts or image->images instead of across modalities")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="model run/checkpoint [the one the index was built with]")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON (the service's format)")
@click.option("--device", default="auto", show_default=True, help="where the query is encoded: auto, cpu, cuda")
def search(index_dir, text, image, k, same_modal, model, as_json, device):
    """Search an index with a text or an image."""
    if (text is None) == (image is None):
        raise CmhashError("give exactly one of --text or --image")
    from ..search import open_for_search, target_of, text_query_code

    # a CCA-ITQ model over a bag of words answers with numpy alone: no torch, no model load
    fast = text_query_code(index_dir, text) if text is not None and model is None else None
    if fast is not None:  # its export carries the fingerprint of the model the manifest names: checked there
        from ..index.store import IndexStore

        store, enc = IndexStore.open(index_dir), None
    else:
        store, enc = open_for_search(index_dir, model, device)
    try:
        words = None
        if text is not None:
            # no known word: an error naming the encoder
            (code, words), modality = fast if fast is not None else enc.query_code(text), "text"
        else:
            if not image.is_file():
                raise CmhashError(f"{image}: no such image file")
            code, modality = enc.image_file_codes([image]), "image"
        target = target_of(modality, same_modal)
        hits = store.search(code, k, target=target, source=modality)[0]
    finally:
        store.close()
    if as_json:
        out = {"query": text or str(image), "target": target, "results": hits}
        if words is not None:
            out.update(known_words=words["used"], unknown_words=words["unknown"], text_encoder=words["encoder"])
        click.echo(json.dumps(out, indent=2))
        return
    if words is not None:
        click.echo(f"text encoder {words['encoder']}: words used: {_words(words, 'used')}"
                   + (f"; unknown: {_words(words, 'unknown')}" if words["unknown"] else ""))
    click.echo(f"{modality} -> {target}, top {len(hits)} of {store.ntotal}:")
    for rank, h in enumerate(hits, 1):
        cap = (h.get("caption") or "")[:60]
        labels = ", ".join(h.get("labels") or [])[:30]
        click.echo(f"{rank:>3}. d={h['distance']:<3} {h.get('source') or '#' + str(h['id'])}"
                   + (f"  [{labels}]" if labels else "") + (f"  {cap}" if cap else ""))


def _words(words: dict, key: str) -> str:
    """The words ``Encoder.explain`` echoes (at most 20), and how many more there were."""
    more = words[f"n_{key}"] - len(words[key])
    return " ".join(words[key]) + (f" (and {more} more)" if more > 0 else "")


LOOPBACK = ("localhost", "127.0.0.1", "::1")


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="model run/checkpoint [the one the index was built with]")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0 exposes it)")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="port to listen on")
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="a host name clients may use in the Host header; bound to loopback, only localhost, "
                   "127.0.0.1 and ::1 are accepted unless more are given (* accepts any)")
@click.option("--image-workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="image uploads decoded and encoded at a time (the rest queue; text queries never wait)")
@click.option("--device", default="auto", show_default=True, help="where queries are encoded: auto, cpu, cuda")
def serve(index_dir, model, host, port, allow_hosts, image_workers, device):
    """Serve an index over HTTP: a JSON API and a web page (http://HOST:PORT/).

    A writer (`cmhash index add` / `remove`) may change the index while it is served: requests
    switch to the new generation once it is verified."""
    import socket

    from ..utils import require_extra

    _, uvicorn, _ = require_extra("serve", "cmhash serve")  # fastapi, uvicorn, python-multipart (uploads)
    from ..service import ServiceConfig, create_app, warm_encoder

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # a clear error before anything is loaded or printed
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:  # in use, not an address of this machine, no permission
            raise CmhashError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                              + (" (another server is using it: pick another --port)" if e.errno == 98 else "")) from None
    from ..search import open_for_search

    store, enc = open_for_search(index_dir, model, device)
    if allow_hosts:
        hosts = list(allow_hosts)
    elif host in LOOPBACK:
        hosts = list(LOOPBACK)
    else:
        hosts = ["*"]  # bound to a public address: any name may reach it (restrict with --allow-host)
    app = create_app(store, enc, ServiceConfig(image_workers=image_workers),
                     allowed_hosts=hosts + ([host] if "*" not in hosts else []))
    warm_encoder(enc)  # the text encoder and the backbone loaded now: the first query is not the slow one
    click.echo(f"serving {store.ntotal} items ({store.bits} bits, {store.manifest['backend']}) "
               f"on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    # uvicorn binds the port itself: serving on a socket bound here measured 40% fewer text queries a
    # second (161 against 261 req/s, 8 clients: benchmarks/bench_service.py's setting)
    uvicorn.run(app, host=host, port=port, log_level="warning")
