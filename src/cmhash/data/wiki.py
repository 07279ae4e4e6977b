"""The Wikipedia benchmark (Rasiwasia et al., ACM MM 2010): ``wikiData.mat`` with 128-d SIFT
bag-of-visual-words images, 10-d LDA texts, 10 classes, and its fixed 2,173 / 693 split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..registry import register_dataset
from .base import DataError, PairedData, validate_paired
from .matio import MatFile
from .protocol import LoadedDataset, Split


def wiki_labels(raw: np.ndarray, n_classes: int = 10, source: str = "wikiData.mat") -> np.ndarray:
    """Wiki labels come as a column of class ids 1..C or as one-hot rows; return one-hot uint8."""
    raw = np.asarray(raw)
    if raw.shape[1] == 1:
        ids = raw[:, 0]
        if ids.dtype.kind == "f" and not np.isfinite(ids).all():
            raise DataError(f"{source}: labels contain NaN or inf")
        if (ids != np.round(ids)).any():
            raise DataError(f"{source}: class ids must be whole numbers 1..{n_classes}")
        ids = ids.astype(np.int64)
        if ids.min() < 1 or ids.max() > n_classes:
            raise DataError(f"{source}: class ids must be 1..{n_classes}, found {ids.min()}..{ids.max()}")
        return np.eye(n_classes, dtype=np.uint8)[ids - 1]
    if not np.isin(raw, (0, 1)).all():
        raise DataError(f"{source}: one-hot label rows must hold only 0 and 1")
    return raw.astype(np.uint8)


@register_dataset("wiki", help="Wikipedia benchmark (wikiData.mat: I_tr, I_te, T_tr, T_te, L_tr, L_te)")
def load_wiki(root=None, file: str = "wikiData.mat", drop_empty_labels: bool = False, **_):
    if root is None:
        raise DataError("dataset 'wiki' needs --data-root: the folder holding wikiData.mat, or the file itself")
    path = Path(root) / file if Path(root).is_dir() else Path(root)
    m = MatFile(path)
    i_tr, i_te, t_tr, t_te = (m.matrix(k) for k in ("I_tr", "I_te", "T_tr", "T_te"))
    raw_tr, raw_te = m.matrix("L_tr"), m.matrix("L_te")
    l_tr, l_te = wiki_labels(raw_tr, 10, str(path)), wiki_labels(raw_te, 10, str(path))
    n_classes = l_tr.shape[1]
    for a, b, what in ((i_tr, t_tr, "I_tr/T_tr"), (i_tr, l_tr, "I_tr/L_tr"), (i_te, t_te, "I_te/T_te"), (i_te, l_te, "I_te/L_te")):
        if len(a) != len(b):
            raise DataError(f"{path}: row counts differ: {what} {len(a)} vs {len(b)}")
    for a, b, what in ((i_tr, i_te, "I_tr/I_te"), (t_tr, t_te, "T_tr/T_te"), (l_tr, l_te, "L_tr/L_te")):
        if a.shape[1] != b.shape[1]:
            raise DataError(f"{path}: column counts differ: {what} {a.shape[1]} vs {b.shape[1]}")
    n_tr, n_te = len(i_tr), len(i_te)
    data = PairedData(np.concatenate([i_tr, i_te]), np.concatenate([t_tr, t_te]), np.concatenate([l_tr, l_te]),
                      name="wiki", image_kind="features", info={"files": [str(path)]},
                      label_names=["art", "biology", "geography", "history", "literature", "media", "music",
                                   "royalty", "sport", "warfare"][:n_classes])
    data = validate_paired(data, str(path), drop_empty_labels)
    if "dropped_empty_label_rows" in data.info:
        raise DataError(f"{path}: Wiki labels are single-class; empty label rows mean a broken file")
    train = np.arange(n_tr)
    split = Split(np.arange(n_tr, n_tr + n_te), train, train, "fixed", 0, {"source": "wikiData.mat train/test"})
    return LoadedDataset(data, "fixed", {}, fixed_split=split)
