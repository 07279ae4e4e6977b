"""A trained model as an encoder of collections and queries: image files, pixels, features, free text.

``Encoder.load(run_or_checkpoint, bits=64)`` wraps ``model.load_model`` (the best-validation
weights, the frozen backbone for pixel datasets, the vocabulary, all from the checkpoint) with what
queries and collections need: input checks with clear errors and image files. ``HashModel``'s
``encode_image`` / ``encode_text`` give the nets' real outputs; every ``*_codes`` method here gives
int8 {-1, +1} codes (the sign convention of ``cmhash.codes``), which ``pack_codes`` packs.

A collection is written into a codes folder by ``codes_folder.write_collection(encoder, data, out)``
(the format, its reader and writer); the encoder knows nothing of that format.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .codes import sign_codes
from .data.images import MAX_PIXELS, read_image
from .model import HashModel, load_model
from .text.base import explain_query
from .utils import CmhashError



class Encoder:
    """A ``HashModel`` (``self.model``) with input checks, image files and collections."""

    def __init__(self, model: HashModel):
        self.model = model

    @classmethod
    def load(cls, path, bits: int | None = None, device: str = "auto") -> "Encoder":
        return cls(load_model(path, bits, device))

    # what the model is, read from it (not copied)
    cfg = property(lambda self: self.model.cfg)
    spec = property(lambda self: self.model.spec)
    method = property(lambda self: self.model.method)
    bits = property(lambda self: self.model.bits)
    fingerprint = property(lambda self: self.model.fingerprint)
    text_encoder = property(lambda self: self.model.text_encoder)  # None: the model reads given text vectors only

    @property
    def vocab(self) -> list[str] | None:
        """A bag-of-words text encoder's vocabulary (None otherwise)."""
        return self.spec.text.vocab

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
    def image_codes(self, x) -> np.ndarray:
        """Model image inputs (features, maps or pixels as a tensor/array) -> int8 {-1,+1} (B, K)."""
        if not torch.is_tensor(x):
            x = np.asarray(x)
            if self.spec.image.mode == "features":
                x = _check_features(x, self.spec.image.dim, "image features")
            x = torch.from_numpy(x)
        return sign_codes(self.model.encode_image(x))

    def pixel_codes(self, x: np.ndarray) -> np.ndarray:
        """uint8 pixels (B, 3, H, W) -> int8 {-1,+1} (B, K)."""
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise CmhashError(f"pixels must be uint8 (B, 3, H, W), got {x.dtype} {x.shape}")
        return self.image_codes(self.model.image_inputs(x))

    def image_file_codes(self, sources, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
        """Image files (paths or bytes) -> int8 {-1,+1} (B, K); an image of more than ``max_pixels``
        pixels is refused before it is decoded."""
        if not self.accepts_pixels:
            raise CmhashError(f"this {self.method} model was trained on {self.spec.image.dim}-d image features "
                              f"({self.cfg.data.dataset}), not on pixels: it cannot encode an image file")
        return self.pixel_codes(np.stack([read_image(s, self.image_size, max_pixels) for s in sources]))

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
        if self.text_encoder is None:
            self.model.text_inputs([text])  # raises: this model reads text vectors only
        return explain_query(self.text_encoder, text, strict)

    def query_code(self, text: str) -> tuple[np.ndarray, dict]:
        """One free-text query -> (int8 {-1,+1} (1, K) code, ``explain``'s words); no known word is an
        error."""
        words = self.explain(text, strict=True)
        return self.text_vector_codes(self.model.text_inputs([text])), words

    @torch.inference_mode()
    def text_vector_codes(self, t) -> np.ndarray:
        """Text vectors (B, dim) -> int8 {-1,+1} (B, K)."""
        t = _check_features(np.asarray(t), self.spec.text.dim, "text vectors")
        return sign_codes(self.model.encode_text(t))

    def text_codes(self, texts: list[str]) -> np.ndarray:
        """Free texts -> int8 {-1,+1} (B, K); each must hold a word the model knows."""
        return self.text_vector_codes(self.text_vectors(list(texts)))

    # --- collections ---------------------------------------------------------------------------
    def load_collection(self, dataset: str | None = None, root=None, options: dict | None = None):
        """A collection to encode: ``dataset`` (default the model's training dataset, from its own
        folder and loader options unless ``root`` is given) with ``options`` for its loader."""
        from .data import load_dataset

        dc = self.cfg.data
        name = dataset or dc.dataset
        opts = dict(dc.options) if name == dc.dataset and not root else {}
        opts.update(options or {})
        return load_dataset(name, root or (dc.root if name == dc.dataset else None), **opts).data

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

    def cached_features(self, data):
        """The training feature cache for ``data`` when it matches this model's input, else None: in
        the cache folder the model was trained with (``backbone.cache_dir``) when it is on this
        machine, else this machine's (``env.cache_dir``)."""
        if not self.spec.image.frozen_backbone:
            return None
        from .data.features import feature_cache_paths
        from .env import cache_dir

        trained = self.cfg.backbone.cache_dir
        folder = trained if trained and Path(trained).is_dir() else cache_dir()
        feat_p, map_p = feature_cache_paths(self.model.backbone, self.spec.image.backbone, data, folder)
        p = map_p if self.spec.image.mode == "maps" else feat_p
        if not p.exists():
            return None
        try:
            arr = np.load(p, mmap_mode="r")
        except (OSError, ValueError):
            return None
        return arr if len(arr) == len(data) else None



def _check_features(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise CmhashError(f"{what} must be (n, {dim}), got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise CmhashError(f"{what} contain NaN or inf")
    return x
