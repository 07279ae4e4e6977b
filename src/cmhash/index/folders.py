"""Codes folders into a store: ``build_index`` and ``add_to_index`` (what ``cmhash index build``
and ``index add`` do), each one transaction.

Every folder is read and checked first (``read_folders``: the records, the code length, the
model's fingerprint, ids unique across folders), before anything in the store changes; the items
are then added in chunks of ``ADD_CHUNK`` records, so millions of items take bounded memory.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codes_folder import read_codes
from ..spec import TextSpec
from ..utils import CmhashError
from .store import LOCK_NAME, IndexStore, StoreError, read_manifest, sha256_file

ADD_CHUNK = 500_000  # item records per store.add: about 200 MB of records at a time


@dataclass
class Folder:
    path: Path
    codes: dict  # ``read_codes(path, items=False)``
    ids: np.ndarray  # (n,) int64, unique


def read_folders(folders, bits: int | None = None, fingerprint: str | None = None,
                 where: str = "the first folder") -> list[Folder]:
    """Every codes folder read and checked, against each other and against the index (``bits``,
    ``fingerprint``), before anything is changed."""
    folders = [Path(f) for f in folders]
    twice = [f for i, f in enumerate(folders) if f in folders[:i]]
    if twice:
        raise CmhashError(f"{twice[0]} is given twice")
    loaded: list[Folder] = []
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
        ids = c["ids"]
        for other in loaded:  # arrays, not a dict of ids: memory stays ~8 bytes an item
            shared = ids[np.isin(ids, other.ids)]
            if len(shared):
                raise CmhashError(f"{f}: id {int(shared[0])} is also in {other.path}; encode one of them with "
                                  "--id-start")
        loaded.append(Folder(f, c, ids))
    return loaded


def add_folders(store: IndexStore, loaded: list[Folder], present: str) -> tuple[int, int]:
    """Add every folder's items in one transaction (one commit); returns (added, already there)."""
    added = skipped = 0
    for f in loaded:
        c, at = f.codes, 0
        for items in c["chunks"](ADD_CHUNK):  # bounded memory: a chunk of records at a time
            m = len(items)
            got = store.add(np.asarray(c["image"][at:at + m]), np.asarray(c["text"][at:at + m]), items,
                            ids=f.ids[at:at + m], root=c["meta"].get("root"), commit=False, present=present)
            added, skipped, at = added + len(got), skipped + m - len(got), at + m
    store.commit()
    return added, skipped


def folders_fingerprint(folders) -> list[str]:
    """What a build was made from: each codes folder's files, hashed (``index build`` run again on the
    same folders finds its index complete)."""
    return [":".join(sha256_file(Path(f) / n)[:16] for n in ("codes.json", "image.npy", "text.npy", "items.jsonl"))
            for f in folders]


def build_index(codes, out, backend: str = "flat", params: dict | None = None, overwrite: bool = False,
                wait: float = 600.0, on_wait=None) -> dict | None:
    """A new index in ``out`` from codes folders; its ``info()``, or None when ``out`` was already
    built from exactly these folders with this backend (nothing to do). All-or-nothing: a folder
    that fails its checks, or a build that fails, leaves ``out`` as it was (a folder this call made
    is removed again)."""
    out = Path(out)
    loaded = read_folders(codes)
    made_from = folders_fingerprint(codes)
    if (out / "manifest.json").exists() and not overwrite:
        try:
            old = read_manifest(out)  # the manifest only: what the index was built from
        except StoreError:
            old = {}
        if old.get("built_from") == made_from and old.get("backend") == backend:
            return None
    created = not out.exists()
    first = loaded[0].codes["meta"]
    try:
        store = IndexStore.create(out, first["bits"], backend, model=first["model"],
                                  vocab=TextSpec.from_dict(first["spec"]["text"]).vocab,
                                  label_names=first.get("label_names"), backend_params=params or {},
                                  overwrite=overwrite, commit=False, hold_lock=True, wait=wait, on_wait=on_wait)
        try:
            store.manifest["built_from"] = made_from
            add_folders(store, loaded, present="error")
            return store.info()
        finally:
            store.close()
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        elif not (out / "manifest.json").exists():
            (out / LOCK_NAME).unlink(missing_ok=True)
        raise


def add_to_index(index_dir, codes, wait: float = 600.0, on_wait=None) -> tuple[int, int, IndexStore]:
    """Add codes folders (same model, same code length, checked) to an index in one transaction;
    returns (added, already there with the same codes, the closed store)."""
    store = IndexStore.open(index_dir, hold_lock=True, wait=wait, on_wait=on_wait)
    try:
        loaded = read_folders(codes, store.bits, store.manifest.get("model", {}).get("fingerprint"),
                              where=f"the index {index_dir}")
        added, skipped = add_folders(store, loaded, present="skip")
    finally:
        store.close()
    return added, skipped, store
