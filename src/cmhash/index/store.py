"""A searchable collection on disk: one index per modality, item metadata in SQLite, a manifest.

Layout of a store folder::

    manifest.json          format, code length, backend, model fingerprint, vocabulary, roots, files + sha256,
                           exact or approximate search per query direction (``search``)
    image-g000003.cmhidx   image codes (HammingIndex file), generation 3
    text-g000003.cmhidx    text codes
    items-g000003.sqlite   id, source (relative to its root), caption, labels, root
    .write.lock            held by the one writer at a time (``utils.WriteLock``)
    milvus.db              (backend milvus: the embedded milvus-lite file, both collections)

**Writes are transactions.** ``add`` and ``remove`` change the open store in memory; ``commit``
(which ``add``/``remove`` call unless given ``commit=False``) takes the write lock, checks that no
other writer committed since this store was opened, writes a new generation of every file,
fsyncs it, then replaces ``manifest.json`` atomically; only then are the previous generation's
files deleted. A writer killed at any line leaves the manifest naming the previous generation's
complete, checksummed files (the next commit removes the leftovers), and ``cmhash index add``
run again completes the job (items already present with the same codes are skipped). ``create``
commits nothing until its first commit, so ``index build --overwrite`` keeps the previous index
until the new one is complete.

**Readers never see a writer.** Generation files are never changed once written; ``open`` maps
the index files read-only (``load_index(mmap=True)``: pages are read when a search touches them,
so a 10M-item store opens in well under a second) and keeps one read-only SQLite connection to its
generation's items file; both stay readable after a writer deletes the files (POSIX).

**What is checked when.** Every open checks the manifest, each file's size and each index file's
header. The sha256 of every file is computed when a commit writes it, and checked again at open
when the generation is small (``VERIFY_AT_OPEN_BYTES``, a fraction of a second), or when asked
(``open(verify=True)``, ``cmhash index info --verify``); a large store opens without reading its
files whole. ``changed()`` says when a newer
generation was committed; the service then opens it and switches.

Item ``source`` paths are stored relative to a root folder (the encoded collection's folder, in
``manifest["roots"]``); ``source_path`` gives the file only when it lies inside that root.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from ..utils import CmhashError, WriteLock, disk_error, disk_errors, usable_dir, write_json_atomic
from .base import HashIndexError, load_index, make_index
from .mapped import MappedFile

FORMAT = "cmhash-store-v1"
MODALITIES = ("image", "text")
LOCK_NAME = ".write.lock"
# at open, a generation's files are checksummed when they total at most this (about 0.1 s of sha256)
VERIFY_AT_OPEN_BYTES = 64 << 20
OPEN_TRIES = 5  # an open that lost the race with a commit is tried again, this many times in all
_GEN_FILE = re.compile(r"^(image|text|items)-g(\d{6})\.(cmhidx|sqlite)$")


class StoreError(CmhashError):
    """A store folder is missing, damaged, or does not match the model or code length."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise StoreError(f"{path}: not an index folder (no manifest.json); build one with `cmhash index build`")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"{mpath}: manifest is not valid JSON (damaged)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise StoreError(f"{mpath}: unknown format {got!r} (expected {FORMAT})")
    return manifest


