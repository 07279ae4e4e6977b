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
