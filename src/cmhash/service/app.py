"""FastAPI app over an ``IndexStore`` and the ``Encoder`` of the model that built it.

Endpoints (all errors are JSON ``{"error": {"status": int, "message": str}}`` with that status):

- ``GET /``                      the web page (search box, image upload, a grid of results)
- ``GET /health``                items, code length, backend, model fingerprint
- ``GET /search/text?q=&k=&same_modal=``     text query -> images (texts with same_modal)
- ``POST /search/image?k=&same_modal=``      multipart upload ``file`` -> texts (images with same_modal)
- ``GET /search/item/{id}?modality=&k=&same_modal=``  "more like this": from the item's stored
  code of ``modality`` (image or text), no upload; same_modal (the default) finds that modality
- ``GET /examples``              a few example queries: the collection's most frequent caption words
  that the model's text encoder reads
- ``GET /items/{id}``            an item's metadata; ``GET /items/{id}/image`` its thumbnail (JPEG)

Validation: ``k`` in 1..``max_k``; a query text of 1..``max_text`` characters with at least one
word the model knows; uploads up to ``max_upload`` bytes, of an image type, that decode, of at most
``max_pixels`` pixels (checked from the header, before anything is decoded: a decompression bomb
costs nothing); an id that is not an item's is a 404 whatever its form. With ``allowed_hosts``,
a request whose ``Host`` header names another host is refused (400): a page on another site
cannot reach a server bound to loopback through DNS rebinding.

Concurrency: text queries run in the thread pool and never wait for images; image decoding and
encoding run in the thread pool too, at most ``image_workers`` at a time (the rest queue), so
uploads cannot take every core from text queries (``benchmarks/bench_service.py`` measures it).

A writer that commits a new generation of the index (``cmhash index add`` / ``remove``) is noticed
at the next request: the new generation is opened and verified in the background while the old one
keeps answering, then requests switch to it. Responses never carry server paths: an item's
``source`` is relative to its collection's folder, and thumbnails are read only from inside it.
"""
from __future__ import annotations

import asyncio
import io
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..index.store import StoreError
from ..search import MAX_K, target_of
from ..utils import CmhashError

N_EXAMPLES = 6  # example queries on the empty page
# words too common to show as examples (English; other languages' frequent short words are mostly <= 2 letters)
STOPWORDS = frozenset("the and are with there some many near two three four one this that its has have from into "
                      "for of on in at by is a an to very which while other large small".split())
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
_ID = re.compile(r"[0-9]{1,19}")  # fullmatch: "$" would let a trailing newline through


@dataclass
class ServiceConfig:
    max_k: int = MAX_K
    max_text: int = 1000
    max_upload: int = 8 << 20  # bytes
    max_pixels: int = 40_000_000  # an upload or a thumbnail source larger than this is refused unread
    image_workers: int = 1  # image decodes + encodes at a time (each uses the model's CPU threads)
    thumb_size: int = 160
    reload_retry_s: float = 1.0  # after a failed open of a new generation, wait this long to try again


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class LiveStore:
    """The store requests read, switched to a writer's new generation when one is committed.

    ``get()`` costs a ``stat`` of the manifest; when it changed, one background thread opens and
    verifies the new generation (``IndexStore.open``) and warms it, while requests keep the old."""

    def __init__(self, store, fingerprint: str | None, retry_s: float = 1.0):
        self.store, self.fingerprint, self.retry_s = store, fingerprint, retry_s
        self._loading, self._mutex, self._failed_at = False, threading.Lock(), 0.0
        self.last_error: str | None = None
        warm(store)

    def get(self):
        st = self.store
        changed = st.changed()
        if not changed and self.last_error is not None and not self._loading:
            self.last_error = None  # the index on disk is the one served again: the failure is over
        if changed and not self._loading and time.monotonic() - self._failed_at >= self.retry_s:
            with self._mutex:
                if self._loading:
                    return st
                self._loading = True
            threading.Thread(target=self._reload, daemon=True).start()
        return st

    def _reload(self) -> None:
        from ..index.store import IndexStore

        try:
            new = IndexStore.open(self.store.path, bits=self.store.bits, fingerprint=self.fingerprint)
            warm(new)
            self.store, self.last_error = new, None  # the old one is closed when its last request ends
        except Exception as e:  # noqa: BLE001 - a writer mid-commit, a damaged generation: keep the old one
            self._failed_at, self.last_error = time.monotonic(), f"{type(e).__name__}: {e}"
        finally:
            self._loading = False


