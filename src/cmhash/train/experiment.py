"""One run of the protocol: train (or resume) a method at one code length, encode the query and
database items, score them, write ``metrics.json``."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import distributed as dist_
from ..config import RunConfig, scale_epochs
from ..data.inputs import Inputs, prepare_inputs
from ..eval.runner import NOT_SCORED, evaluate_codes, scorable
from ..model import encode_split
from ..utils import CmhashError, resolve_device, write_json_atomic
from .trainer import check_resumable, train_run


def holds_trained_model(run_dir: Path) -> bool:
    """Whether ``run_dir`` (one method at one code length) holds a trained model."""
    return (run_dir / "last.pt").exists() or (run_dir / "metrics.json").exists()


def refuse_trained(run_dirs, resume: bool, overwrite: bool, where: Path) -> None:
    """The one rule for run folders: a trained model is continued (``resume``) or replaced
    (``overwrite``) only when asked; otherwise an error naming the runs, before anything is written."""
    done = [d for d in run_dirs if holds_trained_model(Path(d))]
    if resume and overwrite:
        raise CmhashError("give --resume (continue the runs in --out) or --overwrite (replace them), not both")
    if done and not (resume or overwrite):
        names = ", ".join(str(Path(d).relative_to(where)) for d in done[:5]) + (" ..." if len(done) > 5 else "")
        raise CmhashError(f"{where} holds trained models ({names}): --resume continues them, --overwrite replaces "
                          "them, or pick another --out")


def run_experiment(cfg: RunConfig, out_dir: str | Path, inputs: Inputs | None = None, resume: bool = False,
                   progress: bool = True, curves: bool = True, overwrite: bool = False) -> dict:
    """Train (or resume) one method at one code length, evaluate on the protocol, write
    ``metrics.json`` under ``out_dir``; returns the metrics dict.

    A folder that holds a trained model is protected: without ``resume`` or ``overwrite`` it is an
    error; ``resume`` continues it only with the same method and settings (``check_resumable``
    names what differs; more or fewer epochs are allowed), and a finished run is read back."""
    out = Path(out_dir)
    done, last = out / "metrics.json", out / "last.pt"
    refuse_trained([out], resume, overwrite, out.parent)
    if overwrite and dist_.is_main():
        done.unlink(missing_ok=True)
        last.unlink(missing_ok=True)
    device = dist_.init_from_env(resolve_device(cfg.train.device))
    if inputs is None:
        with dist_.main_first():
            inputs = prepare_inputs(cfg, device)
    scale_epochs(cfg.train, len(inputs.split.train))
    # checksum, method and settings, before anything is read back or trained; loaded once, for train_run too
    ck = check_resumable(last, cfg) if resume and last.exists() else None
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
    res = train_run(cfg, out, inputs, resume=resume, progress=progress, checkpoint=ck)
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
