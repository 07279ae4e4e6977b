"""The protocol, in one path: prepare the inputs once -> train each code length -> score -> report.

    report, inputs = train_lengths("djsrh", "wiki", [16, 64], "runs/djsrh-wiki",
                                   base={"data": {"root": "path/to/wiki"}})
    metrics = run_experiment(cfg, "runs/x/bits-64")          # one code length, inputs prepared here

``train`` and ``demo`` (``train_lengths``), ``sweep`` and every training benchmark (``train.grid``,
through ``prepare`` and ``run_experiment``) all go through here. What a run needs from its setting
is decided once, in this module, and handed down: its ``RunContext`` (``run_context``: the device,
the prepared inputs, the epochs resolved against them), the run folders that may be written
(``refuse_trained``) and whether retrieval can be scored (``Inputs.scorable``, from the data).
``run_experiment`` (train and score) and ``train_run`` (train only) share one start (``_resumable``,
``_fit``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import distributed as dist_
from ..checkpoint import CHECKPOINT, METRICS, bits_dir
from ..config import RunConfig, build_config, parse_overrides, scale_epochs
from ..data.inputs import Inputs, prepare_inputs, summary
from ..eval.report import Report
from ..eval.runner import NOT_SCORED, evaluate_codes
from ..model import encode_split
from ..utils import CmhashError, WriteLock, read_json, resolve_device, write_json_atomic, write_text_atomic
from .resume import check_resumable
from .trainer import Trainer, TrainResult, start_run

RUN_LOCK = ".train.lock"  # held in a run folder by the one process training into it


def holds_trained_model(run_dir: Path) -> bool:
    """Whether ``run_dir`` (one method at one code length) holds a trained model."""
    return (run_dir / CHECKPOINT).exists() or (run_dir / METRICS).exists()


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


@contextlib.contextmanager
def locked_run_folder(out: Path, wait: float = 0.0):
    """The run folder's write lock, held while the body runs: a second ``train``, ``sweep`` or
    ``demo`` into the same folder fails at once instead of overwriting the first one's models.
    Under torchrun only rank 0 takes it. A folder this call created that holds nothing but the
    lock when the body fails (bad settings, missing data) is removed again."""
    out = Path(out)
    created, lock_made = not out.exists(), not (out / RUN_LOCK).exists()
    lock = WriteLock(out / RUN_LOCK, f"run folder {out}")
    if int(os.environ.get("RANK", "0")) == 0:  # before the process group is joined
        lock.acquire(wait)
    try:
        yield out
    except BaseException:
        lock.release()
        left = [p.name for p in out.iterdir()] if out.is_dir() else None
        if created and left in ([], [RUN_LOCK]):
            shutil.rmtree(out, ignore_errors=True)
        elif lock_made and left is not None and RUN_LOCK in left:  # a failed first run leaves no lock file
            (out / RUN_LOCK).unlink(missing_ok=True)
        raise
    finally:
        lock.release()


def resolve_epochs(cfg: RunConfig, inputs: Inputs) -> RunConfig:
    """``train.epochs_at_items`` resolved against the training set in use (``config.scale_epochs``),
    once per run, before its finished metrics are compared or the trainer starts."""
    scale_epochs(cfg.train, len(inputs.split.train))
    return cfg


def run_device(cfg: RunConfig) -> torch.device:
    """The device a run trains on: ``train.device`` (auto: CUDA when present), under torchrun this
    rank's, the process group joined."""
    return dist_.init_from_env(resolve_device(cfg.train.device))


def prepare(cfg: RunConfig, with_maps: bool | None = None) -> tuple[torch.device, Inputs]:
    """The device (``run_device``) and the prepared inputs of ``cfg`` (rank 0 fills the feature
    cache, the others read it)."""
    device = run_device(cfg)
    with dist_.main_first():
        inputs = prepare_inputs(cfg, device, with_maps=with_maps)
    return device, inputs


@dataclass
class RunContext:
    """One run, resolved once: its config (epochs resolved against the training set in use), the
    device it trains on and its prepared inputs. ``run_context`` makes it; training takes it."""
    cfg: RunConfig
    device: torch.device
    inputs: Inputs


def run_context(cfg: RunConfig, inputs: Inputs | None = None, device=None, with_maps: bool | None = None) -> RunContext:
    """The one place a run's device, inputs and epochs are decided: inputs prepared here unless
    given (a sweep prepares them once for many runs), the device from ``cfg`` unless given with
    them, ``train.epochs_at_items`` resolved against their training set."""
    if inputs is None:
        device, inputs = prepare(cfg, with_maps)
    elif device is None:
        device = run_device(cfg)
    return RunContext(resolve_epochs(cfg, inputs), device, inputs)


def _resumable(ctx: RunContext, out: Path | None, resume: bool):
    """The checkpoint ``resume`` continues from (checksum, method and settings checked, loaded
    once), or None."""
    last = out / CHECKPOINT if out is not None else None
    return check_resumable(last, ctx.cfg) if resume and last is not None and last.exists() else None


