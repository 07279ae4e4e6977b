"""Frozen backbone features, computed once and cached on disk keyed by backbone and data."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import DataError, PairedData
from ..models.backbones import Backbone
from ..utils import atomic_path, npy_for_writing, usable_dir


WHOLE_FILE_BYTES = 1 << 20  # files up to this size are hashed whole; larger ones by their head and tail
HEAD_TAIL_BYTES = 256 << 10


@functools.lru_cache(maxsize=1 << 16)
def _content_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, ino: int) -> bytes:
    """A digest of a file's bytes (keyed by its stat, so each file is read once per process; the
    change time is in the key because no tool can keep it): the whole file up to
    ``WHOLE_FILE_BYTES``, else its first and last ``HEAD_TAIL_BYTES``."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(HEAD_TAIL_BYTES))
            f.seek(-HEAD_TAIL_BYTES, os.SEEK_END)
            h.update(f.read(HEAD_TAIL_BYTES))
    return h.digest()


def data_fingerprint(data: PairedData) -> str:
    """Hash of the dataset's identity, the key of its feature cache. Image files (a folder dataset):
    every file's path, size and a digest of its bytes (``_content_digest``: whole up to 1 MB, else
    its first and last 256 KB), so a replaced photo is extracted again even when the tool that
    replaced it kept its size and modification time (a restore from a backup, ``touch -r``);
    measured on UCM-captions (2,100 photos, 46 MB): 0.14 s with the files in the page cache, 0.69 s
    on a first read, against a 78 s feature pass (0.2-0.9%;
    ``benchmarks/bench_service.py --sections key``). Arrays: name, shape, generator info, the size
    and modification time of the files they come from, and a strided sample of 64 rows."""
    h = hashlib.sha1()
    h.update(json.dumps({"name": data.name, "shape": list(data.images.shape),
                         "info": {k: v for k, v in data.info.items() if k in ("generator", "seed", "n_items",
                                                                              "image_size", "files")}},
                        sort_keys=True, default=str).encode())
    paths = getattr(data.images, "paths", None)
    if paths is not None:
        for p in paths:
            try:
                st = os.stat(p)
                digest = _content_digest(str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            except OSError as e:
                raise DataError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
            h.update(f"{p}\0{st.st_size}\0".encode("utf-8", "surrogateescape") + digest + b"\n")
        return h.hexdigest()[:16]
    for f in data.info.get("files") or []:
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            pass
    n = len(data)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
    h.update(np.ascontiguousarray(data.image_rows(rows)).tobytes())
    return h.hexdigest()[:16]


class _Batches(torch.utils.data.Dataset):
    """Batch i of ``rows`` as uint8 images, read in a worker process (HDF5 handles and image
    decoding stay in the workers); a read error is returned, and raised by the main process."""

    def __init__(self, data: PairedData, rows: np.ndarray, batch_size: int):
        self.data, self.rows, self.bs = data, rows, batch_size

    def __len__(self) -> int:
        return (len(self.rows) + self.bs - 1) // self.bs

    def __getitem__(self, i):
        try:
            return torch.from_numpy(np.ascontiguousarray(self.data.image_rows(self.rows[i * self.bs:(i + 1) * self.bs])))
        except Exception as e:  # noqa: BLE001 - handed to the main process
            return e


def image_batches(data: PairedData, rows: np.ndarray, batch_size: int, workers: int = 0, device="cpu"):
    """Yield (start, uint8 (b, 3, H, W)) over ``rows`` in order; with ``workers`` > 0, reading and
    decoding run in that many processes, at most 2 batches ahead each (memory stays bounded), and
    torch's threads on ``device`` make room for them when the pass waits on them (``paced``)."""
    ds = _Batches(data, np.asarray(rows, np.int64), batch_size)
    if workers <= 0 or len(ds) <= 1:
        it = (ds[i] for i in range(len(ds)))
    else:
        close = getattr(getattr(data, "images", None), "close", None)
        if close is not None:
            close()  # no HDF5 state shared across fork: every worker opens the file itself
        it = paced(iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=2)),
                   workers, device)
    try:
        for i, x in enumerate(it):
            if isinstance(x, BaseException):
                raise x
            yield i * batch_size, x
    finally:
        it.close()  # a pass stopped early gives torch its threads back now


