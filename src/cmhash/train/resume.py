"""Whether a run may continue a checkpoint: the settings a resumed run may change, and the error
that names every other one that differs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..config import RunConfig
from ..overrides import flatten
from ..registry import METHODS
from ..utils import CmhashError

_VOLATILE = ("device", "num_threads", "checkpoint_every", "checkpoint_minutes", "epochs", "eval_every")


# what a resumed run may change (the config keys of config_diff that are left out)
RESUMABLE = {*(f"train.{k}" for k in _VOLATILE), "train.epochs_at_items", "backbone.workers", "backbone.cache_dir"}


def config_diff(saved: dict, new: dict) -> list[str]:
    """The settings that differ between a saved run's config and a new one (``RunConfig.to_dict``),
    as ``key: old -> new``, up to those a resumed run may change: device, threads, checkpointing,
    image workers, and the number of epochs (``--resume`` with other ``--epochs`` extends or shortens
    the run; ``epochs_at_items`` is resolved into it by ``config.scale_epochs``)."""
    def flat(d: dict) -> dict:
        out = {"method": d.get("method"), "bits": d.get("bits"),
               **flatten({"data": d.get("data") or {}, "backbone": d.get("backbone") or {},
                          "train": d.get("train") or {}, "method": resolved(d)})}
        return {k: v for k, v in out.items() if k not in RESUMABLE}

    def resolved(d: dict) -> dict:
        """The method's settings in effect (a value given equal to its default is no difference)."""
        params = d.get("method_params") or {}
        try:
            return dataclasses.asdict(METHODS.get(d.get("method")).make_config(params))
        except (CmhashError, TypeError):  # a method no longer registered, or settings it no longer has
            return params

    a, b = flat(saved), flat(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resumable(path: Path, cfg: RunConfig) -> dict:
    """The checkpoint at ``path`` (checksum verified) when ``cfg`` may continue it; otherwise a
    ``CmhashError`` that names every setting that differs."""
    ck = load_checkpoint(path)
    if ck.get("method") != cfg.method or ck.get("bits") != cfg.bits:
        raise CmhashError(f"{path}: --resume of a {ck.get('method')} {ck.get('bits')}-bit run as {cfg.method} "
                          f"{cfg.bits}-bit; use a new --out, or --overwrite to replace it")
    diff = config_diff(ck["config"], cfg.to_dict())
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise CmhashError(f"{path}: --resume of a run trained with other settings ({shown}); use a new --out, "
                          "or --overwrite to replace it")
    return ck
