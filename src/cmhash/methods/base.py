"""What every hashing method provides to the one trainer.

A method is an ``nn.Module`` built from its hyper-parameters, the code length and the
``InputSpec`` (``model.create_model``); a new method is one file in this package::

    @register_method("mymethod", distributed=True)   # what it supports, declared
    class MyMethod(HashMethod):
        '''One line for ``cmhash list``.'''

        def build(self, cfg):          # the nets, from cfg (its Config) and self.spec / self.bits
            ...
        def loss(self, batch): ...
        def make_optimizer(self): ...

Its hyper-parameters are the ``params:`` section of ``presets/<name>.yaml`` (``config.method_config``,
each with the paper's value and a comment), or a dataclass given as ``Config``. The trainer feeds it
batches ``{"image": (B, ...) image-net input (pooled features (B, D), conv maps (B, C, h, w)
when the method ``uses_feature_map``, or uint8 pixels when fine-tuning), "feat": (B, D) frozen image features F_I,
"text": (B, d), "label": (B, C) multi-hot labels, "index": (B,) item indices, "row": (B,) positions in
the training set, "target_feat" / "target_text": (B, .) what similarity targets are computed from
(F_I and "text", or their canonical projections: ``train.targets``)}`` and calls ``loss``; evaluation calls ``encode_image`` / ``encode_text`` and
takes signs. Unsupervised methods never read "label".

Hooks for methods that train in alternation or keep per-item state (DCMH, SSAH, UDSPH):

- ``phases``: the trainer makes one pass over the epoch's batches per phase, calling
  ``loss(batch, phase)`` and stepping ``make_optimizer()[phase]`` (a dict of optimisers);
  the default ``(None,)`` is one joint pass with ``loss(batch)``.
- ``attach_training_features(feat, text)``: called once with the training items' frozen image
  features and text vectors, for targets over the whole training set (DGCPN's graph).
- ``clip_grad_norm``: a class attribute; the trainer clips the gradients' norm to it (UCCH).
- ``attach_training_set(labels)``: called once with the (N, C) training labels before training;
  they are kept as ``train_labels`` and a method's ``memory`` (a ``models.Memory`` of the
  training set, if it has one) gets its N rows.
- ``training_state()`` / ``load_training_state()``: what a checkpoint must hold beyond the
  weights for a killed run to resume exactly (the memory); not needed to encode.
- ``lr_factor(epoch, epochs)``: a multiplier of every parameter group's initial learning rate;
  by default exponential decay to ``Config.lr_decay_to`` when the config has that field, else 1.

What a method supports is declared on its class: ``supervised`` (reads labels), ``distributed``
(data-parallel training computes the single-process loss), ``memory`` (keeps per-item training
memories, which data-parallel training does not synchronise).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..codes import check_code_length
from ..overrides import make_dataclass
from ..presets import method_config
from ..registry import METHODS, register_method  # noqa: F401  (re-exported: methods import it from here)
from ..spec import InputSpec
from ..utils import CmhashError


def labels_required(method: str) -> str:
    """The error for a supervised ``method`` on data without labels, naming the unsupervised
    methods the registry holds."""
    others = ", ".join(n for n in METHODS.names() if not METHODS.get(n).supervised)
    return (f"{method} is a supervised method: it learns from labels, and this data has none; use an unsupervised "
            f"one ({others}) or add labels")


class HashMethod(nn.Module):
    name: str = ""  # set by @register_method
    Config: type | None = None  # the hyper-parameter dataclass; None: presets/<name>.yaml ``params:``
    supervised: bool = False  # reads batch["label"]
    phases: tuple = (None,)
    #: keeps per-item training memories (``self.memory``)
    memory_per_item: bool = False
    #: fitted in one pass, not by gradient steps (CCA-ITQ): the trainer calls ``fit_closed_form``
    #: (x (N, D), t (N, d), fit_rows, score, seed) on the training items instead of running epochs
    closed_form: bool = False
    #: clip the gradients' global norm to this before each step (None: no clipping)
    clip_grad_norm: float | None = None
    #: True when the loss gathers every batch-level tensor (``self.gather``) so that data-parallel
    #: training computes the single-process loss of the global batch (see ``train.distributed``).
    distributed: bool = False
    #: hyper-parameters that shrink the nets for a run of a few hundred items in a second or so (the
    #: test suite's runs, which loop over the registry); the others keep their preset values
    small: dict = {}
    #: its similarity targets (or, for UCCH, its memory's first keys) can be computed in CCA's canonical
    #: space (``train.targets: canonical``, ``train/targets.py``): the batch's "target_feat" /
    #: "target_text" and ``attach_training_features`` carry the canonical projections; ``self.targets``
    #: says which the trainer chose
    canonical_targets: bool = False
    targets: str = "features"

    def __init__(self, cfg, bits: int, spec: InputSpec):
        super().__init__()
        check_code_length(bits)
        if self.supervised and spec.n_labels < 1:
            raise CmhashError(labels_required(self.name))
        self.cfg, self.bits, self.spec = cfg, bits, spec
        self.img_dim = spec.image.net_dim  # width of the image vector input (0: maps or pixels)
        self.map_channels = spec.image.map_channels if spec.image.mode == "maps" else 0  # > 0: (B, C, h, w) maps
        self.txt_dim, self.n_labels = spec.text.dim, spec.n_labels
        self.register_buffer("train_labels", torch.empty(0, self.n_labels), persistent=False)
        self.build(cfg)

    def build(self, cfg) -> None:
        """Create the method's networks (``self.bits``, ``self.spec`` and the dims above are set)."""

    def image_backbone(self):
        """The backbone the image net trains through (mode ``pixels``), else None."""
        if self.spec.image.mode != "pixels":
            return None
        return self.spec.image.build_backbone()

    @classmethod
    def uses_feature_map(cls, config) -> bool:
        """Whether the image net wants the backbone's conv map (cached when the backbone is frozen)
        rather than its pooled features: by default, a config field ``regions`` says so."""
        return bool(getattr(config, "regions", False))

    @classmethod
    def config_class(cls) -> type:
        """The hyper-parameter dataclass: ``Config``, or one made from the method's preset file."""
        if cls.__dict__.get("Config") is None:
            cls.Config = method_config(cls.name)
        return cls.Config

    @classmethod
    def make_config(cls, params: dict):
        """The method's config from ``params``: unknown keys and mistyped values are errors."""
        return make_dataclass(cls.config_class(), params, "method", f"{cls.name} parameter")

    def set_epoch(self, epoch: int) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "set_epoch"):
                m.set_epoch(epoch)

    def attach_training_set(self, labels: torch.Tensor) -> None:
        """(N, C) labels of the training items, in the order of batch["row"]."""
        self.train_labels = labels.float()
        memory = getattr(self, "memory", None)
        if memory is not None:
            memory.attach(len(labels))

    @staticmethod
    def target_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, .) image and text vectors the similarity targets are computed from: the trainer's
        "target_feat" / "target_text" (``train.targets``), else F_I and the text vectors."""
        return batch.get("target_feat", batch["feat"]), batch.get("target_text", batch["text"])

    def attach_training_features(self, feat: torch.Tensor, text: torch.Tensor) -> None:
        """(N, D) frozen image features F_I and (N, d) text vectors of the training items (their
        canonical projections under ``train.targets: canonical``), in the order of batch["row"], called once before training (after ``attach_training_set``) for
        methods that build targets over the whole training set (DGCPN); nothing by default."""

    def training_state(self) -> dict:
        memory = getattr(self, "memory", None)
        return memory.state() if memory is not None else {}

    def load_training_state(self, state: dict) -> None:
        memory = getattr(self, "memory", None)
        if memory is not None:
            memory.load_state(state)

    def lr_factor(self, epoch: int, epochs: int) -> float:
        decay_to = getattr(self.cfg, "lr_decay_to", None)
        return 1.0 if decay_to is None else decay_to ** (epoch / max(1, epochs - 1))

    def gather(self, *tensors):
        """All ranks' rows of per-item tensors, in rank order, with gradients (identity in one process)."""
        from ..distributed import gather

        return gather(*tensors)

    def forward(self, batch: dict, phase=None):
        """The training loss (what DistributedDataParallel calls)."""
        return self.loss(batch) if phase is None else self.loss(batch, phase)

    def generators(self) -> dict[str, torch.Generator]:
        """Every torch.Generator the method's modules own (their states are checkpointed)."""
        out = {}
        for name, m in self.named_modules():
            for k, v in vars(m).items():
                if isinstance(v, torch.Generator):
                    out[f"{name}.{k}" if name else k] = v
        return out

    def affine_text(self):
        """(mean, projection) when the text net is the affine map (t - mean) @ projection (CCA-ITQ),
        else None: such a model answers text queries without torch (``search.text_query_code``)."""
        return None

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.img_net(x)

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return self.txt_net(t)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError
