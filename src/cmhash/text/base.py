"""The text-encoder interface, and building one by name or from a model's ``TextSpec``."""
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