def paced(batches, workers: int, device="cpu", probe: int = 4):
    """Yield what ``batches`` (``image_batches``'s worker loader) yields, and give the decoding workers the cores
    they need: after ``probe`` batches, if this process spent more than half as long waiting for
    images as running the backbone on them (decode-bound: camera photos), torch's CPU threads drop
    to the cores the ``workers`` leave (at least 1) for the rest of the pass; otherwise (small
    files: backbone-bound) they stay. Restored when the pass ends or is closed.

    Measured (EfficientNet-Lite0, 2 cores, 2 workers): 12 MP JPEGs, 1 thread 22.1-22.5 images/s
    against 15.9-18.6 with 2 (decoders and backbone fought for the cores); 64 px JPEGs, a fixed 1
    thread was 0.93x of 2 (``benchmarks/bench_inputs.py --sections decode``)."""
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    low = max(1, cores - workers)
    if workers <= 0 or torch.device(device).type != "cpu" or low >= before:
        yield from batches
        return
    waited = used = 0.0
    try:
        t = time.perf_counter()
        for n, item in enumerate(batches):
            got = time.perf_counter()
            if n:  # the first batch also waits for the workers to start
                waited += got - t
            yield item
            t = time.perf_counter()
            if n:
                used += t - got
            if n == probe and waited > 0.5 * used:
                torch.set_num_threads(low)
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def compute_features(backbone: Backbone, data: PairedData, batch_size: int = 64, device="cpu",
                     desc: str = "features", maps_file: Path | None = None, out_file: Path | None = None,
                     workers: int = 0) -> np.ndarray:
    """(N, D) pooled features, batch by batch; with ``out_file`` they are written there as a float32
    ``.npy`` memmap (memory bounded whatever N), with ``maps_file`` the conv maps (N, C, h, w) as
    float16 in the same pass. ``workers`` processes read and decode the images."""
    backbone.eval().to(device)
    n = len(data)
    out = (npy_for_writing(out_file, np.float32, (n, backbone.out_dim), "feature cache")
           if out_file is not None else np.empty((n, backbone.out_dim), np.float32))
    maps_out = None
    bar = tqdm(total=n, desc=desc, unit="img", leave=False, mininterval=0.2 if sys.stderr.isatty() else 30.0)
    for s, x in image_batches(data, np.arange(n), batch_size, workers, device):
        fmap = backbone.frozen_map(x.to(device))  # (b, C, h, w)
        out[s:s + len(x)] = backbone.pool(fmap).float().cpu().numpy()
        if maps_file is not None:
            if maps_out is None:  # the map's shape is known from the first batch
                maps_out = npy_for_writing(maps_file, np.float16, (n, *fmap.shape[1:]), "feature-map cache")
            maps_out[s:s + len(x)] = fmap.cpu().numpy().astype(np.float16)
        bar.update(len(x))
    bar.close()
    if maps_out is not None:
        maps_out.flush()
        del maps_out
    if out_file is not None:
        out.flush()
    return out


def _load_cached(path: Path, shape: tuple, mmap: bool = False) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError):
        return None  # unreadable cache entry: recompute and overwrite
    if arr.shape[:len(shape)] != shape or (not mmap and not np.isfinite(arr).all()):
        return None
    return arr


def feature_cache_paths(backbone: Backbone, name: str, data: PairedData, cache_dir: str | Path) -> tuple[Path, Path]:
    """Where ``cached_features`` keeps the pooled features and the conv maps of ``data``."""
    key = f"{name}-{backbone.weights_id}-{backbone.input_size}px-{data_fingerprint(data)}"
    return Path(cache_dir) / f"{key}.npy", Path(cache_dir) / f"{key}-maps.npy"


def cached_features(backbone: Backbone, name: str, data: PairedData, cache_dir: str | Path,
                    batch_size: int = 64, device="cpu", with_maps: bool = False, workers: int = 0):
    """(N, D) float32 features of every image in ``data``, from ``cache_dir`` when present.

    With ``with_maps`` returns ``(features, maps)``: maps are the backbone's last conv maps
    (N, C, h, w), stored as float16 and opened memory-mapped (a 20k-image MIRFlickr at 224 px
    with EfficientNet-Lite0 is about 2.5 GB on disk, not in RAM).
    """
    path, map_path = feature_cache_paths(backbone, name, data, cache_dir)
    n = len(data)
    feats = _load_cached(path, (n, backbone.out_dim))
    maps = _load_cached(map_path, (n, backbone.map_channels), mmap=True) if with_maps else None
    if feats is not None and (maps is not None or not with_maps):
        return (feats, maps) if with_maps else feats
    usable_dir(path.parent, "feature cache folder (CMHASH_CACHE_DIR or backbone.cache_dir)")
    with atomic_path(path, "feature cache") as tmp_f:  # both written in chunks, moved into place only when complete
        if with_maps:
            with atomic_path(map_path, "feature-map cache") as tmp_m:
                compute_features(backbone, data, batch_size, device, desc=f"{name} features + maps",
                                 maps_file=tmp_m, out_file=tmp_f, workers=workers)
        else:
            compute_features(backbone, data, batch_size, device, desc=f"{name} features", out_file=tmp_f,
                             workers=workers)
    feats = np.load(path)
    if with_maps:
        return feats, np.load(map_path, mmap_mode="r")
    return feats


def cached_text_features(encoder, captions: list[str], cache_dir: str | Path) -> np.ndarray:
    """(N, dim) float32 outputs of a pretrained text encoder for ``captions``, cached in
    ``cache_dir`` by encoder and caption text (fitted encoders are cheap and not cached)."""
    if encoder.cache_id is None:
        return encoder.transform(captions)
    h = hashlib.sha1(encoder.cache_id.encode())
    for c in captions:
        h.update(c.encode("utf-8", "replace") + b"\0")
    path = Path(cache_dir) / f"text-{encoder.cache_id}-{h.hexdigest()[:16]}.npy"
    got = _load_cached(path, (len(captions), encoder.dim))
    if got is not None:
        return got
    usable_dir(path.parent, "feature cache folder (CMHASH_CACHE_DIR or backbone.cache_dir)")
    out = np.empty((len(captions), encoder.dim), np.float32)
    step = 1024
    bar = tqdm(total=len(captions), desc=f"{encoder.name} text features", unit="text", leave=False,
               mininterval=0.2 if sys.stderr.isatty() else 30.0)
    for s in range(0, len(captions), step):
        out[s:s + step] = encoder.transform(captions[s:s + step])
        bar.update(len(captions[s:s + step]))
    bar.close()
    with atomic_path(path, "text feature cache", need=out.nbytes) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    return out
