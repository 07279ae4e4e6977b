"""Checkpoint files: written atomically, read with a validated format, self-contained.

A checkpoint (``bits-K/last.pt``) holds the run configuration, the ``InputSpec`` (so the model is
rebuilt without the data folder), the weights (last and best-validation), the frozen backbone's
weights when they do not come with an installed package (so the original weight file is not
needed either), and what an exact resume needs: optimisers, per-item memories, every RNG state
(python, numpy, torch, the method's generators), the epoch, the position inside it and the data
order. Everything is stored as plain types and tensors: checkpoints load with ``weights_only=True``.

**Checksummed.** The checkpoint is serialised, its bytes hashed (SHA-256), and the file holds both
(``{"format", "sha256", "payload"}``, the payload a uint8 tensor): a flipped byte or a truncated
file is an error in resume, evaluate and encode alike, never other numbers. torch's zip format
checks no CRC when it reads, so this is cmhash's own. Checkpoints written before checksums
(``cmhash-checkpoint-v2``) still load, unverified.
"""
from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import numpy as np
import torch

from .utils import CmhashError, atomic_path, load_torch_file

FORMAT = "cmhash-checkpoint-v2"  # the checkpoint's contents
CHECKPOINT, METRICS = "last.pt", "metrics.json"  # in each bits-K folder of a run folder


def bits_dir(run_dir: str | Path, bits: int) -> Path:
    """The folder of one code length inside a run folder: ``RUN/bits-K`` (holding ``last.pt`` and
    ``metrics.json``). The run-folder layout is decided here and nowhere else."""
    return Path(run_dir) / f"bits-{bits}"


def sweep_run_dir(out: str | Path, point: str, seed: int | None = None, section: str | None = None) -> Path:
    """One run folder of a sweep (its ``bits-K`` inside): ``OUT[/SECTION]/POINT[/seed-S]``, the
    section (a dataset of a several-dataset sweep) and the seed level only when the sweep has them.
    The sweep's ``split.json`` lies in ``OUT[/SECTION]`` (``split_of`` finds it)."""
    folder = Path(out) / section if section else Path(out)
    folder = folder / point
    return folder / f"seed-{seed}" if seed is not None else folder


def split_of(bits_folder: str | Path, levels: int = 4) -> Path | None:
    """The ``split.json`` a run was trained on: the first one in the folders above ``RUN/bits-K``
    (a run folder of ``train`` holds it; a sweep's lies up to three levels higher), else None."""
    for parent in list(Path(bits_folder).parents)[:levels]:
        if (parent / "split.json").is_file():
            return parent / "split.json"
    return None


def run_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """code length -> checkpoint of every ``bits-K/last.pt`` in a run folder, shortest first."""
    found = {}
    for p in Path(run_dir).glob(f"bits-*/{CHECKPOINT}"):
        k = p.parent.name.split("-", 1)[1]
        if k.isdigit():
            found[int(k)] = p
    return dict(sorted(found.items()))
SEALED = "cmhash-checkpoint-v3"  # the file: the contents' bytes and their SHA-256


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    """Write ``ckpt`` (plus the format tag) to ``path`` atomically, with its checksum: a kill leaves
    the previous file."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **ckpt}, buf)
    raw = buf.getbuffer()
    sealed = {"format": SEALED, "sha256": hashlib.sha256(raw).hexdigest(),
              "payload": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}
    out = io.BytesIO()
    torch.save(sealed, out)
    with atomic_path(path, "checkpoint", need=out.tell()) as tmp:  # file I/O: a full disk is an OSError
        tmp.write_bytes(out.getbuffer())  # (torch.save to a path would raise a RuntimeError)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents; damaged, truncated, foreign or too old files are a ``CmhashError``."""
    ckpt = load_torch_file(path, "checkpoint")
    if isinstance(ckpt, dict) and ckpt.get("format") == SEALED:
        payload = ckpt.get("payload")
        raw = payload.numpy().tobytes() if isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 else b""
        if hashlib.sha256(raw).hexdigest() != ckpt.get("sha256"):
            raise CmhashError(f"{path}: checksum mismatch: the checkpoint is damaged (a changed or lost byte); "
                              "use another checkpoint, or train again")
        try:
            ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - verified bytes that do not unpickle: a foreign writer
            raise CmhashError(f"{path}: checkpoint contents unreadable ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("cmhash-checkpoint"):
        raise CmhashError(f"{path}: not a cmhash checkpoint")
    if ckpt["format"] != FORMAT:
        raise CmhashError(f"{path}: a {ckpt['format']} checkpoint from an older cmhash (no input spec); "
                          "train the model again with this version")
    return ckpt


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Every RNG a run draws from: python, numpy, torch and the method's own ``generators``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "generators": {k: g.get_state() for k, g in generators.items()}}


def set_rng_state(st: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(st["python"])
    for k, v in (st.get("generators") or {}).items():
        if k in generators:
            generators[k].set_state(v)
