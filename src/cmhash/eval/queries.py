"""Typed queries: each label's name, as a person would type it, searched text -> image over the
database; precision@k of that label (a sweep's ``label_queries``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import sign_codes
from .hamming import hamming_pm1


def label_query_precision(run: str | Path, inputs, queries: dict[str, str], k: int = 10) -> dict[str, float | None]:
    """label -> precision@k of the typed query ``queries[label]`` for the model in ``run`` (a
    ``bits-K`` folder); None where the model's text encoder knows none of the query's words."""
    from ..model import encode_items, load_model

    model = load_model(run, device="cpu")
    db = inputs.split.database
    db_codes = encode_items(model.net, inputs, db, "image", "cpu")  # (N, K) int8
    names = inputs.data.label_names
    out: dict[str, float | None] = {}
    for label, query in queries.items():
        if model.text_encoder is None or not model.text_encoder.explain(query)["used"]:
            out[label] = None
            continue
        q = sign_codes(model.encode_text([query]))  # (1, K)
        top = np.argsort(hamming_pm1(q, db_codes)[0], kind="stable")[:k]
        out[label] = float(inputs.data.labels[db[top], names.index(label)].mean())
    return out
