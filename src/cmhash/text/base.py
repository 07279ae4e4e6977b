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


EXPLAIN_WORDS, EXPLAIN_WORD_CHARS = 20, 40  # what a query's explanation echoes: at most 20 words of 40 characters


def explain_query(enc: TextEncoder, text: str, strict: bool = False) -> dict:
    """{"encoder", "used", "unknown", "n_used", "n_unknown"}: which words of a free-text query
    ``enc`` reads and which it does not know (a long query is not echoed back whole). ``strict``:
    no known word is an error that names the encoder and suggests another. The one rule for
    ``Encoder.explain`` and the search path that loads no model (``search.text_query_code``)."""
    if not isinstance(text, str) or not text.strip():
        raise CmhashError("empty text: give at least one word")
    got = {"encoder": enc.describe(), **enc.explain(text)}
    for key in ("used", "unknown"):
        words = got[key]
        got[f"n_{key}"] = len(words)
        got[key] = [w[:EXPLAIN_WORD_CHARS] for w in words[:EXPLAIN_WORDS]]
    if strict and not got["used"]:
        hint = ("a model trained with --text-encoder minilm reads any English words" if enc.name != "minilm"
                else "a model trained with --text-encoder auto (or words, chars) reads the words of its own "
                     "captions, in any language")
        vocab = getattr(enc, "vocab", None)
        shown = f" ({enc.dim} tokens, e.g. {', '.join(vocab[:8])})" if vocab else ""
        raise CmhashError(f"none of the words of {text[:80]!r} is known to this model's text encoder "
                          f"{enc.describe()}{shown}; {hint}")
    return got
