"""Your own data: a folder with images and ``captions.tsv`` (``image<TAB>caption[<TAB>labels]``)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..registry import register_dataset
from .base import DataError, PairedData, data_root, validate_paired
from .images import FolderImages
from .protocol import LoadedDataset, make_split


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
    root = data_root(root, "folder")
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
