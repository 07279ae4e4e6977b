"""A searchable collection on disk: one index per modality, item metadata in SQLite, a manifest.

Layout of a store folder::

    manifest.json          format, code length, backend, model fingerprint, vocabulary, files + sha256
    image-g000003.cmhidx   image codes (HammingIndex file), generation 3
    text-g000003.cmhidx    text codes
    items-g000003.sqlite   id, source, caption, labels
    milvus.db              (backend milvus: the embedded milvus-lite file, both collections)

Every change writes a new generation of the files, fsyncs them, then replaces ``manifest.json``
atomically; only then are the previous generation's files deleted. A crash at any point leaves a
manifest that names complete, checksummed files (leftovers of an unfinished generation are
removed at the next commit). ``open`` verifies each file's size and sha256, the code length and,
when given, the model fingerprint, and says which check failed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..utils import CmhashError, atomic_path, write_json_atomic
from .base import HashIndexError, load_index, make_index

FORMAT = "cmhash-store-v1"
MODALITIES = ("image", "text")


class StoreError(CmhashError):
    """A store folder is missing, damaged, or does not match the model or code length."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


class IndexStore:
    """Open with ``IndexStore.open(path)`` or create with ``IndexStore.create(path, bits, ...)``."""

    def __init__(self, path: Path, manifest: dict, indexes: dict):
        self.path, self.manifest, self.indexes = path, manifest, indexes

    # --- creation and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, path, bits: int, backend: str = "flat", model: dict | None = None,
               vocab: list[str] | None = None, label_names: list[str] | None = None,
               backend_params: dict | None = None, overwrite: bool = False) -> "IndexStore":
        path = Path(path)
        if (path / "manifest.json").exists() and not overwrite:
            raise StoreError(f"{path}: an index already exists here (use `cmhash index add`, or --overwrite)")
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for p in path.iterdir():
                if p.is_file() and (p.suffix in (".cmhidx", ".sqlite", ".db") or p.name == "manifest.json"):
                    p.unlink()
        manifest = {"format": FORMAT, "bits": int(bits), "backend": backend, "backend_params": backend_params or {},
                    "model": model or {}, "vocab": vocab, "label_names": label_names, "generation": 0,
                    "n_items": 0, "files": {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        indexes = {m: cls._new_index(path, manifest, m) for m in MODALITIES}
        store = cls(path, manifest, indexes)
        store._commit(_items_rows=[])
        return store

    @staticmethod
    def _new_index(path: Path, manifest: dict, modality: str):
        params = dict(manifest["backend_params"])
        if manifest["backend"] == "milvus":
            params.setdefault("uri", str(path / "milvus.db"))
            params["collection"] = f"{params.pop('collection_prefix', 'cmhash')}_{modality}"
            params["overwrite"] = True
        return make_index(manifest["backend"], manifest["bits"], **params)

    @classmethod
    def open(cls, path, bits: int | None = None, fingerprint: str | None = None, verify: bool = True) -> "IndexStore":
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise StoreError(f"{path}: not an index folder (no manifest.json); build one with `cmhash index build`")
        try:
            manifest = json.loads(mpath.read_text())
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"{mpath}: manifest is not valid JSON (damaged)") from None
        if manifest.get("format") != FORMAT:
            raise StoreError(f"{mpath}: unknown format {manifest.get('format')!r} (expected {FORMAT})")
        if bits is not None and manifest["bits"] != bits:
            raise StoreError(f"{path}: holds {manifest['bits']}-bit codes; this model makes {bits}-bit codes")
        have = manifest.get("model", {}).get("fingerprint")
        if fingerprint is not None and have and have != fingerprint:
            raise StoreError(f"{path}: built with model {have}, but this model is {fingerprint}: codes of different "
                             "models are not comparable (re-encode, or pass the model the index was built with)")
        for name, f in manifest["files"].items():
            p = path / f["path"]
            if not p.is_file():
                raise StoreError(f"{p}: missing ({name} file of generation {manifest['generation']})")
            if p.stat().st_size != f["bytes"]:
                raise StoreError(f"{p}: {p.stat().st_size} bytes, the manifest says {f['bytes']} (truncated?)")
            if verify and sha256_file(p) != f["sha256"]:
                raise StoreError(f"{p}: checksum mismatch (the file was altered or damaged)")
        indexes = {}
        for m in MODALITIES:
            opts = {}
            if manifest["backend"] == "milvus":
                opts["uri"] = str(path / "milvus.db") if "uri" not in manifest["backend_params"] else \
                    manifest["backend_params"]["uri"]
            try:
                indexes[m] = load_index(path / manifest["files"][m]["path"], bits=manifest["bits"], **opts)
            except HashIndexError as e:
                raise StoreError(str(e)) from None
        return cls(path, manifest, indexes)

    # --- properties ----------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.manifest["bits"]

    @property
    def ntotal(self) -> int:
        return self.indexes["image"].ntotal

    def _items_path(self) -> Path | None:
        f = self.manifest["files"].get("items")
        return self.path / f["path"] if f else None

    # --- changes -------------------------------------------------------------------------------
    def add(self, image_codes, text_codes, items: list[dict] | None = None, ids=None) -> np.ndarray:
        """Add items (one image code and one text code each) and commit a new generation.

        ``items``: per item a dict with optional ``id``, ``source``, ``caption``, ``labels`` (names)."""
        n = len(image_codes)
        if len(text_codes) != n:
            raise StoreError(f"{n} image codes but {len(text_codes)} text codes: one of each per item")
        if items is not None and len(items) != n:
            raise StoreError(f"{n} codes but {len(items)} item records")
        if ids is None and items is not None and all("id" in it for it in items):
            ids = [int(it["id"]) for it in items]
        new_ids = self.indexes["image"].add(image_codes, ids)
        try:
            self.indexes["text"].add(text_codes, new_ids)
        except Exception:
            self.indexes["image"].remove(new_ids)
            raise
        rows = [(int(i), (it or {}).get("source"), (it or {}).get("caption"),
                 json.dumps((it or {}).get("labels") or []))
                for i, it in zip(new_ids, items if items is not None else [None] * n)]
        self._commit(_items_rows=rows)
        return new_ids

    def remove(self, ids) -> int:
        ids = np.asarray(ids, np.int64).ravel()
        n = self.indexes["image"].remove(ids)
        self.indexes["text"].remove(ids)
        self._commit(_items_rows=[], _delete=ids.tolist())
        return n

    def _commit(self, _items_rows, _delete=()) -> None:
        gen = self.manifest["generation"] + 1
        files = {}
        for m in MODALITIES:
            p = self.path / f"{m}-g{gen:06d}.cmhidx"
            self.indexes[m].save(p)
            files[m] = p
        items = self.path / f"items-g{gen:06d}.sqlite"
        old = self._items_path()
        with atomic_path(items) as tmp:  # a copy of the previous generation, changed, then moved into place
            if old is not None and old.exists():
                shutil.copyfile(old, tmp)
            con = sqlite3.connect(tmp)
            try:
                con.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, source TEXT, caption TEXT, "
                            "labels TEXT)")
                con.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", _items_rows)
                if len(_delete):
                    con.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in _delete])
                con.commit()
            finally:
                con.close()
        files["items"] = items
        manifest = dict(self.manifest, generation=gen, n_items=self.indexes["image"].ntotal,
                        updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        files={k: {"path": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                               for k, p in files.items()})
        write_json_atomic(self.path / "manifest.json", manifest)
        self.manifest = manifest
        keep = {f["path"] for f in manifest["files"].values()}
        for p in self.path.iterdir():  # the previous generation, and leftovers of a crashed one
            stale = p.suffix == ".cmhidx" or p.name.startswith("items-g")
            killed_writer = p.name.startswith(".") and p.name.endswith(".tmp")  # atomic_path's temporaries
            if p.is_file() and p.name not in keep and (stale or killed_writer):
                p.unlink()

    # --- queries -------------------------------------------------------------------------------
    def search(self, codes, k: int = 10, target: str = "image") -> list[list[dict]]:
        """Top-k items per query code against the ``target`` modality's codes, with metadata."""
        if target not in MODALITIES:
            raise StoreError(f"target must be one of {MODALITIES}, got {target!r}")
        d, ids = self.indexes[target].search(codes, k)
        meta = self.items(np.unique(ids[ids >= 0]))
        return [[dict(meta.get(int(i), {"id": int(i)}), distance=int(dd)) for dd, i in zip(dr, ir) if i >= 0]
                for dr, ir in zip(d, ids)]

    def items(self, ids) -> dict[int, dict]:
        """Metadata of ``ids`` (those not present are left out)."""
        ids = [int(i) for i in np.asarray(ids).ravel()]
        out = {}
        p = self._items_path()
        if not ids or p is None:
            return out
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, check_same_thread=False)
        try:
            for s in range(0, len(ids), 900):
                part = ids[s:s + 900]
                q = f"SELECT id, source, caption, labels FROM items WHERE id IN ({','.join('?' * len(part))})"
                for i, src, cap, lab in con.execute(q, part):
                    out[i] = {"id": i, "source": src, "caption": cap, "labels": json.loads(lab or "[]")}
        finally:
            con.close()
        return out

    def info(self) -> dict:
        size = sum((self.path / f["path"]).stat().st_size for f in self.manifest["files"].values())
        if (self.path / "milvus.db").is_file():  # the embedded milvus-lite file
            size += (self.path / "milvus.db").stat().st_size
        from .kernels import kernel_name

        m = self.manifest
        return {"path": str(self.path), "bits": m["bits"], "backend": m["backend"], "items": self.ntotal,
                "generation": m["generation"], "model": m.get("model", {}), "bytes_on_disk": size,
                "bytes_per_item": round(size / max(1, self.ntotal), 1), "kernel": kernel_name(),
                "vocab_size": len(m.get("vocab") or []), "updated": m.get("updated")}

    def close(self) -> None:
        for ix in self.indexes.values():
            if hasattr(ix, "close"):
                ix.close()
