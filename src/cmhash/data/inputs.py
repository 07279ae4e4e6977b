"""From a run configuration to what the model reads: the data, its split, cached frozen features
and the ``InputSpec`` (decided here, once, for training, evaluation and sweeps alike).

``prepare_inputs`` loads the dataset and its split and, for pixel datasets, computes (or reads
from the cache) the frozen backbone's pooled features and, when a method reads them, its conv
maps, and turns captions into text vectors with the configured text encoder (fitted on the
training part of the split). One ``Inputs`` serves every code length, and every method of a sweep
or benchmark.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..spec import ImageSpec, InputSpec, TextSpec
from ..utils import CmhashError
from . import load_dataset
from .base import PairedData
from .features import cached_features, cached_text_features
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
    text_encoder: object | None = None  # the (fitted) cmhash.text encoder that made ``data.texts``, if any
    #: whether retrieval can be scored: relevance is shared labels, so at least one item needs one
    #: (decided here, once, for training, evaluation and the report)
    scorable: bool = field(init=False)

    def __post_init__(self):
        self.scorable = bool(np.asarray(self.data.labels).any())

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


#: pixel datasets up to this many images cache the conv maps in the same pass as the pooled features,
#: so that one feature pass serves every method (maps take 40 KB an image at 128 px, 125 KB at 224 px)
MAPS_WITH_FEATURES_MAX_ITEMS = 50_000


def prepare_texts(cfg, loaded, split: Split, device="cpu", encoder=None):
    """Turn the dataset's captions into text vectors with the configured text encoder, fitted on the
    training part of ``split`` only (never on query items); returns the encoder (None: the dataset's
    own vectors are used as they are). ``encoder``: one already fitted (a trained model's). Rows
    that come out all-zero (an empty caption, or no token in the vocabulary) are counted in
    ``data.info["empty_text_rows"]`` and reported."""
    from ..text import create_text_encoder

    data, dc = loaded.data, cfg.data
    name = encoder.name if encoder is not None else (dc.text_encoder or loaded.text_encoder)
    if name is None:
        if data.vocab is not None and data.captions is not None:  # tag vectors over a known vocabulary
            return create_text_encoder("words").load_state({"analyzer": "words", "vocab": list(data.vocab)})
        return None
    if data.captions is None:
        raise CmhashError(f"dataset {data.name!r} ships {data.texts.shape[1]}-d text vectors, not captions: a text "
                          f"encoder ({name!r}) does not apply to it")
    captions = data.captions
    enc = encoder
    if enc is None:
        enc = create_text_encoder(name, **dc.text_options).to(device)
        enc.fit([captions[i] for i in split.train])  # the training part of the split actually used
    data.texts = cached_text_features(enc, captions, cfg.backbone.cache_dir)  # (N, dim)
    empty = int((~data.texts.any(1)).sum())
    data.info["empty_text_rows"] = empty
    if empty:
        warnings.warn(f"{data.name}: {empty} of {len(captions)} captions give all-zero text vectors under text "
                      f"encoder {enc.describe()} (empty, or no token in its {enc.dim}-token vocabulary); they "
                      "cannot be found by text", stacklevel=2)
    return enc


def prepare_inputs(cfg, device="cpu", with_maps: bool | None = None, text_encoder=None) -> Inputs:
    """Load the data and split of ``cfg``, encode its captions (``prepare_texts``) and, for pixel
    datasets, the frozen backbone's pooled features and conv maps, cached on disk (the maps when
    the method reads them, or always when the dataset has at most ``MAPS_WITH_FEATURES_MAX_ITEMS``
    images: one feature pass then serves every method)."""
    dc, bc = cfg.data, cfg.backbone
    loaded = load_dataset(dc.dataset, dc.root, **dc.options)
    data = loaded.data
    if dc.split_file:
        split = Split.load(dc.split_file, data.names)
    else:
        split = loaded.split(dc.protocol, seed=dc.split_seed, n_query=dc.n_query, n_train=dc.n_train)
    if dc.train_items is not None:
        split = split.fewer_training(dc.train_items, dc.split_seed)
    split.check(len(data))
    text_encoder = prepare_texts(cfg, loaded, split, device, text_encoder)
    info = {"dataset": data.name, "n_items": len(data), "split": split.sizes(), "image_kind": data.image_kind,
            "text_encoder": text_encoder.describe() if text_encoder is not None else "dataset vectors",
            "empty_text_rows": int(data.info.get("empty_text_rows", 0))}
    if data.image_kind == "features":
        if bc.finetune:
            raise CmhashError(f"dataset {data.name!r} has image features, not pixels: nothing to fine-tune")
        return Inputs(data, split, np.asarray(data.images, np.float32), info, text_encoder=text_encoder)
    backbone = ImageSpec("pooled", backbone=bc.name, weights=bc.weights, image_size=bc.image_size).build_backbone()
    t0 = time.time()
    if with_maps is None:
        with_maps = reads_maps(cfg) or (not bc.finetune and len(data) <= MAPS_WITH_FEATURES_MAX_ITEMS)
    got = cached_features(backbone, bc.name, data, bc.cache_dir, bc.batch_size, device, with_maps=with_maps,
                          workers=bc.workers)
    feat, maps = got if with_maps else (got, None)
    if maps is not None:
        info.update(map_shape=list(maps.shape[1:]))
    info.update(backbone=bc.name, feature_dim=int(feat.shape[1]), feature_seconds=round(time.time() - t0, 1))
    return Inputs(data, split, feat, info, maps, backbone, text_encoder)


SMALL_QUERY_SPLIT = 50  # fewer query items than this: their mAP is noise, and is said to be


def summary(info: dict) -> str:
    """``Inputs.info`` as one line a person reads (not a dict)."""
    s = info.get("split") or {}
    out = (f"{info.get('dataset')}: {info.get('n_items')} items (query {s.get('query')}, train {s.get('train')}, "
           f"database {s.get('database')})")
    if info.get("image_kind") == "features":
        out += ", image features"
    else:
        out += f", images through {info.get('backbone')} ({info.get('feature_dim')}-d features)"
    out += f", text: {info.get('text_encoder')}"
    if info.get("empty_text_rows"):
        out += f", {info['empty_text_rows']} captions with no known word"
    if s.get("query") is not None and 0 < s["query"] < SMALL_QUERY_SPLIT:
        out += (f"; only {s['query']} query items: their mAP is noise (at least {SMALL_QUERY_SPLIT} for a number "
                "to compare)")
    return out


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
    enc = inputs.text_encoder
    text = (TextSpec("encoder", enc.dim, enc.name, enc.state()) if enc is not None
            else TextSpec("vectors", int(data.texts.shape[1])))
    return InputSpec(image, text, int(data.labels.shape[1]))
