"""A trained model as an encoder of collections and queries: image files, pixels, features, free text.

``Encoder.load(run_or_checkpoint, bits=64)`` wraps ``model.load_model`` (the best-validation
weights, the frozen backbone for pixel datasets, the vocabulary, all from the checkpoint) with what
queries and collections need: input checks with clear errors, image files, and codes packed in
faiss's layout (sign convention: ``cmhash.codes.sign``).

``encode_collection`` streams a dataset through the model in batches into ``.npy`` memmaps, so
memory stays bounded whatever the collection size; it reuses the backbone feature cache written
by training when one matches the data, and computes features batch by batch otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .codes import sign_codes
from .data.formats import MAX_PIXELS, read_image
from .eval.hamming import pack_codes
from .model import HashModel, load_model
from .utils import CmhashError, write_json_atomic

CODES_FORMAT = "cmhash-codes-v2"


class Encoder:
    def __init__(self, model: HashModel):
        self.model, self.cfg, self.spec = model, model.cfg, model.spec
        self.device, self.method, self.bits = model.device, model.method, model.bits
        self.fingerprint, self.checkpoint = model.fingerprint, model.checkpoint
        self.text_encoder = model.text_encoder  # None: the model reads given text vectors only
        self.vocab = model.spec.text.vocab  # a bag-of-words encoder's vocabulary, else None
        self.image_mode = model.spec.image.mode

    @classmethod
    def load(cls, path, bits: int | None = None, device: str = "auto") -> "Encoder":
        return cls(load_model(path, bits, device))

    @property
    def accepts_pixels(self) -> bool:
        return self.spec.image.reads_pixels

    @property
    def image_size(self) -> int:
        return (self.spec.image.image_size or 224) if self.accepts_pixels else 0

    def info(self) -> dict:
        return self.model.info()

    # --- images --------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_image_input(self, x) -> np.ndarray:
        """Model image inputs (features, maps or pixels as a tensor/array) -> int8 {-1,+1} (B, K)."""
        if not torch.is_tensor(x):
            x = np.asarray(x)
            if self.image_mode == "features":
                x = _check_features(x, self.spec.image.dim, "image features")
            x = torch.from_numpy(x)
        return sign_codes(self.model.encode_image(x))

    def encode_pixels(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise CmhashError(f"pixels must be uint8 (B, 3, H, W), got {x.dtype} {x.shape}")
        return self.encode_image_input(self.model.image_inputs(x))

    def encode_image_files(self, sources, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
        """Image files (paths or bytes) -> int8 (B, K); an image of more than ``max_pixels`` pixels is
        refused before it is decoded."""
        if not self.accepts_pixels:
            raise CmhashError(f"this {self.method} model was trained on {self.spec.image.dim}-d image features "
                              f"({self.cfg.data.dataset}), not on pixels: it cannot encode an image file")
        return self.encode_pixels(np.stack([read_image(s, self.image_size, max_pixels) for s in sources]))

    # --- texts ---------------------------------------------------------------------------------
    def text_vectors(self, texts: list[str], strict: bool = True) -> np.ndarray:
        """Free texts -> the text net's inputs through the model's text encoder (B, dim). ``strict``:
        a text with no known word is an error naming the encoder (a query); otherwise it gets the
        encoder's vector as it is (a collection item, all-zero for a bag of words)."""
        if strict:
            for t in texts:
                self.explain(t, strict=True)
        return self.model.text_inputs(texts)  # (B, dim)

    def explain(self, text: str, strict: bool = False) -> dict:
        """{"encoder", "used", "unknown"}: which words of a free-text query the model's text encoder
        reads and which it does not know. ``strict``: no known word is an error that names the
        encoder and suggests another."""
        enc = self.text_encoder
        if enc is None:
            self.model.text_inputs([text])  # raises: this model reads text vectors only
        if not isinstance(text, str) or not text.strip():
            raise CmhashError("empty text: give at least one word")
        got = {"encoder": enc.describe(), **enc.explain(text)}
        if strict and not got["used"]:
            hint = ("a model trained with --text-encoder minilm reads any English words" if enc.name != "minilm"
                    else "a model trained with --text-encoder auto (or words, chars) reads the words of its own "
                         "captions, in any language")
            vocab = f" ({enc.dim} tokens, e.g. {', '.join(self.vocab[:8])})" if self.vocab else ""
            raise CmhashError(f"none of the words of {text[:80]!r} is known to this model's text encoder "
                              f"{enc.describe()}{vocab}; {hint}")
        return got

    def encode_query(self, text: str) -> tuple[np.ndarray, dict]:
        """One free-text query -> (int8 (1, K) code, ``explain``'s words); no known word is an error."""
        words = self.explain(text, strict=True)
        return self.encode_text_vectors(self.model.text_inputs([text])), words

    @torch.inference_mode()
    def encode_text_vectors(self, t) -> np.ndarray:
        t = _check_features(np.asarray(t), self.spec.text.dim, "text vectors")
        return sign_codes(self.model.encode_text(t))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.encode_text_vectors(self.text_vectors(list(texts)))

    # --- collections ---------------------------------------------------------------------------
    def encode_collection(self, data, out_dir, batch_size: int = 256, ids=None, rows=None,
                          cache_dir: str | None = None, progress: bool = True,
                          shard: tuple[int, int] | None = None) -> Path:
        """Encode every item (or ``rows``) of ``data`` into ``out_dir``: ``image.npy`` and ``text.npy``
        (packed uint8 memmaps), ``items.jsonl`` and, last, ``codes.json``. Pixel images held in memory
        are also written as PNG files under ``images/`` so that results can show them.

        Everything is written into a hidden work folder inside ``out_dir`` and moved into place only
        when the whole collection is encoded: a failure (a corrupt image, a kill) leaves no partial
        output, and a previous encoding in ``out_dir`` stays as it was until the new one is complete.

        ``shard=(rank, world)`` (``cmhash encode`` under torchrun): this process encodes the rank-th
        of ``world`` contiguous slices of the rows, cut at batch boundaries so every batch is the one a
        single process would encode, into ``out_dir/.shard-<rank>-of-<world>``; rank 0 waits for
        every shard, then joins them in rank order into the one codes folder a single process would
        have written (``out_dir`` must be a folder every rank can reach). Returns ``out_dir``."""
        from .distributed import barrier

        self.check_collection(data)
        out = Path(out_dir)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        rows = np.arange(len(data)) if rows is None else np.asarray(rows, np.int64)
        ids = rows.copy() if ids is None else np.asarray(ids, np.int64)
        if len(ids) != len(rows):
            raise CmhashError(f"{len(ids)} ids for {len(rows)} items")
        rank, world = shard or (0, 1)
        if world > 1:
            a, b = shard_bounds(len(rows), batch_size, rank, world)
            part = _empty_dir(out / f".shard-{rank:05d}-of-{world:05d}")
            self._encode_into(part, out, data, batch_size, ids[a:b], rows[a:b], cache_dir, progress and rank == 0)
            barrier()  # every shard written
            if rank == 0:
                work = _empty_dir(out / f".encoding-{os.getpid()}")
                _join_shards([out / f".shard-{r:05d}-of-{world:05d}" for r in range(world)], work, self.bits)
                self._swap_in(work, out)
            barrier()  # the joined folder is in place before any rank returns
            return out
        work = _empty_dir(out / f".encoding-{os.getpid()}")
        try:
            self._encode_into(work, out, data, batch_size, ids, rows, cache_dir, progress)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            if created and not any(out.iterdir()):
                out.rmdir()
            raise
        self._swap_in(work, out)
        return out

    @staticmethod
    def _swap_in(work: Path, out: Path) -> None:
        """Move a complete work folder's files into ``out``; ``codes.json`` last."""
        (out / "codes.json").unlink(missing_ok=True)  # incomplete while files are swapped
        for name in ("image.npy", "text.npy", "items.jsonl", "images"):
            dst = out / name
            if dst.is_dir():
                shutil.rmtree(dst)
            if (work / name).exists():
                os.replace(work / name, dst)
        meta = json.loads((work / "codes.json.pending").read_text())
        shutil.rmtree(work, ignore_errors=True)
        write_json_atomic(out / "codes.json", meta)

    def check_collection(self, data) -> None:
        """A clear error when ``data`` gives inputs this model cannot read (before anything is written)."""
        spec, name = self.spec, data.name
        if data.image_kind == "features":
            dim = int(np.shape(data.images)[1]) if np.ndim(data.images) == 2 else None
            if spec.image.reads_pixels:
                raise CmhashError(f"{name} gives {dim}-d image features, but this {self.method} model reads images "
                                  f"through {spec.image.backbone} (pixels): encode a collection of image files, or use "
                                  f"a model trained on {name}")
            if dim != spec.image.dim:
                raise CmhashError(f"{name} gives {dim}-d image features; this model was trained on {spec.image.dim}-d "
                                  f"ones ({self.cfg.data.dataset})")
        elif not spec.image.reads_pixels:
            raise CmhashError(f"{name} gives image files, but this {self.method} model was trained on "
                              f"{spec.image.dim}-d image features ({self.cfg.data.dataset}): it cannot encode pixels")
        if not (self.text_encoder is not None and data.captions is not None):
            if data.texts is None:
                raise CmhashError(f"{name} gives captions, but this model reads {spec.text.dim}-d text vectors only")
            if np.shape(data.texts)[1] != spec.text.dim:
                raise CmhashError(f"{name} gives {np.shape(data.texts)[1]}-d text vectors; this model reads "
                                  f"{spec.text.dim}-d ones ({self.cfg.data.dataset})")

    def _encode_into(self, out: Path, final: Path, data, batch_size, ids, rows, cache_dir, progress) -> int:
        """Write everything into ``out`` (the work folder); item sources name their place in ``final``."""
        n, nb = len(rows), self.bits // 8
        img_mm = np.lib.format.open_memmap(out / "image.npy", mode="w+", dtype=np.uint8, shape=(n, nb))
        txt_mm = np.lib.format.open_memmap(out / "text.npy", mode="w+", dtype=np.uint8, shape=(n, nb))
        feats = self._cached_features(data, cache_dir) if data.image_kind == "pixels" else None
        write_images = data.image_kind == "pixels" and not hasattr(data.images, "paths")
        if write_images:
            (out / "images").mkdir(exist_ok=True)
        names = data.label_names
        # item sources are relative to the collection's folder (codes.json "root"): an index serves
        # files from inside it only, and never shows a server path
        root = getattr(data.images, "root", None) if hasattr(data.images, "paths") else None
        if hasattr(data.images, "paths") and root is None:
            root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in data.images.paths]))
        elif write_images:
            root = final.resolve()
        captions_in = self.text_encoder is not None and data.captions is not None  # through the model's encoder
        pixels = None
        if data.image_kind == "pixels" and feats is None:  # read and decoded by worker processes
            from .data.features import image_batches

            pixels = image_batches(data, rows, batch_size, self.cfg.backbone.workers)
        bar = tqdm(total=n, desc="encode", unit="item", disable=not progress,
                   mininterval=0.2 if sys.stderr.isatty() else 30.0)
        with open(out / "items.jsonl", "w") as meta:
            for s in range(0, n, batch_size):
                r = rows[s:s + batch_size]
                pix = None
                if data.image_kind == "features":
                    ic = self.encode_image_input(np.asarray(data.images[r], np.float32))
                elif feats is not None:
                    ic = self.encode_image_input(np.asarray(feats[r], np.float32))
                else:
                    pix = next(pixels)[1].numpy()
                    ic = self.encode_pixels(pix)
                img_mm[s:s + len(r)] = pack_codes(ic)
                if captions_in:  # captions through the model's own text encoder, as in training
                    tv = self.text_vectors([data.captions[i] for i in r], strict=False)
                else:
                    tv = np.asarray(data.texts[r], np.float32)
                txt_mm[s:s + len(r)] = pack_codes(self.encode_text_vectors(tv))
                if write_images and pix is None:
                    pix = data.image_rows(r)
                bar.update(len(r))
                for j, row in enumerate(r):
                    item = {"id": int(ids[s + j])}
                    if hasattr(data.images, "paths"):
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
        write_json_atomic(out / "codes.json.pending", {
            "format": CODES_FORMAT, "bits": self.bits, "n": n, "model": self.info(),
            "spec": self.spec.to_dict(), "root": str(root) if root is not None else None,
            "label_names": names, "dataset": data.name})
        return n

    def _cached_features(self, data, cache_dir):
        """The training feature cache for ``data`` when it matches this model's input, else None."""
        if self.image_mode not in ("pooled", "maps"):
            return None
        from .data.features import feature_cache_paths

        feat_p, map_p = feature_cache_paths(self.model.backbone, self.spec.image.backbone, data,
                                            cache_dir or self.cfg.backbone.cache_dir)
        p = map_p if self.image_mode == "maps" else feat_p
        if not p.exists():
            return None
        try:
            arr = np.load(p, mmap_mode="r")
        except (OSError, ValueError):
            return None
        return arr if len(arr) == len(data) else None


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
        mm = np.lib.format.open_memmap(work / name, mode="w+", dtype=np.uint8, shape=(n, nb))
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
    write_json_atomic(work / "codes.json.pending", dict(metas[0], n=n))
    for p in parts:
        shutil.rmtree(p, ignore_errors=True)


def _write_png(chw: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(path, format="PNG")


def _check_features(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise CmhashError(f"{what} must be (n, {dim}), got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise CmhashError(f"{what} contain NaN or inf")
    return x


def read_codes(path, items: bool = True) -> dict:
    """A folder written by ``encode_collection``: manifest, packed codes (memory-mapped), items.

    ``items=False`` (the index writers): the item records are checked now, line by line, but not
    kept; the result holds their ids (an array, 8 bytes an item) and ``chunks(size)``, which reads
    them again in lists of ``size`` records, so a folder of millions of items is added in bounded
    memory."""
    p = Path(path)
    m = p / "codes.json"
    if not m.is_file():
        raise CmhashError(f"{p}: no codes.json: not an encoded collection, or its encoding did not finish "
                          "(run `cmhash encode` again)")
    try:
        meta = json.loads(m.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CmhashError(f"{m}: damaged (not JSON)") from None
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
