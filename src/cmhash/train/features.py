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
                     desc: str = "features") -> np.ndarray:
    backbone.eval().to(device)
    n = len(data)
    out = np.empty((n, backbone.out_dim), np.float32)
    for s in tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False,
                  mininterval=0.2 if sys.stderr.isatty() else 30.0):
        x = torch.from_numpy(data.image_rows(np.arange(s, min(n, s + batch_size)))).to(device)
        out[s:s + len(x)] = backbone(backbone.preprocess(x)).float().cpu().numpy()
    return out


def cached_features(backbone: Backbone, name: str, data: PairedData, cache_dir: str | Path,
                    batch_size: int = 64, device="cpu") -> np.ndarray:
    """(N, D) float32 features of every image in ``data``, from ``cache_dir`` when present."""
    key = f"{name}-{backbone.weights_id}-{backbone.input_size}px-{data_fingerprint(data)}"
    path = Path(cache_dir) / f"{key}.npy"
    if path.exists():
        try:
            feats = np.load(path)
            if feats.shape == (len(data), backbone.out_dim) and np.isfinite(feats).all():
                return feats
        except (OSError, ValueError):
            pass  # unreadable cache entry: recompute and overwrite
    feats = compute_features(backbone, data, batch_size, device, desc=f"{name} features")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    return feats
