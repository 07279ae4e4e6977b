"""Searching a store with a model: open both, matched, and the rule for which modality a query finds.

    store, enc = open_for_search("cmhash-demo/index")           # the model the index was built with
    code, words = enc.query_code("dog puppy")                   # int8 (1, K), the words it read
    hits = store.search(code, 10, target=target_of("text"), source="text")[0]

Used by ``cmhash search``, ``cmhash serve`` and the demo.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .index.store import IndexStore, read_manifest
from .utils import CmhashError

if TYPE_CHECKING:
    from .encoder import Encoder

MODALITIES = ("image", "text")
MAX_K = 1000  # the most results one query may ask for: `cmhash search -k` and the service's k alike


def target_of(modality: str, same_modal: bool = False) -> str:
    """What a query of ``modality`` searches: the other modality, or its own with ``same_modal``."""
    if modality not in MODALITIES:
        raise CmhashError(f"a query is an image or a text, got {modality!r}")
    return modality if same_modal else ("image" if modality == "text" else "text")


def open_for_search(index_dir, model=None, device: str = "auto") -> tuple[IndexStore, Encoder]:
    """The store at ``index_dir`` and an encoder of its model (``model``: a run folder or checkpoint;
    default the one the index was built with). ``IndexStore.open`` checks the code length and the
    model's fingerprint, once."""
    manifest = read_manifest(Path(index_dir))
    m = manifest.get("model", {})
    src = model or (Path(m["checkpoint"]) if m.get("checkpoint") else None)
    if src is None or not Path(src).exists():
        raise CmhashError(f"{index_dir}: the model it was built with ({m.get('checkpoint')}) is not there; "
                          "pass --model")
    from .encoder import Encoder

    enc = Encoder.load(src, manifest["bits"], device)
    return IndexStore.open(index_dir, bits=enc.bits, fingerprint=enc.fingerprint), enc


TEXT_QUERY_FILE = "text-query.npz"  # beside a model's checkpoint: its text side as numbers (trainer.write_text_query)


def text_query_code(index_dir, text: str) -> tuple[np.ndarray, dict] | None:
    """A text query's code (int8 (1, K)) and its words, for an index whose model left a
    ``text-query.npz`` (an affine text side over a bag of words: CCA-ITQ), computed with numpy
    alone: no torch, no scikit-learn, no checkpoint read (about 2 s of imports on 2 cores). None
    when the model has no such file, or the file is not the index's model (its fingerprint);
    the caller then loads the model."""
    from .codes import sign
    from .spec import TextSpec
    from .text.base import explain_query, text_encoder_from_spec

    model = read_manifest(Path(index_dir)).get("model", {})
    ck = Path(model.get("checkpoint") or "")
    f = (ck if ck.is_dir() else ck.parent) / TEXT_QUERY_FILE
    if not model.get("checkpoint") or not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            if str(z["fingerprint"]) != model.get("fingerprint"):
                return None
            mean, proj, spec = z["mean"], z["proj"], TextSpec.from_dict(json.loads(str(z["text_spec"])))
    except (OSError, ValueError, KeyError):
        return None  # damaged: the model itself answers
    enc = text_encoder_from_spec(spec)
    words = explain_query(enc, text, strict=True)
    return sign((enc.transform([text]).astype(np.float64) - mean) @ proj), words  # (1, K)
