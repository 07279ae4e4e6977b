"""Searching a store with a model: open both, matched, and the rule for which modality a query finds.

    store, enc = open_for_search("cmhash-demo/index")           # the model the index was built with
    code, words = enc.query_code("dog puppy")                   # int8 (1, K), the words it read
    hits = store.search(code, 10, target=target_of("text"), source="text")[0]

Used by ``cmhash search``, ``cmhash serve`` and the demo.
"""
from __future__ import annotations

from pathlib import Path

from .encoder import Encoder
from .index.store import IndexStore, read_manifest
from .utils import CmhashError

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
    enc = Encoder.load(src, manifest["bits"], device)
    return IndexStore.open(index_dir, bits=enc.bits, fingerprint=enc.fingerprint), enc
