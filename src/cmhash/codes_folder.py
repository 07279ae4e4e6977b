"""The codes folder: what ``cmhash encode`` writes and what every index reads.

Layout (format ``cmhash-codes-v2``)::

    image.npy      (n, K/8) uint8 packed image codes (``cmhash.codes`` layout)
    text.npy       (n, K/8) uint8 packed text codes
    items.jsonl    one record per row: id, source (relative to ``root``), caption, labels
    images/        PNG files of pixel images held in memory (the embedded dataset), if any
    codes.json     the manifest, written last: format, bits, n, model, spec, root, label names

``write_collection`` streams a collection through an encoder (``cmhash.encoder.Encoder``) batch by
batch into memory-mapped files, in a hidden work folder that replaces the folder's contents only
when complete; ``read_codes`` checks a folder (every record) and opens its codes memory-mapped.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .codes import pack_codes
from .utils import CmhashError, disk_errors, npy_for_writing, read_json, usable_dir, write_json_atomic

CODES_FORMAT = "cmhash-codes-v2"
FILES = ("image.npy", "text.npy", "items.jsonl", "images")


def refuse_existing(out: Path, overwrite: bool) -> None:
    """A folder that already holds codes (or other files) is replaced only when asked."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CmhashError(f"{out}: not a folder")
    ours = [n for n in ("codes.json", *FILES) if (out / n).exists()]
    others = [p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in FILES + ("codes.json",)]
    if ours and not overwrite:
        raise CmhashError(f"{out} already holds encoded codes ({', '.join(ours)}): --overwrite replaces them, or "
                          "pick another --out")
    if others:
        raise CmhashError(f"{out} holds other files ({', '.join(sorted(others)[:3])} ...): give an empty or new folder")


