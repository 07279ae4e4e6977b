"""Typed run configuration: dataclasses, per method x dataset presets (YAML), overrides.

Precedence: dataclass defaults < ``presets/<method>.yaml`` ``default:`` < its ``<dataset>:``
section < command-line ``--set section.key=value`` overrides (``overrides``: typed, one parser).

Code lengths are checked (``codes.check_code_length``) when a configuration is built. Paths
(data root, split file, backbone weights, feature cache) are stored absolute, so a saved run
evaluates and encodes from any working directory.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .codes import check_code_length
from .overrides import make_dataclass, nest, parse_pairs
from .presets import deep_update, load_preset
from .env import cache_dir as default_cache_dir
from .utils import CmhashError


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None
    protocol: str | None = None  # None: the dataset's default ("djsrh", "dcmh", "fixed")
    split_seed: int = 0
    n_query: int | None = None
    n_train: int | None = None
    split_file: str | None = None  # a saved split (--split-file; format in the README) instead of drawing one
    train_items: int | None = None  # keep this many of the split's training items (drawn with split_seed)
    options: dict = field(default_factory=dict)  # passed to the dataset loader
    text_encoder: str | None = None  # captions -> text vectors (cmhash.text); None: the dataset's default
    text_options: dict = field(default_factory=dict)  # passed to the text encoder (e.g. max_features, min_count)


@dataclass
class BackboneConfig:
    name: str = "efficientnet-lite0"
    weights: str | None = None
    image_size: int | None = None  # None: the backbone's default (224)
    finetune: bool = False  # True: train through the backbone on raw pixels (a GPU job)
    batch_size: int = 64
    cache_dir: str | None = None  # frozen-feature cache; None: env.cache_dir() (CMHASH_CACHE_DIR, else
    # the platform's user cache folder, ~/.cache/cmhash on Linux), so every working directory shares it
    workers: int = 2  # processes that read and decode images for the feature pass and encoding


@dataclass
class TrainConfig:
    epochs: int = 80
    # > 0: ``epochs`` is meant for a training set of this many items, and is scaled to the one in use
    # (about the same number of steps: ``scale_epochs``); the folder presets use it. 0: epochs as given.
    epochs_at_items: int = 0
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.1
    eval_every: int = 5
    select_metric: str = "map@50"  # mean of I->T and T->I on the validation part
    num_threads: int | None = None  # CPU threads; None: the cores other processes leave free (utils.auto_threads)
    checkpoint_every: int = 0  # also checkpoint every N steps mid-epoch (0: only by time and at epoch ends)
    checkpoint_minutes: float = 10.0  # and whenever this long has passed since the last checkpoint
    # what a deep method's similarity targets are computed from: "features" (the papers: frozen F_I and
    # the text vectors) or "canonical" (their projections in CCA's canonical space; train/targets.py)
    targets: str = "features"
    canonical_dims: int = 0  # directions of the canonical space kept (0: the code length)

    def __post_init__(self):
        for key, low in (("epochs", 1), ("batch_size", 1), ("eval_every", 1), ("epochs_at_items", 0),
                         ("checkpoint_every", 0), ("canonical_dims", 0)):
            if getattr(self, key) < low:
                raise CmhashError(f"train.{key} must be at least {low}, got {getattr(self, key)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise CmhashError(f"train.num_threads must be at least 1 (or null: automatic), got {self.num_threads}")
        if self.targets not in ("features", "canonical"):
            raise CmhashError(f"train.targets must be 'features' or 'canonical', got {self.targets!r}")
        if not 0 <= self.val_fraction < 1:
            raise CmhashError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class RunConfig:
    method: str = "djsrh"
    bits: int = 64
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        return cls(method=d.get("method", "djsrh"), bits=check_code_length(d.get("bits", 64)),
                   data=make_dataclass(DataConfig, d.get("data", {}), "data"),
                   backbone=make_dataclass(BackboneConfig, d.get("backbone", {}), "backbone"),
                   train=make_dataclass(TrainConfig, d.get("train", {}), "train"),
                   method_params=dict(d.get("method_params", {})))


MAX_EPOCH_SCALE = 2  # a small set trains at most this many times the preset's epochs (scale_epochs)


def scale_epochs(tc: TrainConfig, n_train: int) -> TrainConfig:
    """Resolve ``epochs_at_items``: epochs x epochs_at_items / n_train, rounded, within
    [max(1, epochs / 10), MAX_EPOCH_SCALE x epochs] (a folder of 1,000 items trains twice the
    epochs of one of 2,000, the same number of steps; one of 20,000 a tenth). The upper bound was
    10x: a 40-photo folder then trained 400 epochs of one step each, and the per-epoch costs
    (checkpoint, validation every few epochs) made it 10-12 minutes. At 2x, measured on 2 cores
    with UCM photos (features cached): DJSRH 80 epochs in 24 s on 40 photos and 51 s on 450,
    DSPRH 40 epochs in 88 s on 450. Sets ``epochs_at_items`` to 0, so resolving twice changes nothing;
    ``eval_every`` is kept within the epochs."""
    if tc.epochs_at_items > 0 and n_train > 0:
        scaled = round(tc.epochs * tc.epochs_at_items / n_train)
        tc.epochs = int(min(max(scaled, max(1, tc.epochs // 10)), MAX_EPOCH_SCALE * tc.epochs))
        tc.eval_every = max(1, min(tc.eval_every, tc.epochs))
        tc.epochs_at_items = 0
    return tc


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else path


def parse_overrides(items: list[str]) -> dict:
    """['train.epochs=5', 'method.beta=0.6'] -> nested dict (values parsed as YAML scalars)."""
    return nest(parse_pairs(items, "override"))


def build_config(method: str, dataset: str, bits: int, overrides: dict | None = None,
                 base: dict | None = None) -> RunConfig:
    """Defaults < preset < ``base`` (e.g. CLI options) < ``overrides``."""
    merged: dict[str, Any] = {"data": {"dataset": dataset}}
    preset = load_preset(method, dataset)
    deep_update(merged, preset)
    deep_update(merged, base or {})
    deep_update(merged, overrides or {})
    given = {**(base or {}).get("train", {}), **(overrides or {}).get("train", {})}
    if "epochs" in given and "epochs_at_items" not in given:  # epochs given by the user are taken as they are
        merged.setdefault("train", {})["epochs_at_items"] = 0
    method_params = merged.pop("method", {})
    cfg = RunConfig.from_dict({"method": method, "bits": bits, **merged, "method_params": method_params})
    from .registry import METHODS

    METHODS.get(method).make_config(cfg.method_params)  # unknown or mistyped method settings fail here
    d, b = cfg.data, cfg.backbone
    b.cache_dir = b.cache_dir or str(default_cache_dir())
    d.root, d.split_file, b.weights, b.cache_dir = (_absolute(p) for p in (d.root, d.split_file, b.weights,
                                                                              b.cache_dir))
    return cfg
