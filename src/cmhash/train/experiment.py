"""One run of the protocol: train (or resume) a method at one code length, encode the query and
database items, score them, write ``metrics.json``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import distributed as dist_
from ..config import RunConfig, scale_epochs
from ..data.inputs import Inputs, prepare_inputs
from ..eval.runner import evaluate_codes
from ..model import encode_split
from ..utils import CmhashError, resolve_device, write_json_atomic
from .trainer import check_resumable, train_run


NOT_SCORED = ("retrieval cannot be scored: the data has no labels (relevance is shared labels); the model is "
              "trained: encode, index and search with it, or add labels (a third column in captions.tsv) to score it")


def scorable(labels) -> bool:
    """Whether retrieval can be scored: at least one item has a label."""
    return bool(np.asarray(labels).any())


def run_experiment(cfg: RunConfig, out_dir: str | Path, inputs: Inputs | None = None, resume: bool = False,
                   progress: bool = True, curves: bool = True, overwrite: bool = False) -> dict:
    """Train (or resume) one method at one code length, evaluate on the protocol, write
    ``metrics.json`` under ``out_dir``; returns the metrics dict.

    A folder that holds a trained model is protected: without ``resume`` or ``overwrite`` it is an
    error; ``resume`` continues it only with the same method and settings (``check_resumable``
    names what differs; more or fewer epochs are allowed), and a finished run is read back."""
    out = Path(out_dir)
    done, last = out / "metrics.json", out / "last.pt"
    if (done.exists() or last.exists()) and not resume:
        if not overwrite:
            raise CmhashError(f"{out} holds a trained {cfg.method} {cfg.bits}-bit model: --resume continues it, "
                              "--overwrite replaces it, or pick another --out")
        if dist_.is_main():
            done.unlink(missing_ok=True)
            last.unlink(missing_ok=True)
    device = dist_.init_from_env(resolve_device(cfg.train.device))
    if inputs is None:
        with dist_.main_first():
            inputs = prepare_inputs(cfg, device)
    scale_epochs(cfg.train, len(inputs.split.train))
    if resume and last.exists():
        check_resumable(last, cfg)  # checksum, method and settings, before anything is read back or trained
    if resume and done.exists():
        if not last.exists():
            raise CmhashError(f"{done}: a finished run without its checkpoint ({last} is missing); --overwrite "
                              "trains it again")
        try:
            finished = json.loads(done.read_text())
        except (ValueError, UnicodeDecodeError):
            finished = {}  # damaged: scored again from the checkpoint below
        if finished.get("epochs") == cfg.train.epochs and finished.get("method") == cfg.method:
            return finished  # else --resume with other --epochs: continue (or stop) from last.pt
    res = train_run(cfg, out, inputs, resume=resume, progress=progress)
    lab = inputs.data.labels
    if scorable(lab):
        codes = encode_split(res.model, inputs, inputs.split.query, inputs.split.database, device)
        metrics = evaluate_codes(codes, lab[inputs.split.query], lab[inputs.split.database], curves=curves)
    else:  # no labels, no relevance: mAP would print 0 for a model that may well work
        metrics = {"scored": False, "note": NOT_SCORED}
    metrics.update(method=cfg.method, bits=cfg.bits, best_epoch=res.best_epoch, best_val=res.best_val,
                   train_seconds=round(res.seconds, 1), epochs=cfg.train.epochs, threads=torch.get_num_threads())
    if dist_.is_main():
        write_json_atomic(done, metrics)
    return metrics