def _manifest_key(path: Path):
    """What changes when a commit replaces the manifest (its inode, time and size), or None."""
    try:
        st = os.stat(path / "manifest.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _last_generation(path: Path) -> int:
    """The highest generation named by the manifest or by any generation file (a killed writer's)."""
    gens = [int(m.group(2)) for p in path.iterdir() if (m := _GEN_FILE.match(p.name))] if path.is_dir() else []
    try:
        gens.append(int(json.loads((path / "manifest.json").read_text()).get("generation", 0)))
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        pass
    return max(gens, default=0)


class IndexStore:
    """Open with ``IndexStore.open(path)`` or create with ``IndexStore.create(path, bits, ...)``.

    ``hold_lock=True`` (the CLI's writers) takes the write lock when opening or creating and keeps it
    until ``close``: a second writer waits up to ``wait`` seconds, then fails with a clear message."""

    def __init__(self, path: Path, manifest: dict, indexes: dict, lock: WriteLock | None = None,
                 fresh: bool = False):
        self.path, self.manifest, self.indexes = Path(path), manifest, indexes
        self._lock = lock or WriteLock(self.path / LOCK_NAME, f"index {self.path}")
        self._base = int(manifest["generation"])  # the generation these contents were read from
        self._fresh = fresh  # a build: the items table starts empty instead of from the previous generation
        self._staged = None  # (path, connection): the next generation's items file, written as changes come
        self._dirty = fresh
        self._db, self._db_mutex = None, threading.Lock()
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
            manifest = {"format": FORMAT, "bits": int(bits), "backend": backend,
                        "backend_params": backend_params or {}, "model": model or {}, "vocab": vocab,
                        "label_names": label_names, "roots": [], "generation": _last_generation(path),
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
        params = dict(manifest["backend_params"])
        if manifest["backend"] == "milvus":
            params.setdefault("uri", str(path / "milvus.db"))
            params["collection"] = f"{params.pop('collection_prefix', 'cmhash')}_{modality}"
            params["overwrite"] = True
        return make_index(manifest["backend"], manifest["bits"], **params)

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
            store._remove_leftovers()
        return store

    @classmethod
    def _open_retrying(cls, path: Path, bits, fingerprint, verify, lock, tries: int = OPEN_TRIES) -> "IndexStore":
        """``_open``, again when a writer committed while it read (the generation it was reading is
        deleted by that commit): measured, about 1 open in 4,000 during back-to-back commits lost
        that race. A failure while the manifest stayed the same is damage, raised at once."""
        for attempt in range(tries):
            before = _manifest_key(path)
            try:
                return cls._open(path, bits, fingerprint, verify, lock)
            except (StoreError, OSError, sqlite3.DatabaseError) as e:
                moved = _manifest_key(path) != before
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
        manifest = read_manifest(path)
        mpath = path / "manifest.json"
        if bits is not None and manifest["bits"] != bits:
            raise StoreError(f"{path}: holds {manifest['bits']}-bit codes; this model makes {bits}-bit codes")
        have = manifest.get("model", {}).get("fingerprint")
        if fingerprint is not None and have and have != fingerprint:
            raise StoreError(f"{path}: built with model {have}, but this model is {fingerprint}: codes of different "
                             "models are not comparable (re-encode, or pass the model the index was built with)")
        if set(manifest.get("files", {})) != {*MODALITIES, "items"}:
            raise StoreError(f"{mpath}: names files {sorted(manifest.get('files', {}))}, expected image, text, items")
        # the items file is opened before the checks, so a writer that deletes it afterwards changes nothing
        items_p = path / manifest["files"]["items"]["path"]
        con = _open_items(items_p) if items_p.is_file() else None  # nothing read from it until checked
        try:
            if verify is None:
                verify = sum(int(f.get("bytes", 0)) for f in manifest["files"].values()) <= VERIFY_AT_OPEN_BYTES
            for name, f in manifest["files"].items():
                p = path / f["path"]
                if not p.is_file():
                    raise StoreError(f"{p}: missing ({name} file of generation {manifest['generation']}); if a "
                                     "writer just committed, open the index again")
                if p.stat().st_size != f["bytes"]:
                    raise StoreError(f"{p}: {p.stat().st_size} bytes, the manifest says {f['bytes']} (truncated?)")
                if verify and sha256_file(p) != f["sha256"]:
                    raise StoreError(f"{p}: checksum mismatch (the file was altered or damaged)")
            cols = _item_columns(con, items_p) if con is not None else None
            indexes = {}
            for m in MODALITIES:
                opts = {}
                if manifest["backend"] == "milvus":
                    opts["uri"] = str(path / "milvus.db") if "uri" not in manifest["backend_params"] else \
                        manifest["backend_params"]["uri"]
                try:
                    indexes[m] = load_index(path / manifest["files"][m]["path"], bits=manifest["bits"],
                                            verify=False, mmap=True, **opts)  # the file's checksum: above
                except HashIndexError as e:
                    raise StoreError(str(e)) from None
        except BaseException:
            if con is not None:
                con.close()
            raise
        store = cls(path, manifest, indexes, lock)
        store._db = (con, cols) if con is not None else None
        store.verified = bool(verify)
        store._mapped = {m: MappedFile(path / manifest["files"][m]["path"]) for m in MODALITIES}
        return store

    def changed(self) -> bool:
        """Whether a writer committed a newer generation than the one this store holds (a ``stat`` of
        the manifest per call; it is read only when it was replaced)."""
        try:
            st = os.stat(self.path / "manifest.json")
        except OSError:
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return False
        try:
            gen = int(json.loads((self.path / "manifest.json").read_text())["generation"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return False  # mid-replace or damaged: keep answering from this generation
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
        from .base import as_packed

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
        with self._writing():
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
            with self._writing():
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
            disk = _last_generation(self.path) if self._fresh else self._disk_generation()
            if not self._fresh and disk != self._base:
                raise StoreError(f"{self.path}: another writer committed generation {disk} since this store read "
                                 f"generation {self._base}; open it again and repeat the change")
            gen = max(disk, self._base) + 1
            try:
                with self._writing():
                    self._write_generation(gen)
            except BaseException:
                if self._disk_generation() != gen:  # not committed: its files go now, not at the next commit
                    self._remove_generation(gen)
                raise
        finally:
            if not held:
                self._lock.release()

    @contextlib.contextmanager
    def _writing(self):
        """A full disk (or a read-only, unwritable folder) while writing the store, from the files or
        from SQLite, is one ``CmhashError`` naming the folder."""
        try:
            with disk_errors(self.path, "index"):
                yield
        except sqlite3.OperationalError as e:
            if "full" not in str(e) and "disk" not in str(e) and "readonly" not in str(e):
                raise
            raise disk_error(OSError(errno.ENOSPC if "full" in str(e) else errno.EIO, str(e)), self.path,
                             "index") from None

    def _remove_generation(self, gen: int) -> None:
        for p in self.path.iterdir():
            m = _GEN_FILE.match(p.name)
            if m and int(m.group(2)) == gen:
                p.unlink(missing_ok=True)

    def _disk_generation(self) -> int:
        try:
            return int(read_manifest(self.path)["generation"])
        except (StoreError, KeyError, ValueError, TypeError):
            return -1

    def _plan_search(self) -> None:
        """Exact or approximate per query direction, decided at each commit and kept in the manifest
        (``manifest["search"]``, shown by ``cmhash index info``): with an approximate backend (ivf),
        a cross-modal direction (text->image, image->text) is answered approximately once its target
        holds ``approx_from`` codes, with the smallest nprobe whose recall@50 reaches
        ``target_recall`` on 200 of the store's own codes of the query modality as queries;
        same-modal directions stay exact (multi-index hashing) unless ``approx_same_modal``.
        Other backends answer every direction exactly."""
        if not getattr(self.indexes["image"], "approximate", False):
            self.manifest.pop("search", None)
            return
        from .ivf import calibrate

        plan = {}
        rng = np.random.default_rng(0)
        for src in MODALITIES:
            for tgt in MODALITIES:
                ix = self.indexes[tgt]
                if (src == tgt and not ix.approx_same_modal) or ix.ntotal < max(1, ix.approx_from):
                    plan[f"{src}->{tgt}"] = {"mode": "exact"}
                    continue
                cal = calibrate(ix, self._sample_codes(src, 200, rng), k=50, target=ix.target_recall)
                plan[f"{src}->{tgt}"] = {"mode": "approx", **cal}
        self.manifest["search"] = plan

    def _sample_codes(self, modality: str, n: int, rng) -> np.ndarray:
        """n of the store's own codes of ``modality`` (rows in order): queries for measuring recall."""
        ix = self.indexes[modality]
        return ix.codes[np.sort(rng.choice(ix.ntotal, min(n, ix.ntotal), replace=False))]

    def estimate_recall(self, queries: int = 200, seed: int = 1) -> dict:
        """Recall@50 of each approximate direction measured now, at its planned nprobe, on ``queries``
        codes of the query modality sampled from the store (``cmhash index info --recall N``)."""
        from .ivf import calibrate

        out, rng = {}, np.random.default_rng(seed)
        for key, plan in (self.manifest.get("search") or {}).items():
            if plan.get("mode") == "approx":
                src, tgt = key.split("->")
                out[key] = calibrate(self.indexes[tgt], self._sample_codes(src, queries, rng), k=50, target=0.0,
                                     nprobes=(plan["nprobe"],))
        return out

    def search_mode(self, source: str | None, target: str) -> dict:
        """How a query from ``source`` into ``target`` is answered: {"mode": "exact"} or
        {"mode": "approx", "nprobe", "recall", ...} (see ``_plan_search``)."""
        plan = (self.manifest.get("search") or {}).get(f"{source}->{target}") if source else None
        return plan if plan and plan.get("mode") == "approx" else {"mode": "exact"}

    def _stage(self) -> sqlite3.Connection:
        """The next generation's items file, opened at the first change (a copy of the current one)
        and written as changes come, so uncommitted records wait on disk, not in memory. It is a
        hidden ``.tmp`` file until the commit renames it; a killed writer's is deleted by the next
        commit."""
        if self._staged is None:
            path = self.path / f".items-staging-{os.getpid()}-{id(self):x}.tmp"
            old = None if self._fresh else self._items_path()
            con = None
            try:
                if old is not None and old.exists():
                    shutil.copyfile(old, path)
                else:
                    path.unlink(missing_ok=True)
                con = sqlite3.connect(path, check_same_thread=False)
                con.execute("PRAGMA journal_mode=OFF")  # a private file until the commit, which fsyncs it
                con.execute("PRAGMA synchronous=OFF")
                con.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, source TEXT, caption TEXT, "
                            "labels TEXT, root INTEGER)")
                if "root" not in {r[1] for r in con.execute("PRAGMA table_info(items)")}:
                    con.execute("ALTER TABLE items ADD COLUMN root INTEGER")  # a store from before roots
            except BaseException:  # a full disk while copying: no staging file is left
                if con is not None:
                    con.close()
                path.unlink(missing_ok=True)
                raise
            self._staged = (path, con)
        return self._staged[1]

    def _drop_stage(self) -> None:
        if self._staged is not None:
            path, con = self._staged
            con.close()
            path.unlink(missing_ok=True)
            self._staged = None

    def _write_generation(self, gen: int) -> None:
        self._plan_search()  # before the index files are written: approximate indexes save their lists
        con = self._stage()
        con.commit()
        (count,) = con.execute("SELECT COUNT(*) FROM items").fetchone()
        if count != self.ntotal:  # validated before anything is replaced
            raise StoreError(f"{self.path}: the new generation would hold {self.ntotal} codes but {count} item "
                             "records; nothing was changed")
        files = {}
        for m in MODALITIES:
            p = self.path / f"{m}-g{gen:06d}.cmhidx"
            self.indexes[m].save(p)
            files[m] = p
        staged, _ = self._staged
        con.close()
        self._staged = None
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        items = self.path / f"items-g{gen:06d}.sqlite"
        os.replace(staged, items)
        files["items"] = items
        if not self._fresh:  # what a build was made from (``index build`` run again): no longer all it holds
            self.manifest.pop("built_from", None)
        manifest = dict(self.manifest, generation=gen, n_items=self.ntotal,
                        updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        files={k: {"path": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                               for k, p in files.items()})
        _fsync_dir(self.path)
        write_json_atomic(self.path / "manifest.json", manifest)
        _fsync_dir(self.path)
        self.manifest, self._base, self._fresh, self._dirty = manifest, gen, False, False
        self._remove_leftovers()
        with self._db_mutex:
            if self._db is not None:
                self._db[0].close()
            self._db = _connect(items)

    def _remove_leftovers(self) -> None:
        """Delete the generation files the manifest does not name (the previous generation, or those
        of a writer killed before or after its commit) and dead writers' staging files. Called by the
        writer holding the lock: at each commit, and when a writer opens the store (a re-run that
        has nothing left to change still cleans up after the killed one)."""
        keep = {f["path"] for f in self.manifest["files"].values()}
        for p in self.path.iterdir():
            stale = bool(_GEN_FILE.match(p.name))
            killed_writer = p.name.startswith(".") and p.name.endswith(".tmp") and not _staged_by_live(p.name)
            if p.is_file() and p.name not in keep and (stale or killed_writer):
                p.unlink(missing_ok=True)

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
        elif getattr(ix, "approximate", False):
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
        try:
            ids = [int(i) for i in np.asarray(ids).ravel()]
        except (TypeError, ValueError, OverflowError):
            return {}
        ids = [i for i in ids if 0 <= i < 2**63]  # SQLite integers; anything else is no item
        out: dict[int, dict] = {}
        if not ids or self._items_path() is None:
            return out
        with self._db_mutex:
            if self._db is None:
                self._db = _connect(self._items_path())
            con, cols = self._db
            for s in range(0, len(ids), 900):
                part = ids[s:s + 900]
                q = f"SELECT {cols} FROM items WHERE id IN ({','.join('?' * len(part))})"
                try:
                    found = con.execute(q, part).fetchall()
                except sqlite3.DatabaseError as e:
                    raise StoreError(f"{self._items_path()}: damaged (not a readable items database: {e})") from None
                for i, src, cap, lab, root in found:
                    if src and os.path.isabs(src):  # a store from before roots: no server path is shown
                        src = os.path.basename(src)
                    out[i] = {"id": i, "source": src, "caption": cap, "labels": json.loads(lab or "[]"),
                              "root": root}
        return out

    def captions(self, limit: int = 5000) -> list[str]:
        """Up to ``limit`` item captions, in id order (the service's example queries come from them)."""
        if self._items_path() is None:
            return []
        with self._db_mutex:
            if self._db is None:
                self._db = _connect(self._items_path())
            try:
                rows = self._db[0].execute("SELECT caption FROM items WHERE caption IS NOT NULL ORDER BY id LIMIT ?",
                                           (int(limit),)).fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self._items_path()}: damaged (not a readable items database: {e})") from None
        return [r[0] for r in rows if r[0]]

    def source_path(self, item_id: int) -> Path | None:
        """The image file of an item, only when it lies inside its root folder (symbolic links
        resolved); None when the item has no file there."""
        rec = self._records([item_id]).get(int(item_id)) if isinstance(item_id, (int, np.integer)) else None
        roots = self.manifest.get("roots") or []
        if not rec or not rec["source"] or rec["root"] is None or not 0 <= rec["root"] < len(roots):
            return None
        root = Path(roots[rec["root"]]).resolve()
        p = (root / rec["source"]).resolve()
        return p if p.is_relative_to(root) and p.is_file() else None

    def info(self) -> dict:
        size = sum((self.path / f["path"]).stat().st_size for f in self.manifest["files"].values())
        if (self.path / "milvus.db").is_file():  # the embedded milvus-lite file
            size += (self.path / "milvus.db").stat().st_size
        from ..kernels import kernel_name, kernel_variant

        m = self.manifest
        return {"path": str(self.path), "bits": m["bits"], "backend": m["backend"], "items": self.ntotal,
                "generation": m["generation"], "model": m.get("model", {}), "bytes_on_disk": size,
                "bytes_per_item": round(size / max(1, self.ntotal), 1), "kernel": f"{kernel_name()} ({kernel_variant(m['bits'] // 8)})",
                "checksums": "verified" if self.verified else "not read at open (sizes and headers checked; "
                                                                "--verify reads the files)",
                "vocab_size": len(m.get("vocab") or []), "updated": m.get("updated"),
                "search": {d: p["mode"] + (f" (nprobe {p['nprobe']}, recall@{p['k']} {p['recall']:.3f} on "
                                           f"{p['queries']} sampled queries)" if p["mode"] == "approx" else "")
                           for d, p in (m.get("search") or {}).items()} or "exact"}

    def close(self) -> None:
        """Close the items connection and the backends, drop uncommitted changes, and release the write
        lock if held."""
        self._drop_stage()
        with self._db_mutex:
            if self._db is not None:
                self._db[0].close()
                self._db = None
        self._lock.release()
        for f in self._mapped.values():
            f.close()
        for ix in self.indexes.values():
            if hasattr(ix, "close"):
                ix.close()


def _open_items(path: Path) -> sqlite3.Connection:
    """A read-only connection to a generation's items file (never changed once written); nothing is
    read from it until ``_item_columns``, so its size and checksum are checked first."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def _item_columns(con: sqlite3.Connection, path: Path) -> str:
    """The columns to select from an items file (a store from before roots has no ``root`` column),
    read once; a file that is not an SQLite database is the "damaged" error the other files get."""
    try:
        has_root = "root" in {r[1] for r in con.execute("PRAGMA table_info(items)")}
    except sqlite3.DatabaseError as e:
        con.close()
        raise StoreError(f"{path}: damaged (not a readable items database: {e})") from None
    return "id, source, caption, labels" + (", root" if has_root else ", NULL")


def _connect(path: Path) -> tuple[sqlite3.Connection, str]:
    """``_open_items`` and ``_item_columns`` together: a connection and its columns."""
    con = _open_items(path)
    return con, _item_columns(con, path)


def _staged_by_live(name: str) -> bool:
    """Whether a staging file belongs to a process still running (an API writer that has not
    committed yet): only a dead writer's staging file is deleted."""
    m = re.match(r"^\.items-staging-(\d+)-", name)
    if not m:
        return False
    if int(m.group(1)) == os.getpid():
        return True  # another store of this process, still open
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