def write_collection(encoder, data, out_dir, batch_size: int = 256, ids=None, rows=None, progress: bool = True,
                     *, shard: tuple[int, int] | None = None, overwrite: bool = False) -> Path:
    """Encode every item (or ``rows``) of ``data`` with ``encoder`` into the codes folder ``out_dir``.

    Everything is written into a hidden work folder inside ``out_dir`` and moved into place only
    when the whole collection is encoded: a failure (a corrupt image, a kill) leaves no partial
    output, and a previous encoding stays as it was until the new one is complete. A folder that
    already holds codes is refused unless ``overwrite``.

    ``shard=(rank, world)`` (``cmhash encode`` under torchrun): this process encodes the rank-th
    of ``world`` contiguous slices of the rows, cut at batch boundaries so every batch is the one a
    single process would encode, into ``out_dir/.shard-<rank>-of-<world>``; rank 0 waits for
    every shard, then joins them in rank order into the one codes folder a single process would
    have written (``out_dir`` must be a folder every rank can reach). Returns ``out_dir``."""
    from .distributed import barrier

    encoder.check_collection(data)
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, np.int64)
    ids = rows.copy() if ids is None else np.asarray(ids, np.int64)
    if len(ids) != len(rows):
        raise CmhashError(f"{len(ids)} ids for {len(rows)} items")
    out = Path(out_dir)
    refuse_existing(out, overwrite)
    created = not out.exists()
    usable_dir(out, "codes folder")
    rank, world = shard or (0, 1)
    if world > 1:
        a, b = shard_bounds(len(rows), batch_size, rank, world)
        part = _empty_dir(out / f".shard-{rank:05d}-of-{world:05d}")
        _encode_into(encoder, part, out, data, batch_size, ids[a:b], rows[a:b], progress and rank == 0)
        barrier()  # every shard written
        if rank == 0:
            work = _empty_dir(out / f".encoding-{os.getpid()}")
            _join_shards([out / f".shard-{r:05d}-of-{world:05d}" for r in range(world)], work, encoder.bits)
            _swap_in(work, out)
        barrier()  # the joined folder is in place before any rank returns
        return out
    work = out / f".encoding-{os.getpid()}"
    try:
        with disk_errors(out, "codes folder", need=2 * len(rows) * encoder.bits // 8):
            _encode_into(encoder, _empty_dir(work), out, data, batch_size, ids, rows, progress)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    with disk_errors(out, "codes folder"):
        _swap_in(work, out)
    return out


def _swap_in(work: Path, out: Path) -> None:
    """Move a complete work folder's files into ``out``; ``codes.json`` last."""
    (out / "codes.json").unlink(missing_ok=True)  # incomplete while files are swapped
    for name in FILES:
        dst = out / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if (work / name).exists():
            os.replace(work / name, dst)
    meta = json.loads((work / "codes.json.pending").read_text())
    shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(out / "codes.json", meta)


def _encode_into(encoder, out: Path, final: Path, data, batch_size, ids, rows, progress) -> int:
    """Write everything into ``out`` (the work folder); item sources name their place in ``final``."""
    n, nb = len(rows), encoder.bits // 8
    img_mm = npy_for_writing(out / "image.npy", np.uint8, (n, nb), "codes folder")
    txt_mm = npy_for_writing(out / "text.npy", np.uint8, (n, nb), "codes folder")
    feats = encoder.cached_features(data) if data.image_kind == "pixels" else None
    files = hasattr(data.images, "paths")
    write_images = data.image_kind == "pixels" and not files
    if write_images:
        (out / "images").mkdir(exist_ok=True)
    names = data.label_names
    # item sources are relative to the collection's folder (codes.json "root"): an index serves
    # files from inside it only, and never shows a server path
    root = getattr(data.images, "root", None) if files else None
    if files and root is None:
        root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in data.images.paths]))
    elif write_images:
        root = final.resolve()
    captions_in = encoder.text_encoder is not None and data.captions is not None  # through the model's encoder
    pixels = None
    if data.image_kind == "pixels" and feats is None:  # read and decoded by worker processes
        from .data.features import image_batches

        pixels = image_batches(data, rows, batch_size, encoder.cfg.backbone.workers, encoder.model.device)
    empty = 0  # captions with no token the model's text encoder knows
    bar = tqdm(total=n, desc="encode", unit="item", disable=not progress,
               mininterval=0.2 if sys.stderr.isatty() else 30.0)
    with contextlib.closing(pixels) if pixels is not None else contextlib.nullcontext(), \
            open(out / "items.jsonl", "w") as meta:
        for s in range(0, n, batch_size):
            r = rows[s:s + batch_size]
            pix = None
            if data.image_kind == "features":
                ic = encoder.image_codes(np.asarray(data.images[r], np.float32))
            elif feats is not None:
                ic = encoder.image_codes(np.asarray(feats[r], np.float32))
            else:
                pix = next(pixels)[1].numpy()
                ic = encoder.pixel_codes(pix)
            img_mm[s:s + len(r)] = pack_codes(ic)
            if captions_in:  # captions through the model's own text encoder, as in training
                tv = encoder.text_vectors([data.captions[i] for i in r], strict=False)
                empty += int((~tv.any(1)).sum())
            else:
                tv = np.asarray(data.texts[r], np.float32)
            txt_mm[s:s + len(r)] = pack_codes(encoder.text_vector_codes(tv))
            if write_images and pix is None:
                pix = data.image_rows(r)
            bar.update(len(r))
            for j, row in enumerate(r):
                item = {"id": int(ids[s + j])}
                if files:
                    item["source"] = Path(data.images.paths[row]).resolve().relative_to(root).as_posix()
                elif pix is not None:
                    name = f"{int(ids[s + j])}.png"
                    _write_png(pix[j], out / "images" / name)
                    item["source"] = f"images/{name}"
                if data.captions is not None:
                    item["caption"] = data.captions[row]
                if names is not None:
                    item["labels"] = [names[c] for c in np.flatnonzero(data.labels[row])]
                meta.write(json.dumps(item) + "\n")
    bar.close()
    img_mm.flush()
    txt_mm.flush()
    del img_mm, txt_mm
    if empty:
        enc = encoder.text_encoder
        warnings.warn(f"{data.name}: {empty} of {n} captions have no word the model's text encoder "
                      f"{enc.describe()} knows ({enc.dim} tokens, fitted on its training captions); their text codes "
                      "carry nothing and they cannot be found by text (a model trained on captions in their "
                      "language, or --text-encoder minilm for English, reads them)", stacklevel=2)
    write_json_atomic(out / "codes.json.pending", {
        "format": CODES_FORMAT, "bits": encoder.bits, "n": n, "model": encoder.info(),
        "spec": encoder.spec.to_dict(), "root": str(root) if root is not None else None,
        "label_names": names, "dataset": data.name, "empty_text_rows": empty})
    return n


