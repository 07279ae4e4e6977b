"""FastAPI app over an ``IndexStore`` and the ``Encoder`` of the model that built it.

Endpoints (all errors are JSON ``{"error": {"status": int, "message": str}}`` with that status):

- ``GET /``                      the web page (search box, image upload, a grid of results)
- ``GET /health``                items, code length, backend, model fingerprint
- ``GET /search/text?q=&k=&same_modal=``     text query -> images (texts with same_modal)
- ``POST /search/image?k=&same_modal=``      multipart upload ``file`` -> texts (images with same_modal)
- ``GET /items/{id}``            an item's metadata; ``GET /items/{id}/image`` its thumbnail (JPEG)

Validation: ``k`` in 1..``max_k``; a query text of 1..``max_text`` characters with at least one
word the model knows; uploads up to ``max_upload`` bytes, of an image type, that decode.
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..utils import CmhashError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


@dataclass
class ServiceConfig:
    max_k: int = 100
    max_text: int = 1000
    max_upload: int = 8 << 20  # bytes
    thumb_size: int = 160


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


def create_app(store, encoder, config: ServiceConfig | None = None) -> FastAPI:
    cfg = config or ServiceConfig()
    app = FastAPI(title="cmhash", version="1", description="Cross-modal Hamming search over binary codes")
    lock = threading.Lock()  # one encode + search at a time: the model and the CPU are shared anyway
    if store.ntotal:
        store.indexes["image"].search(np.zeros((1, store.bits // 8), np.uint8), 1)  # builds lazy tables now
        store.indexes["text"].search(np.zeros((1, store.bits // 8), np.uint8), 1)

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

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # pragma: no cover - a bug, still answered in JSON
        return _error(500, f"internal error: {type(exc).__name__}")

    def _k(k: int) -> int:
        if not 1 <= k <= cfg.max_k:
            raise HTTPException(422, f"k must be between 1 and {cfg.max_k}, got {k}")
        return k

    def _run(code: np.ndarray, modality: str, same_modal: bool, k: int, t0: float, query) -> dict:
        target = modality if same_modal else ("image" if modality == "text" else "text")
        with lock:
            hits = store.search(code, k, target=target)[0]
        return {"query": query, "modality": modality, "target": target, "k": k, "bits": store.bits,
                "ms": round((time.perf_counter() - t0) * 1000, 2), "results": hits}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("cmhash.service").joinpath("static/index.html").read_text()

    @app.get("/health")
    def health():
        return {"status": "ok", "items": store.ntotal, "bits": store.bits, "backend": store.manifest["backend"],
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
        with lock:
            code, words = encoder.encode_query(q)  # no known word: a 400 naming the encoder
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
        with lock:
            code = encoder.encode_image_files([data])
        return _run(code, "image", same_modal, k, t0, file.filename)

    @app.get("/items/{item_id}")
    def item(item_id: int):
        meta = store.items([item_id]).get(item_id)
        if meta is None:
            raise HTTPException(404, f"no item {item_id}")
        return meta

    @lru_cache(maxsize=4096)
    def _thumb(path: str) -> bytes:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((cfg.thumb_size, cfg.thumb_size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            return buf.getvalue()

    @app.get("/items/{item_id}/image", response_class=Response)
    def item_image(item_id: int):
        meta = store.items([item_id]).get(item_id)
        if meta is None:
            raise HTTPException(404, f"no item {item_id}")
        if not meta.get("source"):
            raise HTTPException(404, f"item {item_id} has no image file")
        try:
            body = _thumb(meta["source"])  # only paths recorded in the index are ever read
        except OSError:
            raise HTTPException(404, f"item {item_id}: image file not readable") from None
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