def _fit(ctx: RunContext, out: Path | None, progress: bool, ck) -> TrainResult:
    """Seeds and threads set (``start_run``), the trainer built, resumed from ``ck``, run."""
    start_run(ctx.cfg, ctx.device, ck)
    trainer = Trainer(ctx.cfg, ctx.inputs, ctx.device, out, progress)
    if ck is not None:
        trainer.resume(ck)
    return trainer.fit()


#: what ``score="validation"`` runs write instead of query scores
VALIDATION_ONLY = ("scored on the validation part of the training set only (model selection): the queries were "
                   "not encoded; `cmhash evaluate` scores them")


def run_experiment(cfg: RunConfig, out_dir: str | Path, inputs: Inputs | None = None, resume: bool = False,
                   progress: bool = True, curves: bool = True, overwrite: bool = False,
                   device: torch.device | None = None, score: str = "queries") -> dict:
    """Train (or resume) one method at one code length, evaluate on the protocol, write
    ``metrics.json`` under ``out_dir``; returns the metrics dict. ``score="validation"``: the
    queries are not encoded (choosing settings); the metrics hold the best validation scores.

    A folder that holds a trained model is protected: without ``resume`` or ``overwrite`` it is an
    error; ``resume`` continues it only with the same method and settings (``check_resumable``
    names what differs; more or fewer epochs are allowed), and a finished run is read back."""
    out = Path(out_dir)
    done, last = out / METRICS, out / CHECKPOINT
    refuse_trained([out], resume, overwrite, out.parent)
    ctx = run_context(cfg, inputs, device)
    inputs, device = ctx.inputs, ctx.device
    if overwrite and dist_.is_main():
        done.unlink(missing_ok=True)
        last.unlink(missing_ok=True)
    ck = _resumable(ctx, out, resume)
    if resume and done.exists():
        if not last.exists():
            raise CmhashError(f"{done}: a finished run without its checkpoint ({last} is missing); --overwrite "
                              "trains it again")
        try:
            finished = read_json(done, "metrics file")
        except CmhashError:
            finished = {}  # damaged: scored again from the checkpoint below
        if finished.get("epochs") == cfg.train.epochs and finished.get("method") == cfg.method:
            return finished  # else --resume with other --epochs: continue (or stop) from last.pt
    res = _fit(ctx, out, progress, ck)
    lab = inputs.data.labels
    if score == "validation":
        metrics = {"scored": False, "note": VALIDATION_ONLY}
    elif inputs.scorable:
        codes = encode_split(res.model, inputs, inputs.split.query, inputs.split.database, device)
        metrics = evaluate_codes(codes, lab[inputs.split.query], lab[inputs.split.database], curves=curves)
    else:  # no labels, no relevance: mAP would print 0 for a model that may well work
        metrics = {"scored": False, "note": NOT_SCORED}
    metrics.update(method=cfg.method, bits=cfg.bits, best_epoch=res.best_epoch, best_val=res.best_val,
                   train_seconds=round(res.seconds, 1), epochs=cfg.train.epochs, threads=torch.get_num_threads())
    if dist_.is_main():
        write_json_atomic(done, metrics)
    return metrics


def train_run(cfg: RunConfig, out_dir: str | Path | None = None, inputs: Inputs | None = None,
              resume: bool = False, progress: bool = True) -> TrainResult:
    """Train one method at one code length, without scoring it on the queries (``out_dir/last.pt``
    checkpoints; ``resume`` continues from the last one, bit-identical on CPU with the same thread
    count)."""
    out = Path(out_dir) if out_dir else None
    ctx = run_context(cfg, inputs)
    return _fit(ctx, out, progress, _resumable(ctx, out, resume))


def evaluate_run(run_dir, tie_averaged: bool = False, grade: str = "shared", device="cpu") -> Report:
    """Re-encode and re-score every checkpoint of a run folder (its best weights) on its saved split,
    the text encoder each model was trained with; the report (not written)."""
    from ..checkpoint import run_checkpoints, split_of
    from ..model import load_model

    run_dir = Path(run_dir)
    ckpts = list(run_checkpoints(run_dir).values()) or ([run_dir / CHECKPOINT] if (run_dir / CHECKPOINT).exists()
                                                        else [])
    if not ckpts:
        raise CmhashError(f"{run_dir}: no checkpoints (bits-*/{CHECKPOINT}) found")
    metrics = ("map", "map@50", "ndcg@50") + (("map_tie_avg",) if tie_averaged else ())
    report = None
    for path in ckpts:
        model = load_model(path, device=device)
        if report is None:
            cfg = model.cfg
            split_file = split_of(path.parent)
            if split_file is not None:
                cfg.data.split_file = str(split_file)
            inputs = prepare_inputs(cfg, text_encoder=model.text_encoder)  # the model's own, as trained
            if not inputs.scorable:
                raise CmhashError(NOT_SCORED)
            report = Report(f"{cfg.method} on {cfg.data.dataset}", inputs, metrics)
        codes = encode_split(model.net, inputs, inputs.split.query, inputs.split.database, device)
        lab = inputs.data.labels
        report.add(model.method.upper(), model.bits, evaluate_codes(
            codes, lab[inputs.split.query], lab[inputs.split.database], curves=False, tie_averaged=tie_averaged,
            grade=grade))
    return report


