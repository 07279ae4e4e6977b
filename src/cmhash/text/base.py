"""The text-encoder interface and the lazily encoded caption column."""
from __future__ import annotations

import numpy as np

from ..utils import CmhashError


class TextEncoder:
    """Captions -> (N, dim) float32 vectors. A fitted encoder (a vocabulary) is fitted on the
    training captions only; a pretrained one has nothing to fit. ``state()`` is what a model saves."""

    name: str = ""
    pretrained: bool = False  # frozen weights from an installed package (nothing fitted on the data)
    language: str = "any"  # what the encoder understands, for messages

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def to(self, device) -> "TextEncoder":
        """Run on ``device`` (an encoder with weights); a bag of words has nothing to move."""
        return self

    def fit(self, captions: list[str]) -> "TextEncoder":
        return self

    def transform(self, captions: list[str]) -> np.ndarray:
        raise NotImplementedError

    def explain(self, text: str) -> dict:
        """{"used": [...], "unknown": [...]}: the words (tokens) of ``text`` the encoder reads, and
        the ones it does not know."""
        raise NotImplementedError

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> "TextEncoder":
        return self

    @property
    def cache_id(self) -> str | None:
        """A key for caching this encoder's outputs on disk (pretrained encoders), else None."""
        return None


def create_text_encoder(name: str, **options) -> TextEncoder:
    """A registered text encoder by name (unfitted)."""
    from ..registry import TEXT_ENCODERS

    return TEXT_ENCODERS.get(name)(**options)


def text_encoder_from_spec(text_spec) -> TextEncoder | None:
    """The encoder a model was trained with, from its ``TextSpec`` (None: it reads given vectors)."""
    if text_spec.kind != "encoder":
        return None
    enc = create_text_encoder(text_spec.encoder).load_state(text_spec.state or {})
    if enc.dim != text_spec.dim:
        raise CmhashError(f"text encoder {text_spec.encoder!r} gives {enc.dim}-d vectors, the model reads "
                          f"{text_spec.dim}-d ones")
    return enc


class EncodedTexts:
    """A caption column through an encoder, as an (N, dim) float32 array computed on demand:
    ``texts[idx]`` encodes those rows only, ``np.asarray(texts)`` all of them. A folder of 100,000
    captions over a 2,000-word vocabulary would take 800 MB as a dense matrix; encoding a
    collection reads it batch by batch instead."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, encoder: TextEncoder, captions: list[str]):
        self.encoder, self.captions = encoder, captions
        self.shape = (len(captions), encoder.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.encoder.transform([self.captions[int(idx)]])[0]
        rows = np.arange(self.shape[0])[idx]
        return self.encoder.transform([self.captions[i] for i in np.atleast_1d(rows)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.encoder.transform(self.captions)
        return out if dtype is None else out.astype(dtype, copy=False)
