"""One command from a folder of photos and captions to a searchable index, and one to add another
folder with the same model (``cmhash index build --folder``, ``cmhash index add --folder``).

The steps, each timed: the frozen image features and the text vectors (cached, ``protocol.prepare``),
the fit of ``method`` at ``bits`` (``protocol.run_experiment``: scored on the folder's query split
when it has labels), the codes of every item (``codes_folder.write_collection``, reading the cached
features), and the index (``index.folders.build_index``). The index folder holds the model's run
folder (``model/``) and the codes (``codes/``, ``codes-2/`` ...) beside the store's files, so it
is one folder to move, serve or grow.

The default method is CCA-ITQ: on frozen features it scores as well as or better than every deep
unsupervised method on UCM-captions and the embedded set (docs/benchmarks.md), and it fits in
seconds; ``method`` picks another (a deep one trains for minutes).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..checkpoint import bits_dir
from ..config import build_config, parse_overrides
from ..data.inputs import summary
from ..codes_folder import write_collection
from ..encoder import Encoder
from ..index.folders import add_to_index, build_index
from ..index.store import IndexStore, read_manifest
from ..utils import CmhashError
from .protocol import locked_run_folder, prepare, refuse_trained, run_experiment

DEFAULT_METHOD = "cca-itq"
MODEL, CODES = "model", "codes"


def _timed(fn):
    """(what ``fn()`` returns, the seconds it took)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def index_folder(folder, out, method: str = DEFAULT_METHOD, bits: int = 64, backend: str = "flat",
                 sets=(), text_encoder: str | None = None, overwrite: bool = False,
                 echo: Callable[[str], None] = print) -> dict:
    """Features, fit, encode and index ``folder`` (the ``folder`` dataset: images + captions.tsv)
    into the index folder ``out``; the index's ``info()`` with each step's seconds under ``steps``."""
    folder, out = Path(folder), Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise CmhashError(f"{out} holds an index already: `cmhash index add {out} --folder NEW` adds a folder with "
                          "its model, --overwrite builds it again")
    base = {"data": {"root": str(folder), **({"text_encoder": text_encoder} if text_encoder else {})}}
    cfg = build_config(method, "folder", bits, parse_overrides(list(sets)), base)
    run, steps = out / MODEL, {}
    refuse_trained([bits_dir(run, bits)], False, overwrite, run)
    (device, inputs), steps["features"] = _timed(lambda: prepare(cfg))
    echo(f"features: {summary(inputs.info)} ({steps['features']:.1f} s)")
    with locked_run_folder(run):
        inputs.split.save(run / "split.json")
        metrics, steps["fit"] = _timed(lambda: run_experiment(
            cfg, bits_dir(run, bits), inputs, overwrite=overwrite, device=device, curves=False))
    scored = (f"; mAP@50 on its {len(inputs.split.query)} query items: I->T {metrics['i2t']['map@50']:.3f}, "
              f"T->I {metrics['t2i']['map@50']:.3f}" if metrics.get("scored", True) and "i2t" in metrics else "")
    echo(f"fit: {method} at {bits} bits ({steps['fit']:.1f} s{scored})")
    enc = Encoder.load(run, bits, str(device))
    _, steps["encode"] = _timed(lambda: write_collection(enc, inputs.data, out / CODES, progress=False,
                                                         overwrite=True))
    echo(f"encode: {len(inputs.data)} items ({steps['encode']:.1f} s)")
    info, steps["index"] = _timed(lambda: build_index([out / CODES], out, backend, overwrite=True))
    echo(f"index: {backend}, {info['items']} items ({steps['index']:.1f} s)")
    return {**info, "steps": steps, "metrics": metrics}


def add_folder(index_dir, folder, echo: Callable[[str], None] = print) -> tuple[int, IndexStore, dict]:
    """Encode ``folder`` with the model ``index_dir`` was built with and add it (ids after the
    largest one there); (items added, the closed store, each step's seconds)."""
    index_dir, folder = Path(index_dir), Path(folder)
    model = read_manifest(index_dir).get("model", {})
    if not model.get("checkpoint") or not Path(model["checkpoint"]).exists():
        raise CmhashError(f"{index_dir}: the model it was built with ({model.get('checkpoint')}) is not there")
    store = IndexStore.open(index_dir)
    try:
        start = int(np.max(store.indexes["image"].ids)) + 1 if store.ntotal else 0
    finally:
        store.close()
    steps = {}
    enc = Encoder.load(model["checkpoint"])
    data = enc.load_collection("folder", folder)
    n = 2
    while (index_dir / f"{CODES}-{n}").exists():
        n += 1
    codes = index_dir / f"{CODES}-{n}"
    _, steps["encode"] = _timed(lambda: write_collection(enc, data, codes, ids=np.arange(len(data)) + start,
                                                         progress=False))
    echo(f"encode: {len(data)} items of {folder} ({steps['encode']:.1f} s)")
    (added, _, store), steps["index"] = _timed(lambda: add_to_index(index_dir, [codes]))
    echo(f"index: added {added} ({steps['index']:.1f} s)")
    return added, store, steps
