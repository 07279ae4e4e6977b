"""The paired-data abstraction and its validation.

``PairedData`` holds, per item, an image (a feature vector, or raw uint8 pixels that may live in
a lazily read HDF5 file or in image files), a text vector (bag-of-words or features) and a
multi-hot label vector. Every loader ends in ``validate_paired`` so bad input fails early with
the file and the problem named.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import CmhashError


class DataError(CmhashError):
    """A dataset file or array is missing, malformed or inconsistent."""


@dataclass
class PairedData:
    images: Any  # (N, D) float32 features | (N, 3, H, W) uint8 array | object with .take(idx), .shape
    texts: np.ndarray | None  # (N, d) float32; None: captions only, vectors come from a text encoder
    labels: np.ndarray  # (N, C) uint8 multi-hot
    name: str = "data"
    image_kind: str = "features"  # "features" | "pixels"
    vocab: list[str] | None = None
    label_names: list[str] | None = None
    captions: list[str] | None = None
    names: list[str] | None = None  # item names (a folder's image paths as in captions.tsv), for split files
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def image_rows(self, idx) -> np.ndarray:
        """Images of rows ``idx`` as an array (reads only those rows from lazy storage)."""
        idx = np.asarray(idx, dtype=np.int64)
        if hasattr(self.images, "take") and not isinstance(self.images, np.ndarray):
            return self.images.take(idx)
        return np.asarray(self.images[idx])

    def subset(self, idx) -> "PairedData":
        idx = np.asarray(idx, dtype=np.int64)
        images = self.images[idx] if isinstance(self.images, np.ndarray) else _Rows(self.images, idx)
        return PairedData(
            images=images, texts=self.texts[idx] if self.texts is not None else None, labels=self.labels[idx], name=self.name,
            image_kind=self.image_kind, vocab=self.vocab, label_names=self.label_names,
            captions=[self.captions[i] for i in idx] if self.captions is not None else None,
            names=[self.names[i] for i in idx] if self.names is not None else None,
            info=dict(self.info),
        )


class _Rows:
    """A row subset of lazy image storage (no data read until ``take``)."""

    def __init__(self, base, idx: np.ndarray):
        self.base, self.idx = base, idx
        self.shape = (len(idx),) + tuple(base.shape[1:])

    def __len__(self) -> int:
        return len(self.idx)

    def take(self, idx) -> np.ndarray:
        return self.base.take(self.idx[np.asarray(idx, dtype=np.int64)])


def _check_finite(arr: np.ndarray, what: str, source: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        r = bad[0][0]
        raise DataError(f"{source}: {what} contain NaN or inf ({len(bad)} values; first at row {r})")


def validate_paired(data: PairedData, source: str = "", drop_empty_labels: bool = False) -> PairedData:
    """Check shapes, dtypes and values; return the data (float32 texts, uint8 labels).

    Raises ``DataError`` naming ``source`` and the problem. All-zero label rows are reported and,
    only when ``drop_empty_labels`` is set, removed.
    """
    source = source or data.name
    if data.texts is None and data.captions is None:
        raise DataError(f"{source}: the dataset has neither text vectors nor captions")
    n_img, n_lab = data.images.shape[0], data.labels.shape[0]
    n_txt = data.texts.shape[0] if data.texts is not None else len(data.captions)
    if not (n_img == n_txt == n_lab):
        raise DataError(f"{source}: row counts differ: images {n_img}, texts {n_txt}, labels {n_lab}")
    if n_lab == 0:
        raise DataError(f"{source}: the dataset has no items")
    if data.texts is not None and data.texts.ndim != 2:
        raise DataError(f"{source}: texts have shape {data.texts.shape}, expected (N, d)")
    if data.labels.ndim != 2:
        raise DataError(f"{source}: labels have shape {data.labels.shape}, expected (N, C)")
    lazy_texts = data.texts is None  # captions: vectors come later, from the model's text encoder
    if not lazy_texts:
        _check_finite(np.asarray(data.texts), "texts", source)
    _check_finite(np.asarray(data.labels, dtype=np.float64), "labels", source)
    lab = np.asarray(data.labels)
    if not np.isin(lab, (0, 1)).all():
        raise DataError(f"{source}: labels must be multi-hot 0/1 (found values {np.unique(lab)[:8]})")
    if data.image_kind == "features":
        img = np.asarray(data.images)
        if img.ndim != 2:
            raise DataError(f"{source}: image features have shape {img.shape}, expected (N, D)")
        _check_finite(img, "image features", source)
        data.images = img.astype(np.float32, copy=False)
    elif data.image_kind == "pixels":
        shape = data.images.shape
        if len(shape) != 4 or shape[1] != 3:
            raise DataError(f"{source}: images have shape {tuple(shape)}, expected (N, 3, H, W)")
        if np.dtype(data.images.dtype) != np.uint8:
            raise DataError(f"{source}: images have dtype {data.images.dtype}, expected uint8 pixels")
    else:
        raise DataError(f"{source}: unknown image kind {data.image_kind!r}")
    if not lazy_texts:
        data.texts = np.asarray(data.texts, dtype=np.float32)
    data.labels = lab.astype(np.uint8, copy=False)
    empty = np.flatnonzero(data.labels.sum(1) == 0)
    if len(empty):
        if drop_empty_labels:
            warnings.warn(f"{source}: dropped {len(empty)} items with all-zero label rows", stacklevel=2)
            keep = np.flatnonzero(data.labels.sum(1) > 0)
            data = data.subset(keep)
            data.info["dropped_empty_label_rows"] = empty.tolist()
        else:
            warnings.warn(
                f"{source}: {len(empty)} items have all-zero label rows (first: {empty[:5].tolist()}); "
                "they are never relevant to any query. Pass drop_empty_labels=True to drop them.",
                stacklevel=2,
            )
            data.info["empty_label_rows"] = int(len(empty))
    if not lazy_texts:
        empty_txt = int((np.abs(data.texts).sum(1) == 0).sum())
        if empty_txt:
            data.info["empty_text_rows"] = empty_txt
    return data


def data_root(root, name: str) -> Path:
    """The data folder a loader reads, checked: a clear error when none is given or it is absent."""
    if root is None:
        raise DataError(f"dataset {name!r} needs a data folder (--data-root)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    return root
