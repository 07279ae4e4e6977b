"""``IndexStore``: the two modalities' indexes, the item catalogue and the manifest of one store
folder, changed by transactions (see ``cmhash.index.store``)."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from ...registry import INDEX_BACKENDS
from ...utils import WriteLock, usable_dir, write_json_atomic
from ..base import HashIndexError, load_index, make_index
from ..mapped import MappedFile
from . import planning
from .catalogue import Catalogue, item_columns, open_items
from .files import (FORMAT, LOCK_NAME, MODALITIES, OPEN_TRIES, StoreError, check_files, committed_generation,
                    disk_generation, fsync_dir, last_generation, manifest_key, read_manifest, remove_generation,
                    remove_leftovers, sha256_file, writing)


class IndexStore:
    """Open with ``IndexStore.open(path)`` or create with ``IndexStore.create(path, bits, ...)``.

    ``hold_lock=True`` (the CLI's writers) takes the write lock when opening or creating and keeps it
    until ``close``: a second writer waits up to ``wait`` seconds, then fails with a clear message."""

    def __init__(self, path: Path, manifest: dict, indexes: dict, lock: WriteLock | None = None,
                 fresh: bool = False, catalogue: Catalogue | None = None):
        self.path, self.manifest, self.indexes = Path(path), manifest, indexes
        self._lock = lock or WriteLock(self.path / LOCK_NAME, f"index {self.path}")
        self._base = int(manifest["generation"])  # the generation these contents were read from
        self._fresh = fresh  # a build: the items table starts empty instead of from the previous generation
        self._dirty = fresh
        self.catalogue = catalogue or Catalogue(self.path, self._items_path())
        self._seen = None  # the manifest's (inode, mtime, size) when last found unchanged (``changed``)
        self.verified = True  # whether the files' checksums were checked when opened (a new store: written now)
        self._mapped: dict[str, MappedFile] = {}  # the generation files searches read through a mapping

    # --- creation and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, path, bits: int, backend: str = "flat", model: dict | None = None,
               vocab: list[str] | None = None, label_names: list[str] | None = None,
               backend_params: dict | None = None, overwrite: bool = False, commit: bool = True,
               hold_lock: bool = False, wait: float = 600.0, on_wait=None) -> "IndexStore":
        """A new, empty store. Nothing on disk changes until it commits (``commit=True``: now, empty;
        ``False``: at the first ``commit``), so an ``overwrite`` that fails keeps the previous index."""
        path = usable_dir(path, "index folder")
        lock = WriteLock(path / LOCK_NAME, f"index {path}")
        if hold_lock:
            lock.acquire(wait, on_wait)
        try:
            if (path / "manifest.json").exists() and not overwrite:
                raise StoreError(f"{path}: an index already exists here (use `cmhash index add`, or --overwrite)")
            manifest = {"format": FORMAT, "bits": int(bits), "backend": INDEX_BACKENDS.get(backend).backend,
                        "backend_params": backend_params or {}, "model": model or {}, "vocab": vocab,
                        "label_names": label_names, "roots": [], "generation": last_generation(path),
                        "n_items": 0, "files": {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            indexes = {m: cls._new_index(path, manifest, m) for m in MODALITIES}
        except BaseException:
            lock.release()
            raise
        store = cls(path, manifest, indexes, lock, fresh=True)
        if commit:
            store.commit()
        return store

    @staticmethod
    def _new_index(path: Path, manifest: dict, modality: str):
        cls = INDEX_BACKENDS.get(manifest["backend"])
        return make_index(manifest["backend"], manifest["bits"],
                          **cls.store_options(path, modality, manifest["backend_params"], create=True))

    @classmethod
    def open(cls, path, bits: int | None = None, fingerprint: str | None = None, verify: bool | None = None,
             hold_lock: bool = False, wait: float = 600.0, on_wait=None) -> "IndexStore":
        """``verify``: checksum every file (True), only sizes and headers (False), or the checksums
        when the files total at most ``VERIFY_AT_OPEN_BYTES`` (None, the default)."""
        path = Path(path)
        lock = WriteLock(path / LOCK_NAME, f"index {path}")
        if hold_lock:
            if not (path / "manifest.json").is_file():
                read_manifest(path)  # the clear "not an index folder" error, before any lock file is made
            lock.acquire(wait, on_wait)
        try:
            store = cls._open_retrying(path, bits, fingerprint, verify, lock)
        except BaseException:
            lock.release()
            raise
        if hold_lock:
            remove_leftovers(path, store.manifest)
        return store

    @classmethod
    def _open_retrying(cls, path: Path, bits, fingerprint, verify, lock, tries: int = OPEN_TRIES) -> "IndexStore":
        """``_open``, again when a writer committed while it read (the generation it was reading is
        deleted by that commit): measured, about 1 open in 4,000 during back-to-back commits lost
        that race. A failure while the manifest stayed the same is damage, raised at once."""
        for attempt in range(tries):
            before = manifest_key(path)
            try:
                return cls._open(path, bits, fingerprint, verify, lock)
            except (StoreError, OSError, sqlite3.DatabaseError) as e:
                moved = manifest_key(path) != before
                if moved and attempt + 1 < tries:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                if isinstance(e, StoreError):
                    raise
                why = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
                raise StoreError(f"{path}: the index could not be read ({why})"
                                 + (f"; other writers committed during {tries} tries" if moved else "")) from None
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, path: Path, bits, fingerprint, verify, lock) -> "IndexStore":
        manifest = read_manifest(path, bits, fingerprint)
        if set(manifest.get("files", {})) != {*MODALITIES, "items"}:
            raise StoreError(f"{path / 'manifest.json'}: names files {sorted(manifest.get('files', {}))}, expected "
                             "image, text, items")
        # the items file is opened before the checks, so a writer that deletes it afterwards changes nothing
        items_p = path / manifest["files"]["items"]["path"]
        con = open_items(items_p) if items_p.is_file() else None  # nothing read from it until checked
        mapped: dict[str, MappedFile] = {}
        try:
            verify = check_files(path, manifest, verify)
            for m in MODALITIES:  # held open from here: a writer deleting the files later changes nothing
                mapped[m] = MappedFile(path / manifest["files"][m]["path"])
            cols = item_columns(con, items_p) if con is not None else None
            indexes = {}
            backend = INDEX_BACKENDS.get(manifest["backend"]) if manifest["backend"] in INDEX_BACKENDS else None
            for m in MODALITIES:
                opts = backend.store_options(path, m, manifest["backend_params"], create=False) if backend else {}
                try:
                    indexes[m] = load_index(path / manifest["files"][m]["path"], bits=manifest["bits"],
                                            verify=False, mmap=True, **opts)  # the file's checksum: above
                except HashIndexError as e:
                    raise StoreError(str(e)) from None
        except BaseException:
            if con is not None:
                con.close()
            for f in mapped.values():
                f.close()
            raise
        store = cls(path, manifest, indexes, lock, catalogue=Catalogue(path, items_p, con, cols))
        store.verified, store._mapped = bool(verify), mapped
        return store

    def changed(self) -> bool:
        """Whether a writer committed a newer generation than the one this store holds (a ``stat`` of
        the manifest per call; it is read only when it was replaced)."""
        key, gen = committed_generation(self.path, self._seen)
        if gen is None:
            return False  # unchanged since last seen, mid-replace or damaged: keep answering from this one
        if gen == self._base:
            self._seen = key
        return gen != self._base

    # --- properties ----------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.manifest["bits"]

    @property
    def ntotal(self) -> int:
        return self.indexes["image"].ntotal

    @property
    def generation(self) -> int:
        return self._base

    def _items_path(self) -> Path | None:
        f = self.manifest["files"].get("items")
        return self.path / f["path"] if f else None

    # --- changes -------------------------------------------------------------------------------
    def add(self, image_codes, text_codes, items: list[dict] | None = None, ids=None, root=None,
            commit: bool = True, present: str = "error") -> np.ndarray:
        """Add items (one image code and one text code each); ``commit`` writes a new generation.

        ``items``: per item a dict with optional ``id``, ``source`` (a path relative to ``root``, the
        folder its files lie in), ``caption``, ``labels`` (names). ``present="skip"``: items whose id is
        already in the store with the same two codes are left out (a re-run of an add that was
        killed after its commit); the same id with other codes is always an error. Returns the ids
        added."""
        from ..base import as_packed

        n = len(image_codes)
        if len(text_codes) != n:
            raise StoreError(f"{n} image codes but {len(text_codes)} text codes: one of each per item")
        if items is not None and len(items) != n:
            raise StoreError(f"{n} codes but {len(items)} item records")
        if ids is None and items is not None and n and all("id" in it for it in items):
            ids = [it["id"] for it in items]
        img = as_packed(image_codes, self.bits, "image codes") if n else np.zeros((0, self.bits // 8), np.uint8)
        txt = as_packed(text_codes, self.bits, "text codes") if n else np.zeros((0, self.bits // 8), np.uint8)
        keep = np.ones(n, bool)
        if ids is not None and self.ntotal:
            ids = np.asarray(ids)
            if ids.dtype.kind not in "iu":
                raise StoreError(f"ids must be integers, got {ids.dtype}")
            there = np.isin(ids, self.indexes["image"].ids)
            if there.any():
                same = (self.indexes["image"].reconstruct(ids[there]) == img[there]).all(1) & \
                       (self.indexes["text"].reconstruct(ids[there]) == txt[there]).all(1)
                if present != "skip" or not same.all():
                    bad = ids[there][~same] if present == "skip" else ids[there]
                    raise StoreError(f"{int(there.sum())} ids already in the index (e.g. {bad[:5].tolist()})"
                                     + (" with other codes" if present == "skip" else "")
                                     + "; remove them first (`cmhash index remove`) or encode with other ids "
                                     "(--id-start)")
                keep = ~there
        if not keep.all():
            img, txt, ids = img[keep], txt[keep], np.asarray(ids)[keep]
            items = [it for it, k in zip(items, keep) if k] if items is not None else None
        if not len(img):
            return np.zeros(0, np.int64)
        try:
            new_ids = self.indexes["image"].add(img, ids)
        except HashIndexError as e:
            raise StoreError(str(e)) from None
        try:
            self.indexes["text"].add(txt, new_ids)
        except Exception:
            self.indexes["image"].remove(new_ids)
            raise
        r = self._root_index(root)
        rows = [(int(i), (it or {}).get("source"), (it or {}).get("caption"),
                 json.dumps((it or {}).get("labels") or []), r if (it or {}).get("source") else None)
                for i, it in zip(new_ids, items if items is not None else [None] * len(new_ids))]
        with writing(self.path):
            self._stage().executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)", rows)
        self._dirty = True
        if commit:
            self.commit()
        return new_ids

    def _root_index(self, root) -> int | None:
        if root is None:
            return None
        root = str(Path(root).resolve())
        roots = self.manifest.setdefault("roots", [])
        if root not in roots:
            roots.append(root)
        return roots.index(root)

    def remove(self, ids, commit: bool = True) -> int:
        """Remove the items with these ids (those not present are ignored); returns how many went."""
        ids = np.asarray(ids, np.int64).ravel()
        n = self.indexes["image"].remove(ids)
        self.indexes["text"].remove(ids)
        if n:
            with writing(self.path):
                self._stage().executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in ids])
            self._dirty = True
        if commit:
            self.commit()
        return n

    def commit(self) -> None:
        """Write the changes as a new generation (see the module's docstring); nothing if none."""
        if not self._dirty:
            return
        held = self._lock.held
        if not held:
            self._lock.acquire()
        try:
            disk = last_generation(self.path) if self._fresh else disk_generation(self.path)
            if not self._fresh and disk != self._base:
                raise StoreError(f"{self.path}: another writer committed generation {disk} since this store read "
                                 f"generation {self._base}; open it again and repeat the change")
            gen = max(disk, self._base) + 1
            try:
                with writing(self.path):
                    self._write_generation(gen)
            except BaseException:
                if disk_generation(self.path) != gen:  # not committed: its files go now, not at the next commit
                    remove_generation(self.path, gen)
                raise
        finally:
            if not held:
                self._lock.release()

    def estimate_recall(self, queries: int = 200, seed: int = 1) -> dict:
        """Recall@50 of each approximate direction now (``planning.estimate_recall``)."""
        return planning.estimate_recall(self.indexes, self.manifest.get("search"), queries, seed)

    def search_mode(self, source: str | None, target: str) -> dict:
        """How a query from ``source`` into ``target`` is answered (``planning.search_mode``)."""
        return planning.search_mode(self.manifest.get("search"), source, target)

    def _stage(self):
        """The next generation's items file (``Catalogue.stage``: a copy of the current one, or
        empty for a build)."""
        return self.catalogue.stage(None if self._fresh else self._items_path())

    def _write_generation(self, gen: int) -> None:
        plan = planning.plan_search(self.indexes)  # before the index files are written: ivf saves its lists
        self.manifest.pop("search", None)
        if plan is not None:
            self.manifest["search"] = plan
        self._stage()
        self.catalogue.check_stage(self.ntotal)  # validated before anything is replaced
        files = {}
        for m in MODALITIES:
            p = self.path / f"{m}-g{gen:06d}.cmhidx"
            self.indexes[m].save(p)
            files[m] = p
        items = self.path / f"items-g{gen:06d}.sqlite"
        os.replace(self.catalogue.take_stage(), items)
        files["items"] = items
        if not self._fresh:  # what a build was made from (``index build`` run again): no longer all it holds
            self.manifest.pop("built_from", None)
        manifest = dict(self.manifest, generation=gen, n_items=self.ntotal,
                        updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        files={k: {"path": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                               for k, p in files.items()})
        fsync_dir(self.path)
        write_json_atomic(self.path / "manifest.json", manifest)
        fsync_dir(self.path)
        self.manifest, self._base, self._fresh, self._dirty = manifest, gen, False, False
        remove_leftovers(self.path, manifest)
        self.catalogue.switch(items)

    # --- queries -------------------------------------------------------------------------------
    def search(self, codes, k: int = 10, target: str = "image", source: str | None = None) -> list[list[dict]]:
        """Top-k items per query code against the ``target`` modality's codes, with metadata.
        ``source`` (the query's modality) picks exact or approximate search (``search_mode``);
        distances are exact Hamming distances either way."""
        if target not in MODALITIES:
            raise StoreError(f"target must be one of {MODALITIES}, got {target!r}")
        if source is not None and source not in MODALITIES:
            raise StoreError(f"source must be one of {MODALITIES}, got {source!r}")
        why = self._mapped[target].changed() if target in self._mapped else None
        if why:  # a file changed under the mapping: an error, not SIGBUS or wrong ids
            raise StoreError(why)
        ix, mode = self.indexes[target], self.search_mode(source, target)
        if mode["mode"] == "approx":
            d, ids = ix.search(codes, k, nprobe=mode["nprobe"])
        elif ix.approximate:
            d, ids = ix.search(codes, k, exact=True)
        else:
            d, ids = ix.search(codes, k)
        meta = self.items(np.unique(ids[ids >= 0]))
        return [[dict(meta.get(int(i), {"id": int(i)}), distance=int(dd)) for dd, i in zip(dr, ir) if i >= 0]
                for dr, ir in zip(d, ids)]

    def items(self, ids) -> dict[int, dict]:
        """Metadata of ``ids`` (those not present are left out): id, source (relative to its root),
        caption, labels."""
        return {i: {k: v for k, v in m.items() if k != "root"} for i, m in self._records(ids).items()}

    def _records(self, ids) -> dict[int, dict]:
        return self.catalogue.records(ids)

    def captions(self, limit: int = 5000) -> list[str]:
        """Up to ``limit`` item captions, in id order (the service's example queries come from them)."""
        return self.catalogue.captions(limit)

    def source_path(self, item_id: int) -> Path | None:
        """The image file of an item inside its root folder, else None (``Catalogue.source_path``)."""
        return self.catalogue.source_path(item_id, self.manifest.get("roots") or [])

    def info(self) -> dict:
        size = sum((self.path / f["path"]).stat().st_size for f in self.manifest["files"].values())
        backend = INDEX_BACKENDS.get(self.manifest["backend"])
        size += sum(p.stat().st_size for p in backend.store_files(self.path) if p.is_file())
        from ...kernels import kernel_name, kernel_variant

        m = self.manifest
        return {"path": str(self.path), "bits": m["bits"], "backend": m["backend"], "items": self.ntotal,
                "generation": m["generation"], "model": m.get("model", {}), "bytes_on_disk": size,
                "bytes_per_item": round(size / max(1, self.ntotal), 1), "kernel": f"{kernel_name()} ({kernel_variant(m['bits'] // 8)})",
                "checksums": "verified" if self.verified else "not read at open (sizes and headers checked; "
                                                                "--verify reads the files)",
                "vocab_size": len(m.get("vocab") or []), "updated": m.get("updated"),
                "search": planning.describe(m.get("search"))}

    def close(self) -> None:
        """Close the items connection and the backends, drop uncommitted changes, and release the write
        lock if held."""
        self.catalogue.close()
        self._lock.release()
        for f in self._mapped.values():
            f.close()
        for ix in self.indexes.values():
            if hasattr(ix, "close"):
                ix.close()