def _empty_dir(path: Path) -> Path:
    """``path`` as a new, empty folder (what a killed run left there is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def shard_bounds(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [a, b) of the rank-th of ``world`` shards of n rows: whole batches, spread evenly."""
    batches = -(-n // batch_size)
    a, b = batches * rank // world, batches * (rank + 1) // world
    return min(n, a * batch_size), min(n, b * batch_size)


def _join_shards(parts: list[Path], work: Path, bits: int) -> None:
    """Concatenate shard folders (in order) into ``work``, as one encoding of all their rows."""
    metas = []
    for p in parts:
        if not (p / "codes.json.pending").is_file():
            raise CmhashError(f"{p}: shard incomplete (a rank failed?); run the encode again")
        metas.append(json.loads((p / "codes.json.pending").read_text()))
    n, nb = sum(m["n"] for m in metas), bits // 8
    for name in ("image.npy", "text.npy"):
        mm = npy_for_writing(work / name, np.uint8, (n, nb), "codes folder")
        at = 0
        for p, m in zip(parts, metas):
            mm[at:at + m["n"]] = np.load(p / name, mmap_mode="r")
            at += m["n"]
        mm.flush()
        del mm
    with open(work / "items.jsonl", "wb") as f:
        for p in parts:
            with open(p / "items.jsonl", "rb") as g:
                shutil.copyfileobj(g, f)
    for p in parts:
        if (p / "images").is_dir():
            (work / "images").mkdir(exist_ok=True)
            for img in (p / "images").iterdir():
                os.replace(img, work / "images" / img.name)
    write_json_atomic(work / "codes.json.pending", dict(metas[0], n=n,
                                                        empty_text_rows=sum(m.get("empty_text_rows", 0) for m in metas)))
    for p in parts:
        shutil.rmtree(p, ignore_errors=True)


def _write_png(chw: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(path, format="PNG")


def read_codes(path, items: bool = True) -> dict:
    """A folder written by ``write_collection``: manifest, packed codes (memory-mapped), items.

    ``items=False`` (the index writers): the item records are checked now, line by line, but not
    kept; the result holds their ids (an array, 8 bytes an item) and ``chunks(size)``, which reads
    them again in lists of ``size`` records, so a folder of millions of items is added in bounded
    memory."""
    p = Path(path)
    m = p / "codes.json"
    if not m.is_file():
        raise CmhashError(f"{p}: no codes.json: not an encoded collection, or its encoding did not finish "
                          "(run `cmhash encode` again)")
    meta = read_json(m, "manifest")
    if not isinstance(meta, dict) or meta.get("format") != CODES_FORMAT:
        raise CmhashError(f"{m}: unknown format {meta.get('format') if isinstance(meta, dict) else None!r}")
    for key, kind in (("n", int), ("bits", int), ("model", dict), ("spec", dict)):
        if not isinstance(meta.get(key), kind):
            raise CmhashError(f"{m}: damaged ({key!r} missing or not a{'n' if kind is int else ''} "
                              f"{kind.__name__})")
    try:
        img = np.load(p / "image.npy", mmap_mode="r")
        txt = np.load(p / "text.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise CmhashError(f"{p}: code files unreadable or truncated ({e})") from None
    want = (meta["n"], meta["bits"] // 8)
    if img.shape != want or txt.shape != want:
        raise CmhashError(f"{p}: code files have shapes {img.shape} / {txt.shape}, the manifest says {want}")
    legacy = "root" not in meta  # written before sources were relative: absolute paths
    ids, legacy_root = _check_items(p / "items.jsonl", meta["n"], legacy)
    if legacy:
        meta["root"] = legacy_root

    def chunks(size: int):
        batch = []
        for _, it in _records(p / "items.jsonl", legacy):
            src = it.get("source")
            if legacy and isinstance(src, str) and os.path.isabs(src):
                it["source"] = Path(src).relative_to(legacy_root).as_posix()
            batch.append(it)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    out = {"meta": meta, "image": img, "text": txt, "ids": ids, "chunks": chunks}
    if items:
        out["items"] = [it for part in chunks(1 << 16) for it in part]
    return out


def _records(path: Path, legacy: bool):
    """(line number, record) of ``items.jsonl``, each damage named by line (ids unchecked for repeats)."""
    try:
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                try:
                    it = json.loads(line)
                except ValueError:
                    raise CmhashError(f"{path}:{ln}: damaged record (not JSON{', cut short' if not line.endswith(chr(10)) else ''}); "
                                      "run `cmhash encode` again") from None
                if not isinstance(it, dict) or isinstance(it.get("id"), bool) or not isinstance(it.get("id"), int) \
                        or not 0 <= it["id"] < 2**63:
                    raise CmhashError(f"{path}:{ln}: a record needs an integer id >= 0, got {str(it)[:80]}")
                src = it.get("source")
                if src is not None and (not isinstance(src, str) or (Path(src).is_absolute() and not legacy)
                                        or ".." in Path(src).parts):
                    raise CmhashError(f"{path}:{ln}: source {src!r} must be a path inside the collection's folder")
                yield ln, it
    except UnicodeDecodeError as e:
        raise CmhashError(f"{path}: not UTF-8 (byte {e.start}); the file is damaged") from None


def _check_items(path: Path, n: int, legacy: bool = False) -> tuple[np.ndarray, str | None]:
    """Read ``items.jsonl`` once, checking every record: (the ids in order, the common folder of
    the absolute sources of a legacy folder)."""
    if not path.is_file():
        raise CmhashError(f"{path}: missing; the codes folder is incomplete (run `cmhash encode` again)")
    ids, root = [], None
    for _, it in _records(path, legacy):
        ids.append(it["id"])
        src = it.get("source")
        if legacy and isinstance(src, str) and os.path.isabs(src):
            d = os.path.dirname(src)
            root = d if root is None else os.path.commonpath([root, d])
    if len(ids) != n:
        raise CmhashError(f"{path}: {len(ids)} records, codes.json says {n} (truncated?)")
    ids = np.asarray(ids, np.int64)
    uniq, first = np.unique(ids, return_index=True)
    if len(uniq) < len(ids):  # name the first repeat by its line
        seen = np.zeros(len(ids), bool)
        seen[first] = True
        ln = int(np.flatnonzero(~seen)[0])
        raise CmhashError(f"{path}:{ln + 1}: id {int(ids[ln])} repeats")
    return ids, root
