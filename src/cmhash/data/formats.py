"""Loaders for the community's file formats, registered by name (``cmhash list``).

MIRFlickr-25K, NUS-WIDE (top-10), MS-COCO and IAPR TC-12 share one layout (DJSRH / DCMH
processing): ``<prefix>-lall.mat`` (LAll, n x C labels), ``<prefix>-yall.mat`` (YAll, n x d
bag-of-words), and images either raw (``<prefix>-iall.mat``, IAll, uint8, HDF5, read lazily) or
as features (``<prefix>-iall-vgg.mat``, XAll, n x 4096). Both MAT v5 and v7.3 files are read.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..registry import register_dataset
from .base import DataError, PairedData, validate_paired
from .images import FolderImages
from .matio import MatFile
from .protocol import Split, make_split


@dataclass
class LoadedDataset:
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


def _root(root, name: str) -> Path:
    if root is None:
        raise DataError(f"dataset {name!r} needs a data folder (--data-root)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    return root


def load_lall_yall(root, prefix: str, name: str, images: str = "auto", layout: str = "matlab",
                   drop_empty_labels: bool = False) -> PairedData:
    """Load the LAll/YAll(/IAll|XAll) layout; ``images`` is 'auto', 'pixels' or 'features'."""
    root = _root(root, name)
    lab_f, txt_f = root / f"{prefix}-lall.mat", root / f"{prefix}-yall.mat"
    pix_f, feat_f = root / f"{prefix}-iall.mat", root / f"{prefix}-iall-vgg.mat"
    labels = MatFile(lab_f).matrix("LAll")
    texts = MatFile(txt_f).matrix("YAll")
    if images == "auto":
        images = "pixels" if pix_f.exists() else "features" if feat_f.exists() else "missing"
    if images == "pixels":
        imgs, kind, src = MatFile(pix_f).images("IAll", layout), "pixels", pix_f
    elif images == "features":
        imgs, kind, src = MatFile(feat_f).matrix("XAll"), "features", feat_f
    elif images == "missing":
        raise DataError(f"{root}: no image file: expected {pix_f.name} (IAll) or {feat_f.name} (XAll)")
    else:
        raise DataError(f"unknown images option {images!r}; use 'auto', 'pixels' or 'features'")
    if len(labels) != len(texts) or len(labels) != imgs.shape[0]:
        raise DataError(f"{root}: row counts differ: {lab_f.name} {len(labels)}, {txt_f.name} {len(texts)}, "
                        f"{src.name} {imgs.shape[0]}")
    data = PairedData(imgs, texts, labels, name=name, image_kind=kind,
                      info={"files": [str(lab_f), str(txt_f), str(src)]})
    return validate_paired(data, f"{root}/{prefix}-*.mat", drop_empty_labels)


def _lall_loader(name: str, prefix: str, first_factor: int, help: str):
    @register_dataset(name, help=help)
    def load(root=None, images: str = "auto", layout: str = "matlab", drop_empty_labels: bool = False,
             prefix: str = prefix, **_):
        data = load_lall_yall(root, prefix, name, images, layout, drop_empty_labels)
        return LoadedDataset(data, "djsrh", {"n_query": 2000, "n_train": 5000, "first_factor": first_factor})

    return load


_lall_loader("mirflickr", "mirflickr25k", 2, "MIRFlickr-25K (mirflickr25k-{lall,yall,iall|iall-vgg}.mat)")
_lall_loader("nuswide", "nus-wide-tc10", 1, "NUS-WIDE top-10 (nus-wide-tc10-{lall,yall,iall|iall-vgg}.mat)")
_lall_loader("mscoco", "mscoco", 1, "MS-COCO in the LAll/YAll/IAll layout (mscoco-*.mat)")
_lall_loader("iapr", "iapr-tc12", 1, "IAPR TC-12 in the LAll/YAll/IAll layout (iapr-tc12-*.mat)")


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


def read_caption_file(path: Path) -> list[tuple[int, tuple[str, str, list[str] | None]]]:
    """``path<TAB>caption[<TAB>label,label,...]`` per line -> (line number, (name, caption, labels));
    blank lines are skipped.

    Only ``\\n`` (or ``\\r\\n``) ends a row: U+2028, NEL and other Unicode line breaks are text
    inside a caption, as a spreadsheet writes them. A UTF-8 byte-order mark at the start (Notepad,
    Excel) is dropped. A row with more than three tab-separated fields is an error naming the line:
    a tab inside a caption would otherwise move words into the label column."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    rows = []
    for ln, line in enumerate(text.split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"{path}:{ln}: expected 'image<TAB>caption[<TAB>labels]'")
        if len(parts) > 3:
            raise DataError(f"{path}:{ln}: {len(parts)} tab-separated fields, expected 'image<TAB>caption"
                            "[<TAB>labels]': a caption cannot hold a tab (replace it with a space)")
        name, caption = parts[0].strip(), parts[1].strip()  # an empty caption is kept, and counted
        labels = [x.strip() for x in parts[2].split(",") if x.strip()] if len(parts) > 2 else None
        rows.append((ln, (name, caption, labels)))
    if not rows:
        raise DataError(f"{path}: no captions")
    return rows


