"""Bag-of-words text encoders on scikit-learn's ``CountVectorizer``: any language.

The community's MIRFlickr texts are 1,386-d binary tag vectors (tags used at least 20 times); the
same kind of vector is built here from users' captions, over the ``max_features`` most frequent
tokens seen in at least ``min_count`` training captions. Tokens:

- ``words``: Unicode word tokens (``\\w+``, inner hyphens and apostrophes kept), NFKC-normalised
  and case-folded, so accented Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari ... all count;
- ``chars``: inside runs of a script written without spaces (Han, Hiragana, Katakana, Hangul,
  Thai, Lao, Khmer, Myanmar, Tibetan) character 1- and 2-grams, word tokens elsewhere (a Chinese
  caption with a Latin brand name keeps the name);
- ``auto`` picks ``chars`` when at least ``AUTO_CHARS_SHARE`` (10 %) of the letters of the training
  captions are in such scripts, else ``words``; the choice is saved with the model.

Word segmentation for Chinese (jieba) was not kept: character 1- and 2-grams need no dictionary
and cover the segmenter's words (see docs/text.md).
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from ..utils import CmhashError
from ..registry import register_text_encoder
from .base import TextEncoder

AUTO_CHARS_SHARE = 0.10

_WORD = re.compile(r"\w+(?:['’-]\w+)*")
_ASCII = re.compile(r"[a-z0-9][a-z0-9_'-]*")  # models saved before Unicode tokens (the "bow" text kind)
_UNSPACED = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),  # Han
             (0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F),  # Hiragana, Katakana (+ half-width)
             (0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF),  # Hangul
             (0x0E00, 0x0EFF), (0x1780, 0x17FF), (0x1000, 0x109F), (0x0F00, 0x0FFF)]  # Thai, Lao, Khmer, Myanmar, Tibetan


def is_unspaced(ch: str) -> bool:
    """Whether ``ch`` belongs to a script written without spaces between words."""
    o = ord(ch)
    return any(a <= o <= b for a, b in _UNSPACED)


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text if isinstance(text, str) else "").casefold()


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def char_tokens(text: str) -> list[str]:
    """Word tokens, with every run of unspaced-script letters replaced by its 1- and 2-grams."""
    out: list[str] = []
    for tok in word_tokens(text):
        if not any(is_unspaced(c) for c in tok):
            out.append(tok)
            continue
        for unspaced, run in _runs(tok):
            if not unspaced:
                out.append(run)
                continue
            out.extend(run)
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out


def _runs(tok: str):
    """Split ``tok`` into maximal runs of unspaced-script / other characters."""
    start = 0
    for i in range(1, len(tok) + 1):
        if i == len(tok) or is_unspaced(tok[i]) != is_unspaced(tok[start]):
            yield is_unspaced(tok[start]), tok[start:i]
            start = i


ANALYZERS = {"words": word_tokens, "chars": char_tokens, "ascii": lambda t: _ASCII.findall(t.lower() if isinstance(t, str) else "")}


def unspaced_share(captions: list[str]) -> float:
    """Share of the letters of ``captions`` that are in scripts written without spaces."""
    letters = unspaced = 0
    for t in captions:
        for c in normalize(t):
            if c.isalpha():
                letters += 1
                unspaced += is_unspaced(c)
    return unspaced / letters if letters else 0.0


def pick_analyzer(captions: list[str]) -> str:
    """The ``auto`` rule: ``chars`` when at least 10 % of the letters are in unspaced scripts."""
    return "chars" if unspaced_share(captions) >= AUTO_CHARS_SHARE else "words"


class BagOfWords(TextEncoder):
    """Binary bag of tokens over a vocabulary fitted on the training captions."""

    analyzer: str = "words"

    def __init__(self, max_features: int = 2000, min_count: int = 2, analyzer: str | None = None):
        self.max_features, self.min_count = int(max_features), int(min_count)
        if analyzer is not None:
            self.analyzer = analyzer
        self.vocab: list[str] = []
        self._index: dict[str, int] = {}
        self._vec = None

    def _check_analyzer(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise CmhashError(f"unknown tokenizer {self.analyzer!r} for text encoder {self.name!r}; known: "
                            f"{', '.join(ANALYZERS)}")

    def fit(self, captions: list[str]) -> "BagOfWords":
        from sklearn.feature_extraction.text import CountVectorizer

        self._check_analyzer()
        vec = CountVectorizer(analyzer=ANALYZERS[self.analyzer], binary=True, dtype=np.float32,
                              min_df=min(self.min_count, max(1, len(captions))), max_features=self.max_features)
        try:
            vec.fit(captions)
        except ValueError:  # "empty vocabulary" / "After pruning, no terms remain"
            tokens = sum(len(self.tokens(c)) for c in captions[:10_000] if isinstance(c, str))
            why = ("the captions hold no word tokens at all: emoji, symbols and punctuation are not tokens and are "
                   "dropped" if tokens == 0 else f"no token occurs in {self.min_count} or more of them")
            raise CmhashError(f"text encoder {self.describe()} found no vocabulary in the {len(captions)} training "
                              f"captions: {why}; try another --text-encoder or a lower min_count "
                              "(--set data.text_options.min_count=1)") from None
        vocab = [None] * len(vec.vocabulary_)
        for w, i in vec.vocabulary_.items():
            vocab[i] = w
        return self._set(vocab)

    def _set(self, vocab: list[str]) -> "BagOfWords":
        self._check_analyzer()
        self.vocab = list(vocab)
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self._vec = ANALYZERS[self.analyzer]
        return self

    @property
    def dim(self) -> int:
        return len(self.vocab)

    def describe(self) -> str:
        return self.name if self.name == self.analyzer else f"{self.name} ({self.analyzer})"

    def transform(self, captions: list[str]) -> np.ndarray:
        """(N, V) float32: 1 where a token of the caption is in the vocabulary (scikit-learn's binary
        ``CountVectorizer`` with this analyzer, written out: a query loads no scikit-learn)."""
        if self._vec is None:
            raise CmhashError(f"text encoder {self.name!r} used before it was fitted")
        out = np.zeros((len(captions), len(self.vocab)), np.float32)
        for i, c in enumerate(captions):
            if isinstance(c, str):
                cols = [j for j in map(self._index.get, self._vec(c)) if j is not None]
                out[i, cols] = 1.0
        return out  # (N, V)

    def tokens(self, text: str) -> list[str]:
        return ANALYZERS[self.analyzer](text)

    def explain(self, text: str) -> dict:
        index = self._index if self._vec is not None else {}
        toks = list(dict.fromkeys(self.tokens(text)))
        return {"used": [t for t in toks if t in index], "unknown": [t for t in toks if t not in index]}

    def state(self) -> dict:
        return {"analyzer": self.analyzer, "vocab": self.vocab}

    def load_state(self, state: dict) -> "BagOfWords":
        self.analyzer = state.get("analyzer", self.analyzer)
        return self._set(state.get("vocab") or [])


@register_text_encoder("words")
class Words(BagOfWords):
    """bag of Unicode word tokens (languages written with spaces), fitted on the training captions"""

    analyzer = "words"


@register_text_encoder("chars")
class Chars(BagOfWords):
    """bag of character 1-2-grams for scripts without spaces (zh, ja, ko, th ...), words elsewhere"""

    analyzer = "chars"


@register_text_encoder("auto")
class Auto(BagOfWords):
    """words or chars, picked from the training captions' scripts (>= 10 % unspaced letters: chars)"""

    analyzer = "words"

    def fit(self, captions: list[str]) -> "Auto":
        self.analyzer = pick_analyzer(captions)
        return super().fit(captions)