def summary_line(m: dict) -> str:
    """The headline numbers of one run's metrics, as every command prints them."""
    if m.get("note") == VALIDATION_ONLY:
        return f"validation mAP@50 {m['best_val']['map@50']:.3f} (the queries not encoded)"
    if m.get("scored") is False:
        return "not scored (no labels)"
    return (f"I->T mAP@50 {m['i2t']['map@50']:.3f} mAP {m['i2t']['map']:.3f} | "
            f"T->I mAP@50 {m['t2i']['map@50']:.3f} mAP {m['t2i']['map']:.3f}")


def validation_scores(m: dict) -> dict:
    """A ``score="validation"`` run's row: its best validation scores in the metrics' shape."""
    v = m["best_val"]
    return {"i2t": {"map": v["map_i2t"], "map@50": v["map@50_i2t"]}, "t2i": {"map": v["map_t2i"],
            "map@50": v["map@50_t2i"]}, "score": v["map@50"], "best_epoch": m["best_epoch"],
            "train_seconds": m["train_seconds"]}


def run_into(report: Report, name: str, cfg: RunConfig, out_dir: Path, inputs: Inputs, device=None,
             resume: bool = False, overwrite: bool = False, progress: bool = False, curves: bool = False,
             echo: Callable[[str], None] = print, score: str = "queries", **extra) -> dict:
    """One ``run_experiment`` into ``report`` under ``name`` (``extra``: columns of the row, e.g. a
    sweep's varied parameter and seed), with a progress line; rows of unscored runs are not added,
    a ``score="validation"`` run's row holds its validation scores."""
    t = time.time()
    m = run_experiment(cfg, out_dir, inputs, resume=resume, progress=progress, curves=curves, overwrite=overwrite,
                       device=device, score=score)
    if score == "validation":
        report.add(name, cfg.bits, validation_scores(m), **extra)
    elif inputs.scorable:
        report.add(name, cfg.bits, m, **extra)
    seed = f", seed {extra['seed']}" if "seed" in extra else ""
    echo(f"  {name}, {cfg.bits} bits{seed}: {summary_line(m)}  (best epoch {m['best_epoch']} of {cfg.train.epochs}, "
         f"{m.get('train_seconds', 0):.0f}s train, {time.time() - t:.0f}s)")
    return m


def train_lengths(method: str, dataset: str, bits: list[int], out, root=None, sets=(), base: dict | None = None,
                  resume: bool = False, overwrite: bool = False, progress: bool = True,
                  echo: Callable[[str], None] = print) -> tuple[Report, Inputs]:
    """Train ``method`` at each code length on one prepared input; write the report (``results.md``,
    ``results.json``, curves, ``split.json``) into ``out``. Returns (report, inputs)."""
    out = Path(out)
    base = dict(base or {})
    if root:
        base["data"] = {**base.get("data", {}), "root": str(root)}
    overrides = parse_overrides(list(sets))
    cfgs = [build_config(method, dataset, b, overrides, base) for b in bits]
    refuse_trained([bits_dir(out, b) for b in bits], resume, overwrite, out)  # before anything is loaded or written
    with locked_run_folder(out):
        main_rank = dist_.is_main()
        say = echo if main_rank else (lambda *a, **k: None)
        say(f"loading {dataset} ...")
        t0 = time.time()
        device, inputs = prepare(cfgs[0])
        _, world_size = dist_.world()
        say(f"  {summary(inputs.info)} ({time.time() - t0:.1f}s, device {device}"
            + (f", {world_size} processes, {cfgs[0].train.batch_size // world_size} items each per batch)"
               if world_size > 1 else ")"))
        if main_rank:
            inputs.split.save(out / "split.json")
        report = Report(f"{method} on {dataset}", inputs)
        for cfg in cfgs:
            run_into(report, method.upper(), cfg, bits_dir(out, cfg.bits), inputs, device, resume, overwrite,
                     progress, curves=True, echo=say)
        if main_rank:
            write_report(report, out, bits, method, dataset, cfgs[0].train.seed, say)
    return report, inputs


def write_report(report: Report, out: Path, bits: list[int], method: str, dataset: str, seed: int,
                 echo: Callable[[str], None] = print) -> None:
    """``results.md`` / ``results.json`` (and the curves) of a run folder, with the baselines beside
    the rows; data without labels gets the note that it cannot be scored."""
    if not report.inputs.scorable:
        write_text_atomic(out / "results.md", f"# {method} on {dataset}\n\n{NOT_SCORED}\n")
        write_json_atomic(out / "results.json", {"title": f"{method} on {dataset}", "scored": False,
                                                 "note": NOT_SCORED, "split": report.inputs.split.sizes(), "rows": []})
        echo(f"\n{NOT_SCORED}")
        return
    report.add_baselines(bits, seed=seed, curves=True)
    report.write(out, plot_bits=max(bits), method=method, dataset=dataset)
    echo("")
    echo(report.table())
    echo(f"label prior: {report.label_prior:.3f}")
