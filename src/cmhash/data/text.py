"""Bag-of-words for users' own captions/tags, fitted on the training split only."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .base import DataError

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_'-]*")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BowVectorizer:
    """Binary (or count) bag-of-words over the ``max_features`` most frequent training tokens.

    The community's MIRFlickr texts are 1,386-d binary tag vectors (tags used at least 20 times);
    ``min_count`` and ``max_features`` reproduce that kind of vocabulary on new data.
    """

    def __init__(self, max_features: int = 1386, min_count: int = 1, binary: bool = True):
        self.max_features, self.min_count, self.binary = max_features, min_count, binary
        self.vocab: list[str] = []
        self._index: dict[str, int] = {}

    def fit(self, texts: list[str]) -> "BowVectorizer":
        counts = Counter(tok for t in texts for tok in set(tokenize(t)))
        words = [w for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= self.min_count]
        self.vocab = words[: self.max_features]
        if not self.vocab:
            raise DataError("no tokens in the training captions: cannot build a vocabulary")
        self._index = {w: i for i, w in enumerate(self.vocab)}
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        if not self._index:
            raise DataError("BowVectorizer.transform called before fit")
        out = np.zeros((len(texts), len(self.vocab)), np.float32)
        for r, t in enumerate(texts):
            for tok in tokenize(t):
                j = self._index.get(tok)
                if j is not None:
                    out[r, j] = 1.0 if self.binary else out[r, j] + 1.0
        return out

    def state(self) -> dict:
        return {"vocab": self.vocab, "binary": self.binary}

    @classmethod
    def from_state(cls, state: dict) -> "BowVectorizer":
        v = cls(max_features=len(state["vocab"]), binary=state["binary"])
        v.vocab = list(state["vocab"])
        v._index = {w: i for i, w in enumerate(v.vocab)}
        return v


class LazyBow:
    """Bag-of-words rows computed on demand from captions: ``texts[idx]`` gives (len(idx), vocab)
    float32 rows, ``np.asarray(texts)`` all of them. A folder of 100,000 captions over a 2,000-word
    vocabulary would take 800 MB as a dense matrix; encoding reads it batch by batch instead."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, vectorizer: BowVectorizer, captions: list[str]):
        self.vectorizer, self.captions = vectorizer, captions
        self.shape = (len(captions), len(vectorizer.vocab))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.vectorizer.transform([self.captions[int(idx)]])[0]
        rows = np.arange(self.shape[0])[idx]
        return self.vectorizer.transform([self.captions[i] for i in np.atleast_1d(rows)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.vectorizer.transform(self.captions)
        return out if dtype is None else out.astype(dtype, copy=False)