@register_dataset("folder", help="your own data: a folder with images and captions.tsv (image<TAB>caption[<TAB>labels])")
def load_folder(root=None, captions: str = "captions.tsv", image_size: int = 224, n_query: int | None = None,
                n_train: int | None = None, seed: int = 0, **_):
    """Captions stay text here: ``data.inputs.prepare_texts`` turns them into vectors with the
    model's text encoder (default ``auto``), fitted on the training part of the split in use."""
    root = _root(root, "folder")
    rows = read_caption_file(root / captions)
    paths, real_root = [], root.resolve()
    for ln, (name, _, _) in rows:
        try:
            p = (root / name).resolve()
            inside = p.is_relative_to(real_root)
            found = bool(name) and p.is_file()
        except (OSError, ValueError) as e:  # a NUL byte, a name too long, ...
            raise DataError(f"{root / captions}:{ln}: image name {name!r} is not a usable path ({e})") from None
        if not inside:  # an absolute path or ../ (symbolic links resolved): the collection is its folder
            raise DataError(f"{root / captions}:{ln}: image {name!r} lies outside the folder {root}; images must be "
                            "inside the dataset folder (copy or link the folder, not single files)")
        if not found:
            raise DataError(f"{root / captions}:{ln}: image {name!r} not found under {root}")
        paths.append(p)
    lines = [ln for ln, _ in rows]
    rows = [r for _, r in rows]
    unlabelled = [ln for ln, r in zip(lines, rows) if not r[2]]
    has_labels = len(unlabelled) < len(rows)
    if has_labels and unlabelled:
        shown = ", ".join(map(str, unlabelled[:10])) + (" ..." if len(unlabelled) > 10 else "")
        warnings.warn(f"{root / captions}: {len(unlabelled)} of {len(rows)} rows have no labels (lines {shown}); "
                      "they count as relevant to nothing when retrieval is scored", stacklevel=2)
    names = sorted({x for r in rows for x in (r[2] or [])})
    labels = np.zeros((len(rows), max(1, len(names))), np.uint8)
    for i, r in enumerate(rows):
        for x in r[2] or []:
            labels[i, names.index(x)] = 1
    n = len(rows)
    n_query = n_query if n_query is not None else max(1, min(2000, n // 10))
    n_train = n_train if n_train is not None else min(10000, n - n_query)
    split = make_split(labels, "dcmh", n_query=n_query, n_train=n_train, seed=seed)
    caps = [r[1] for r in rows]
    data = PairedData(FolderImages(paths, image_size, real_root), None, labels, name=f"folder:{root.name}", image_kind="pixels",
                      label_names=names or None, captions=caps, names=[r[0] for r in rows],
                      info={"files": [str(root / captions)], "has_labels": has_labels,
                            "unlabelled_rows": len(unlabelled) if has_labels else len(rows),
                            "empty_captions": sum(not c for c in caps)})
    if has_labels and not unlabelled:
        data = validate_paired(data, str(root / captions))
    split.protocol = "fixed"
    return LoadedDataset(data, "fixed", {}, fixed_split=split, text_encoder="auto")


@register_dataset("synthetic", help="embedded demo set: rendered multi-label images + noisy tag bags (no download)")
def load_synthetic(root=None, n_items: int = 3000, image_size: int = 96, seed: int = 0, **_):
    from .synthetic import make_synthetic

    data = make_synthetic(n_items=n_items, image_size=image_size, seed=seed)
    n_query = max(1, n_items // 10)
    n_train = min(n_items // 2, n_items - n_query)
    return LoadedDataset(data, "djsrh", {"n_query": n_query, "n_train": n_train, "first_factor": 1})
