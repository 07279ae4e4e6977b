"""From a run configuration to what the model reads: the data, its split, cached frozen features
and the ``InputSpec`` (decided here, once, for training, evaluation and sweeps alike).

``prepare_inputs`` loads the dataset and its split and, for pixel datasets, computes (or reads
from the cache) the frozen backbone's pooled features and, when a method reads them, its conv
maps. One ``Inputs`` serves every code length, and every method of a sweep or benchmark.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..spec import ImageSpec, InputSpec, TextSpec
from ..utils import CmhashError
from . import load_dataset
from .base import PairedData
from .features import cached_features
from .protocol import Split


@dataclass
class Inputs:
    """Everything a run needs from the data, prepared once and shared across code lengths."""

    data: PairedData
    split: Split
    feat: np.ndarray  # (N, D) image features F_I: the dataset's own, or the frozen backbone's pooled output
    info: dict = field(default_factory=dict)
    maps: np.ndarray | None = None  # (N, C, h, w) float16 cached conv maps (memory-mapped), if asked for
    backbone: object | None = None  # the frozen backbone that made ``feat`` (pixel datasets)

    def image_source(self, spec: InputSpec) -> np.ndarray | None:
        """What an image net with input ``spec`` reads: conv maps, feature vectors, or None (pixels)."""
        mode = spec.image.mode
        if mode == "maps":
            if self.maps is None:
                raise CmhashError("this model reads conv maps but the inputs were prepared without them")
            return self.maps
        return None if mode == "pixels" else self.feat


def reads_maps(cfg) -> bool:
    """Whether the configured method's image net reads the frozen backbone's conv maps."""
    from ..registry import METHODS

    cls = METHODS.get(cfg.method)
    return not cfg.backbone.finetune and cls.uses_feature_map(cls.make_config(cfg.method_params))


def prepare_inputs(cfg, device="cpu", with_maps: bool | None = None) -> Inputs:
    """Load the data and split of ``cfg``; for pixel datasets the frozen backbone's pooled features
    and, when ``with_maps`` (default: the method reads them), its conv maps, cached on disk."""
    dc, bc = cfg.data, cfg.backbone
    loaded = load_dataset(dc.dataset, dc.root, **dc.options)
    data = loaded.data
    if dc.split_file:
        split = Split.load(dc.split_file)
    else:
        split = loaded.split(dc.protocol, seed=dc.split_seed, n_query=dc.n_query, n_train=dc.n_train)
    split.check(len(data))
    info = {"dataset": data.name, "n_items": len(data), "split": split.sizes(), "image_kind": data.image_kind}
    if data.image_kind == "features":
        if bc.finetune:
            raise CmhashError(f"dataset {data.name!r} has image features, not pixels: nothing to fine-tune")
        return Inputs(data, split, np.asarray(data.images, np.float32), info)
    backbone = ImageSpec("pooled", backbone=bc.name, weights=bc.weights, image_size=bc.image_size).build_backbone()
    t0 = time.time()
    with_maps = reads_maps(cfg) if with_maps is None else with_maps
    got = cached_features(backbone, bc.name, data, bc.cache_dir, bc.batch_size, device, with_maps=with_maps,
                          workers=bc.workers)
    feat, maps = got if with_maps else (got, None)
    if maps is not None:
        info.update(map_shape=list(maps.shape[1:]))
    info.update(backbone=bc.name, feature_dim=int(feat.shape[1]), feature_seconds=round(time.time() - t0, 1))
    return Inputs(data, split, feat, info, maps, backbone)


def input_spec(cfg, inputs: Inputs) -> InputSpec:
    """The model's ``InputSpec`` for ``cfg`` on ``inputs``: the one place the image mode is chosen."""
    data, bb = inputs.data, inputs.backbone
    if data.image_kind == "features":
        image = ImageSpec("features", dim=int(inputs.feat.shape[1]))
    else:
        maps = inputs.maps is not None and reads_maps(cfg)
        mode = "pixels" if cfg.backbone.finetune else ("maps" if maps else "pooled")
        image = ImageSpec(mode, dim=int(inputs.feat.shape[1]),
                          map_channels=int(inputs.maps.shape[1]) if maps else 0,
                          map_size=[int(s) for s in inputs.maps.shape[2:]] if maps else None,
                          backbone=cfg.backbone.name, weights=cfg.backbone.weights,  # absolute (build_config)
                          weights_id=bb.weights_id, weights_shipped=bb.weights_shipped, image_size=bb.input_size)
    vocab = data.vocab if data.vocab and len(data.vocab) == data.texts.shape[1] else None
    text = TextSpec("bow" if vocab else "vectors", int(data.texts.shape[1]), list(vocab) if vocab else None)
    return InputSpec(image, text, int(data.labels.shape[1]))
