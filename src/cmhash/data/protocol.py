"""Evaluation protocols: which items are queries, which train, which form the database.

- ``djsrh``: DJSRH's split (its ``datasets.py``). Queries and training items are drawn class by
  class from items carrying that label and not yet chosen; the first class gets ``first_factor``
  times the per-class quota (MIRFlickr: 160 + 80 x 23 queries, 400 + 200 x 23 training items;
  NUS-WIDE: 200 and 500 per class). Both sets are topped up at random to their sizes; the
  database is every item except the queries, so the training set lies inside it.
- ``dcmh``: DCMH / SSAH: 2,000 random queries, database = all other items, 10,000 training items
  drawn at random from the database.
- ``fixed``: a dataset's own split (Wiki: 693 test pairs as queries, the 2,173 training pairs as
  both training set and database, as DJSRH's ``compress_wiki`` does).

Unlike the references (which never seed NumPy), every split here is seeded, and saved next to
every result as JSON so it can be reloaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import write_json_atomic
from .base import DataError, PairedData


@dataclass
class Split:
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    protocol: str = "custom"
    seed: int = 0
    params: dict = field(default_factory=dict)

    def fewer_training(self, n: int, seed: int = 0) -> "Split":
        """The same split with ``n`` of its training items, drawn uniformly with ``seed``; queries and
        database unchanged (a training-set size study: the model learns from fewer items, and is
        searched over the same database)."""
        if not 0 < n <= len(self.train):
            raise DataError(f"data.train_items must be between 1 and the split's {len(self.train)} training items, "
                            f"got {n}")
        train = np.sort(np.random.default_rng(seed).choice(self.train, n, replace=False))
        return Split(self.query, train, self.database, self.protocol, self.seed,
                     {**self.params, "train_items": n})

    def sizes(self) -> dict:
        return {"query": len(self.query), "train": len(self.train), "database": len(self.database)}

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, {
            "protocol": self.protocol, "seed": self.seed, "params": self.params,
            "query": self.query.tolist(), "train": self.train.tolist(), "database": self.database.tolist(),
        })

    @classmethod
    def load(cls, path: str | Path, names: list[str] | None = None) -> "Split":
        """A split file (``--split-file``), JSON, in one of two shapes:

        - ``{"query": [...], "train": [...], "database": [...]}`` (what ``save`` writes);
        - the captioning community's ``{"train": [...], "val": [...], "test": [...]}``: queries are
          test + val, training and database are train (+ ``restval`` when present).

        Entries are row numbers, or item names (a folder dataset's image paths as written in
        ``captions.tsv``) resolved through ``names``."""
        try:
            d = json.loads(Path(path).read_text())
            if "query" not in d and "test" in d:  # Karpathy-style train / val / test
                train = list(d["train"]) + list(d.get("restval", []))
                d = {"query": list(d["test"]) + list(d.get("val", [])), "train": train, "database": train,
                     "protocol": "karpathy"}
            parts = [_rows(d[k], names, path, k) for k in ("query", "train", "database")]
            return cls(*parts, d.get("protocol", "custom"), d.get("seed", 0), d.get("params", {}))
        except DataError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a readable split file ({type(e).__name__}: {e}); expected JSON with "
                            "query/train/database (or train/val/test) lists of row numbers or item names") from None

    def check(self, n: int) -> None:
        """Every part non-empty, within 0..n-1, without repeats; the queries apart from the training
        set and the database (a query found in either is a leaked query, and its mAP means nothing)."""
        for name in ("query", "train", "database"):
            idx = getattr(self, name)
            if len(idx) == 0:
                raise DataError(f"split has an empty {name} set")
            if idx.min() < 0 or idx.max() >= n:
                raise DataError(f"split's {name} indices fall outside 0..{n - 1}")
            uniq, counts = np.unique(idx, return_counts=True)
            if (counts > 1).any():
                raise DataError(f"split's {name} set repeats {int((counts > 1).sum())} items (e.g. row "
                                f"{int(uniq[counts > 1][0])}); each item may appear once")
        for other in ("train", "database"):
            both = np.intersect1d(self.query, getattr(self, other))
            if len(both):
                raise DataError(f"split: {len(both)} query items are also in the {other} set (e.g. row {int(both[0])}); "
                                "queries must be held out, or their scores are measured on leaked items")


def _rows(entries, names: list[str] | None, path, part: str) -> np.ndarray:
    """Row numbers from a split file's list of row numbers (integers: not floats, not booleans) or
    item names."""
    if not isinstance(entries, list):
        raise DataError(f"{path}: the {part} entry must be a list of row numbers or item names")
    if not entries or not isinstance(entries[0], str):
        bad = [e for e in entries if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < 2**63]
        if bad:
            raise DataError(f"{path}: the {part} list holds {len(bad)} entries that are not row numbers (whole "
                            f"numbers >= 0), e.g. {bad[0]!r}")
        return np.asarray(entries, np.int64)
    if names is None:
        raise DataError(f"{path}: the {part} list holds names, but this dataset's items have no names; give row "
                        "numbers")
    index = {n: i for i, n in enumerate(names)}
    missing = [e for e in entries if not isinstance(e, str) or e not in index]
    if missing:
        raise DataError(f"{path}: {len(missing)} {part} names are not items of the dataset (first: {missing[0]!r})")
    return np.asarray([index[e] for e in entries], np.int64)


def _stratified(labels: np.ndarray, total: int, first_factor: int, taken: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Pick ``total`` items class by class (DJSRH's loop), then top up at random."""
    n, c = labels.shape
    quota = total // (c - 1 + first_factor)
    chosen: list[np.ndarray] = []
    for k in range(c):
        cand = np.flatnonzero((labels[:, k] > 0) & ~taken)
        cand = cand[rng.permutation(len(cand))][: quota * (first_factor if k == 0 else 1)]
        taken[cand] = True
        chosen.append(cand)
    out = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    if len(out) < total:
        rest = np.flatnonzero(~taken)
        extra = rest[rng.permutation(len(rest))][: total - len(out)]
        taken[extra] = True
        out = np.concatenate([out, extra])
    return out.astype(np.int64)