def host_name(raw: str) -> str | None:
    """The host of a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), or None when
    anything else follows it (``[::1]evil.com``, ``host:80x``)."""
    if raw.startswith("["):
        name, closed, rest = raw[1:].partition("]")
        if not closed:
            return None
    else:
        name, _, port = raw.rpartition(":") if ":" in raw else (raw, "", "")
        rest = f":{port}" if _ else ""
    return name if rest == "" or (rest[0] == ":" and rest[1:].isdigit()) else None


class HostCheck:
    """ASGI middleware: a request whose ``Host`` header names another host gets a JSON 400."""

    def __init__(self, app, hosts: set[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        if host_name(raw) in self.hosts:
            return await self.app(scope, receive, send)
        resp = _error(400, f"Host {raw!r} is not served here (allowed: {', '.join(sorted(self.hosts))}); "
                           "start the server with --allow-host to add it")
        await resp(scope, receive, send)


def warm(store) -> None:
    """Build a backend's lazy tables now, not in the first request."""
    if store.ntotal:
        q = np.zeros((1, store.bits // 8), np.uint8)
        for src in ("image", "text"):
            for tgt in ("image", "text"):  # each direction's path: exact tables and approximate lists
                store.search(q, 1, target=tgt, source=src)


def warm_encoder(encoder) -> None:
    """Load what the first query would load (MiniLM's weights, the image backbone) and run each
    path once, so `serve` answers its first query at the speed of the others."""
    if encoder.text_encoder is not None:
        vocab = encoder.vocab
        try:
            encoder.query_code(vocab[0] if vocab else "photo")
        except CmhashError:
            pass  # a model whose encoder knows no such word: its first query loads it
    if encoder.accepts_pixels:
        buf = io.BytesIO()
        from PIL import Image

        Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, format="PNG")
        encoder.image_file_codes([buf.getvalue()])


def create_app(store, encoder, config: ServiceConfig | None = None,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    cfg = config or ServiceConfig()
    app = FastAPI(title="cmhash", version="1", description="Cross-modal Hamming search over binary codes")
    live = LiveStore(store, encoder.fingerprint, cfg.reload_retry_s)
    text_lock = threading.Lock()  # the text encoder (a vectorizer or MiniLM) is used by one query at a time
    image_slots = asyncio.Semaphore(max(1, cfg.image_workers))
    hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    if hosts is not None and "*" not in hosts:
        app.add_middleware(HostCheck, hosts=hosts)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(CmhashError)
    async def _cmhash(request: Request, exc: CmhashError):
        return _error(400, str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):  # the index on disk, not the request, is at fault
        return _error(503, str(exc))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # pragma: no cover - a bug, still answered in JSON
        return _error(500, f"internal error: {type(exc).__name__}")

    def _k(k: int) -> int:
        if not 1 <= k <= cfg.max_k:
            raise HTTPException(422, f"k must be between 1 and {cfg.max_k}, got {k}")
        return k

    def _run(code: np.ndarray, modality: str, same_modal: bool, k: int, t0: float, query) -> dict:
        target = target_of(modality, same_modal)
        store = live.get()
        hits = store.search(code, k, target=target, source=modality)[0]
        return {"query": query, "modality": modality, "target": target, "k": k, "bits": store.bits,
                "search": store.search_mode(modality, target)["mode"],
                "ms": round((time.perf_counter() - t0) * 1000, 2), "results": hits}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("cmhash.service").joinpath("static/index.html").read_text()

    @app.get("/health")
    def health():
        store = live.get()
        return {"status": "ok", "items": store.ntotal, "generation": store.generation, "bits": store.bits,
                "backend": store.manifest["backend"], "reload_error": live.last_error,
                "model": encoder.fingerprint, "method": encoder.method,
                "text_queries": encoder.text_encoder is not None,
                "text_encoder": encoder.text_encoder.describe() if encoder.text_encoder is not None else None,
                "image_queries": encoder.accepts_pixels}

    @app.get("/search/text")
    def search_text(q: str = Query(..., description="query text"), k: int = 10, same_modal: bool = False):
        t0 = time.perf_counter()
        k = _k(k)
        if not q.strip():
            raise HTTPException(422, "q is empty: give at least one word")
        if len(q) > cfg.max_text:
            raise HTTPException(422, f"q is {len(q)} characters; at most {cfg.max_text}")
        with text_lock:
            code, words = encoder.query_code(q)  # no known word: a 400 naming the encoder
        out = _run(code, "text", same_modal, k, t0, q)
        out.update(known_words=words["used"], unknown_words=words["unknown"], text_encoder=words["encoder"])
        return out

    @app.post("/search/image")
    async def search_image(request: Request, file: UploadFile = File(...), k: int = 10, same_modal: bool = False):
        t0 = time.perf_counter()
        k = _k(k)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_upload + 64 * 1024:
            raise HTTPException(413, f"upload too large: at most {cfg.max_upload} bytes")
        if (file.content_type or "").lower() not in IMAGE_TYPES:
            raise HTTPException(415, f"unsupported type {file.content_type!r}; send one of {', '.join(IMAGE_TYPES)}")
        data = await file.read(cfg.max_upload + 1)
        if len(data) > cfg.max_upload:
            raise HTTPException(413, f"upload too large: at most {cfg.max_upload} bytes")
        if not data:
            raise HTTPException(422, "the uploaded file is empty")
        if not encoder.accepts_pixels:
            raise HTTPException(400, "this model reads image features, not pixels: image queries are not possible")
        async with image_slots:  # decoding and encoding off the event loop, a bounded number at a time
            code = await run_in_threadpool(encoder.image_file_codes, [data], cfg.max_pixels)
        return await run_in_threadpool(_run, code, "image", same_modal, k, t0, file.filename)

    @app.get("/search/item/{item_id}")
    def search_item(item_id: str, modality: str = "image", k: int = 10, same_modal: bool = True):
        t0 = time.perf_counter()
        k, i = _k(k), _item_id(item_id)
        if modality not in ("image", "text"):
            raise HTTPException(422, f"modality must be image or text, got {modality[:20]!r}")
        store = live.get()
        if i not in store.items([i]):
            raise HTTPException(404, f"no item {i}")
        code = store.indexes[modality].reconstruct(np.array([i], np.int64))  # (1, K/8) packed, as stored
        return _run(code, modality, same_modal, k, t0, {"item": i, "modality": modality})

    @lru_cache(maxsize=1)
    def _examples() -> list[str]:
        from ..text.bow import word_tokens

        if encoder.text_encoder is None:
            return []
        counts: dict[str, int] = {}
        for cap in live.get().captions(5000):
            for w in dict.fromkeys(word_tokens(cap)):
                if len(w) > 2 and w not in STOPWORDS and not w.isdigit():
                    counts[w] = counts.get(w, 0) + 1
        out = []
        for w in sorted(counts, key=lambda w: (-counts[w], w)):
            with text_lock:
                if encoder.explain(w)["used"]:
                    out.append(w)
            if len(out) == N_EXAMPLES:
                break
        return out

    @app.get("/examples")
    def examples():
        return {"examples": _examples()}

    def _item_id(item_id: str) -> int:
        if not _ID.fullmatch(item_id) or int(item_id) >= 2**63:
            raise HTTPException(404, f"no item {item_id[:40]!r}: ids are integers from 0 to 2^63-1")
        return int(item_id)

    @app.get("/items/{item_id}")
    def item(item_id: str):
        i = _item_id(item_id)
        meta = live.get().items([i]).get(i)
        if meta is None:
            raise HTTPException(404, f"no item {i}")
        return meta

    @lru_cache(maxsize=4096)
    def _thumb(path: str, mtime: float) -> bytes:
        from PIL import Image

        from ..data.images import resizable, rgb8

        with Image.open(path) as im:
            if im.width * im.height > cfg.max_pixels:
                raise CmhashError(f"{im.width} x {im.height} pixels")
            im.draft("RGB", (cfg.thumb_size, cfg.thumb_size))  # JPEG: decode at a reduced size
            im = resizable(im)  # 16-bit, palette, CMYK ...: the mode rule of the search path (data.images)
            im.thumbnail((cfg.thumb_size, cfg.thumb_size))
            buf = io.BytesIO()
            Image.fromarray(rgb8(im)).save(buf, format="JPEG", quality=85)
            return buf.getvalue()

    @app.get("/items/{item_id}/image", response_class=Response)
    def item_image(item_id: str):
        from PIL import Image

        i = _item_id(item_id)
        store = live.get()
        if i not in store.items([i]):
            raise HTTPException(404, f"no item {i}")
        path = store.source_path(i)  # inside the collection's folder, or None
        if path is None:
            raise HTTPException(404, f"item {i} has no image file in its collection's folder")
        try:
            body = _thumb(str(path), path.stat().st_mtime)
        except (OSError, ValueError, Image.DecompressionBombError, CmhashError) as e:
            raise HTTPException(404, f"item {i}: image file not readable ({type(e).__name__})") from None
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
