"""Frozen backbone features, computed once and cached on disk keyed by backbone and data."""
from __future__ import annotations

import hashlib
import sys
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import PairedData
from ..models import Backbone
from ..utils import atomic_path


def data_fingerprint(data: PairedData) -> str:
    """Hash of the dataset's identity: name, shape, generator info and a strided sample of rows."""
    h = hashlib.sha1()
    h.update(json.dumps({"name": data.name, "shape": list(data.images.shape),
                         "info": {k: v for k, v in data.info.items() if k in ("generator", "seed", "n_items",
                                                                              "image_size", "files")}},
                        sort_keys=True, default=str).encode())
    n = len(data)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
    h.update(np.ascontiguousarray(data.image_rows(rows)).tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def compute_features(backbone: Backbone, data: PairedData, batch_size: int = 64, device="cpu",
                     desc: str = "features", maps_file: Path | None = None) -> np.ndarray:
    """(N, D) pooled features; with ``maps_file`` the conv maps (N, C, h, w) are also written
    there as a float16 ``.npy`` memmap in the same pass, batch by batch (memory stays bounded)."""
    backbone.eval().to(device)
    n = len(data)
    out = np.empty((n, backbone.out_dim), np.float32)
    maps_out = None
    for s in tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False,
                  mininterval=0.2 if sys.stderr.isatty() else 30.0):
        x = torch.from_numpy(data.image_rows(np.arange(s, min(n, s + batch_size)))).to(device)
        fmap = backbone.feature_map(backbone.preprocess(x))  # (b, C, h, w)
        out[s:s + len(x)] = backbone.pool(fmap).float().cpu().numpy()
        if maps_file is not None:
            if maps_out is None:  # the map's shape is known from the first batch
                maps_out = np.lib.format.open_memmap(maps_file, mode="w+", dtype=np.float16,
                                                     shape=(n, *fmap.shape[1:]))
            maps_out[s:s + len(x)] = fmap.cpu().numpy().astype(np.float16)
    if maps_out is not None:
        maps_out.flush()
        del maps_out
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
                    batch_size: int = 64, device="cpu", with_maps: bool = False):
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
    path.parent.mkdir(parents=True, exist_ok=True)
    if with_maps:
        with atomic_path(map_path) as tmp:
            feats = compute_features(backbone, data, batch_size, device, desc=f"{name} features + maps",
                                     maps_file=tmp)
    else:
        feats = compute_features(backbone, data, batch_size, device, desc=f"{name} features")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    if with_maps:
        return feats, np.load(map_path, mmap_mode="r")
    return feats