def make_split(labels: np.ndarray, protocol: str = "djsrh", n_query: int = 2000, n_train: int = 5000,
               seed: int = 0, first_factor: int = 1) -> Split:
    """Build a seeded split of ``len(labels)`` items (see module docstring for the protocols)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n_query + 1 > n:
        raise DataError(f"cannot take {n_query} queries from {n} items")
    rng = np.random.default_rng(seed)
    params = {"n_query": n_query, "n_train": n_train, "first_factor": first_factor}
    if protocol == "djsrh":
        if n_query + n_train > n:
            raise DataError(f"djsrh protocol needs {n_query} + {n_train} items, dataset has {n}")
        taken = np.zeros(n, bool)
        query = _stratified(labels, n_query, first_factor, taken, rng)
        train = _stratified(labels, n_train, first_factor, taken, rng)
        database = np.flatnonzero(~np.isin(np.arange(n), query))
    elif protocol == "dcmh":
        perm = rng.permutation(n)
        query, database = np.sort(perm[:n_query]), np.sort(perm[n_query:])
        if n_train > len(database):
            raise DataError(f"dcmh protocol needs {n_train} training items, database has {len(database)}")
        train = np.sort(rng.choice(database, n_train, replace=False))
    else:
        raise DataError(f"unknown protocol {protocol!r}; use 'djsrh', 'dcmh' or a dataset's 'fixed' split")
    split = Split(query, train, database.astype(np.int64), protocol, seed, params)
    split.check(n)
    return split


def validation_split(train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the training items for model selection (never the queries)."""
    if not 0 <= fraction < 1:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed + 7919)
    perm = rng.permutation(len(train))
    n_val = int(round(len(train) * fraction))
    return np.sort(train[perm[n_val:]]), np.sort(train[perm[:n_val]])


@dataclass
class LoadedDataset:
    """What a dataset loader returns: the data, its default protocol and, where it has one, its fixed split."""

    data: PairedData
    protocol: str = "djsrh"  # default protocol for this dataset
    protocol_params: dict = field(default_factory=dict)
    fixed_split: Split | None = None
    text_encoder: str | None = None  # default text encoder for its captions (None: the dataset's own vectors)

    def split(self, protocol: str | None = None, seed: int = 0, **params) -> Split:
        protocol = protocol or self.protocol
        if protocol == "fixed":
            if self.fixed_split is None:
                raise DataError(f"dataset {self.data.name!r} has no fixed split; use 'djsrh' or 'dcmh'")
            return self.fixed_split
        kw = dict(self.protocol_params) if protocol == self.protocol else {}
        kw.update({k: v for k, v in params.items() if v is not None})
        return make_split(self.data.labels, protocol, seed=seed, **kw)
