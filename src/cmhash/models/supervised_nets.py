"""Networks of the supervised baselines.

SSAH (Li et al., CVPR 2018; the authors' ``tnet.py``): every net ends in the same heads,

    encoder -> Linear(., 512) -> ReLU = feature F  -> [LRN] -> Linear(512, K) -> tanh    = hash H
                                                            -> Linear(512, C) -> sigmoid = label

- LabNet: multi-hot labels (B, C) -> Linear(C, 4096) -> ReLU -> LRN -> heads.
- ImgNet: CNN-F fc7 (4096) -> heads. On fixed features (the CPU default) Linear(D, 4096) -> ReLU
  stands in for the fc6/fc7 it fine-tunes, as DJSRH's ImgNet does here; with a backbone the
  backbone's pooled output feeds the heads.
- TxtNet: the multi-scale text fusion (``MultiScaleText``) -> Linear(6d, 4096) -> ReLU -> LRN ->
  heads (with LRN before the hash and label layers).
- Discriminator: Linear(512, 512) -> ReLU -> Linear(512, 256) -> ReLU -> Linear(256, 1) (a logit).

TensorFlow's LRN (depth_radius 2, bias 2, alpha 1e-4, beta .75) is torch's LocalResponseNorm
with size 5 and alpha 5e-4 (torch divides alpha by the size).

DCMH (Jiang and Li, CVPR 2017): the image net is CNN-F with fc8 -> K outputs (here
Linear(D, hidden) -> ReLU -> Linear(hidden, K) on fixed features); the text net is
Linear(d, 8192) -> ReLU -> Linear(8192, K). Both outputs are linear (no tanh).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import Backbone


class LRN(nn.Module):
    """TensorFlow's local response normalisation over the features of (B, D) vectors."""

    def __init__(self):
        super().__init__()
        self.lrn = nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrn(x.unsqueeze(-1)).squeeze(-1)


class InputNorm(nn.BatchNorm1d):
    """Standardise fixed input vectors per dimension with running statistics (a BatchNorm without
    affine parameters). Fixed features come at any scale (Wiki's SIFT and LDA histograms sum to 1,
    so every entry is ~0.01 and a fresh linear layer sees only its bias); networks fine-tuned from
    pixels never face that. The supervised methods put it in front of their vector inputs
    (``input_norm``, on by default)."""

    def __init__(self, dim: int):
        super().__init__(dim, affine=False)


def input_norm(dim: int, on: bool = True) -> nn.Module:
    return InputNorm(dim) if on else nn.Identity()


class ImageEncoder(nn.Module):
    """The image input in its three modes -> a global vector (B, out_dim):
    pooled features (B, D); cached conv maps (B, C, h, w) (global average first); uint8 pixels
    through a ``backbone`` (fine-tuning). ``split(x)`` also gives the conv map's cells as (B, h*w, C)
    tokens when there is a map. ``norm``: standardise the global vector (``InputNorm``) when it is
    a fixed feature (not under a trained backbone)."""

    def __init__(self, in_dim: int, map_channels: int = 0, backbone: Backbone | None = None, hidden: int = 4096,
                 norm: bool = False):
        super().__init__()
        self.backbone = backbone
        if backbone is not None:
            self.norm = nn.Identity()
            self.region_dim, self.body, self.out_dim = backbone.map_channels, nn.Identity(), backbone.out_dim
        else:
            d = map_channels or in_dim
            self.norm = input_norm(d, norm)
            self.region_dim = map_channels
            self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(inplace=True)) if hidden else nn.Identity()
            self.out_dim = hidden or d

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (global input (B, D'), region tokens (B, R, C) or None)."""
        if self.backbone is not None:
            fmap = self.backbone.feature_map(self.backbone.preprocess(x))
            return self.backbone.pool(fmap), fmap.flatten(2).transpose(1, 2)
        if x.dim() == 4:
            x = x.float()
            return self.norm(x.mean(dim=(2, 3))), x.flatten(2).transpose(1, 2)
        return self.norm(x), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.split(x)[0])


class MultiScaleText(nn.Module):
    """SSAH's ``MultiScaleTxt``: average-pool the bag of words with windows 5 x (10, 6, 3, 2, 1)
    (clamped to the vocabulary size d), scale each by a learned scalar (a 1x1 conv), ReLU, resize
    back to d (linear interpolation) and stack with the input: (B, d) -> (B, 6 d)."""

    LEVELS = (10, 6, 3, 2, 1)

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.windows = [max(1, min(5 * lv, dim)) for lv in self.LEVELS]
        self.scale = nn.Parameter(torch.randn(len(self.LEVELS)) * 0.01)
        self.out_dim = dim * (1 + len(self.LEVELS))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.unsqueeze(1)  # (B, 1, d)
        outs = [t]
        for j, w in enumerate(self.windows):
            p = F.relu(F.avg_pool1d(x, w, w) * self.scale[j])  # (B, 1, d // w)
            outs.append(F.interpolate(p, size=self.dim, mode="linear", align_corners=False).squeeze(1))
        return torch.cat(outs, dim=1)


class SemanticHashNet(nn.Module):
    """SSAH's heads over an encoder: x -> (hash (B, K) in (-1, 1), feature (B, F), label (B, C))."""

    def __init__(self, encoder: nn.Module, enc_dim: int, bits: int, n_labels: int, feat_dim: int = 512,
                 lrn_out: bool = False):
        super().__init__()
        self.encoder = encoder
        self.feature = nn.Sequential(nn.Linear(enc_dim, feat_dim), nn.ReLU(inplace=True))
        self.norm = LRN() if lrn_out else nn.Identity()
        self.hash = nn.Linear(feat_dim, bits)
        self.label = nn.Linear(feat_dim, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.encoder(x))

    def heads(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's output (B, enc_dim) -> (hash, feature, label)."""
        f = self.feature(z)  # (B, F)
        n = self.norm(f)
        return torch.tanh(self.hash(n)), f, torch.sigmoid(self.label(n))


def lab_net(n_labels: int, bits: int, hidden: int = 4096, feat_dim: int = 512) -> SemanticHashNet:
    enc = nn.Sequential(nn.Linear(n_labels, hidden), nn.ReLU(inplace=True), LRN())
    return SemanticHashNet(enc, hidden, bits, n_labels, feat_dim)


def ssah_txt_net(txt_dim: int, bits: int, n_labels: int, hidden: int = 4096, feat_dim: int = 512,
                 norm: bool = False) -> SemanticHashNet:
    ms = MultiScaleText(txt_dim)
    enc = nn.Sequential(input_norm(txt_dim, norm), ms, nn.Linear(ms.out_dim, hidden), nn.ReLU(inplace=True), LRN())
    return SemanticHashNet(enc, hidden, bits, n_labels, feat_dim, lrn_out=True)


class Discriminator(nn.Module):
    """SSAH's modality discriminator: feature (B, F) -> logit (B,) that it came from the LabNet."""

    def __init__(self, feat_dim: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feat_dim, 512), nn.ReLU(inplace=True), nn.Linear(512, 256),
                                 nn.ReLU(inplace=True), nn.Linear(256, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(-1)


class MLPHash(nn.Module):
    """DCMH's nets on vectors: Linear(D, hidden) -> ReLU -> Linear(hidden, K), linear outputs
    (hidden = 0: one linear layer). ``encoder`` (e.g. ``ImageEncoder`` with hidden=0) comes first."""

    def __init__(self, in_dim: int, bits: int, hidden: int, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder or nn.Identity()
        self.net = (nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, bits))
                    if hidden else nn.Linear(in_dim, bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(x))
