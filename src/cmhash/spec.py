"""``InputSpec``: what a model reads, on both sides, decided once and carried as data.

The image side has four modes:

- ``features``: the dataset's own feature vectors (Wiki's SIFT bag of words), (B, dim);
- ``pooled``: a frozen backbone's pooled features, (B, dim), cached once per dataset;
- ``maps``: a frozen backbone's last conv maps, (B, map_channels, h, w), cached beside them
  (methods that say ``uses_feature_map``: DSPRH, UDSPH and SDEH with ``regions``);
- ``pixels``: uint8 pixels through a backbone trained with the method (``--finetune``).

The text side is the dataset's own vectors (``vectors``: the community's ``.mat`` sets) or a
registered text encoder (``encoder``: a bag of words fitted on the training captions, or a
pretrained sentence encoder) with its fitted state, so that free text is encoded later exactly as
in training (``cmhash.text``). ``data.inputs.input_spec`` decides
the spec from the configuration and the data; the trainer saves it in every checkpoint and
``encode`` in every codes folder; methods, ``model.create_model`` and ``model.load_model`` read it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .utils import CmhashError

IMAGE_MODES = ("features", "pooled", "maps", "pixels")
TEXT_KINDS = ("vectors", "encoder")


@dataclass
class ImageSpec:
    mode: str = "features"
    dim: int = 0  # width of the image feature vector F_I: the dataset's features or the pooled backbone output
    map_channels: int = 0  # C of the conv maps (mode "maps")
    map_size: list[int] | None = None  # (h, w) of those maps
    backbone: str | None = None  # a registered backbone (modes pooled, maps, pixels)
    weights: str | None = None  # absolute path of the weight file used in training; None: the backbone's own
    weights_id: str | None = None  # fingerprint of those weights (also the feature-cache key)
    weights_shipped: bool = False  # the weights come with an installed package: a checkpoint need not carry them
    image_size: int | None = None  # the backbone's input size in pixels
    from_checkpoint: bool = False  # set when loading a model: backbone weights come from the checkpoint


    def __post_init__(self):
        if self.mode not in IMAGE_MODES:
            raise CmhashError(f"unknown image input mode {self.mode!r}; known: {', '.join(IMAGE_MODES)}")

    @property
    def reads_pixels(self) -> bool:
        """The model (with its backbone) can encode an image file."""
        return self.mode != "features"

    @property
    def frozen_backbone(self) -> bool:
        """The model turns pixels into its inputs through a frozen backbone (modes pooled and maps),
        whose weights a checkpoint carries unless they ship with an installed package."""
        return self.mode in ("pooled", "maps")

    @property
    def net_dim(self) -> int:
        """Width of the vector the image net reads (0: it reads maps or pixels through a backbone)."""
        return self.dim if self.mode in ("features", "pooled", "maps") else 0

    def build_backbone(self, load: bool | None = None):
        """The backbone module. ``load=False`` (the default when ``from_checkpoint``) builds the
        architecture only: its weights then come from a checkpoint's state dict, so the original
        weight file is not needed."""
        from .models.backbones import build_backbone

        load = not self.from_checkpoint if load is None else load
        if self.backbone is None:
            raise CmhashError(f"image input {self.mode!r} has no backbone")
        bb = build_backbone(self.backbone, self.weights if load else None, self.image_size, load=load)
        if not load and self.weights_id:
            bb.weights_id, bb.weights_shipped = self.weights_id, self.weights_shipped
        return bb


@dataclass
class TextSpec:
    kind: str = "vectors"
    dim: int = 0
    encoder: str | None = None  # kind "encoder": a registered text encoder (cmhash.text) ...
    state: dict | None = None  # ... and its fitted state (a vocabulary and tokenizer), saved with the model

    def __post_init__(self):
        if self.kind not in TEXT_KINDS:
            raise CmhashError(f"unknown text input kind {self.kind!r}; known: {', '.join(TEXT_KINDS)}")
        if self.kind == "encoder" and not self.encoder:
            raise CmhashError("an encoder text input needs the encoder's name")
        if self.vocab is not None and len(self.vocab) != self.dim:
            raise CmhashError(f"a bag-of-words text input needs {self.dim} vocabulary words, got {len(self.vocab)}")

    @property
    def vocab(self) -> list[str] | None:
        """The vocabulary of a bag-of-words encoder (None for vectors and pretrained encoders)."""
        return (self.state or {}).get("vocab")

    @classmethod
    def from_dict(cls, d: dict) -> "TextSpec":
        d = dict(d)
        if d.get("kind") == "bow":  # saved before text encoders: an ASCII-token bag of words
            vocab = d.pop("vocab", None) or []
            return cls("encoder", int(d.get("dim", len(vocab))), "words", {"analyzer": "ascii", "vocab": list(vocab)})
        return cls(**d)


@dataclass
class InputSpec:
    image: ImageSpec = field(default_factory=ImageSpec)
    text: TextSpec = field(default_factory=TextSpec)
    n_labels: int = 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image"].pop("from_checkpoint")  # how this copy was loaded, not what the model reads
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        try:
            return cls(ImageSpec(**d["image"]), TextSpec.from_dict(d["text"]), int(d.get("n_labels", 0)))
        except (KeyError, TypeError) as e:
            raise CmhashError(f"damaged input spec ({type(e).__name__}: {e})") from None

    def describe(self) -> str:
        im = self.image
        img = im.mode if im.mode == "features" else f"{im.mode} of {im.backbone} at {im.image_size or 'default'} px"
        txt = self.text.encoder if self.text.kind == "encoder" else "vectors"
        return f"image {img} ({im.dim}-d), text {txt} ({self.text.dim}-d), {self.n_labels} labels"
