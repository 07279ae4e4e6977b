"""Hashing networks of DJSRH (Su et al., ICCV 2019) and DSAH (Yang et al., ICMR 2020).

Both output relaxed codes ``tanh(alpha * h)`` with ``alpha = sqrt(epoch + 1)`` (DJSRH's
``set_alpha``): the "scaled tanh" that approaches sign() as training goes on.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..codes import sign
from .backbones import Backbone


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign() forward (0 -> +1), identity gradient backward (straight-through estimator)."""
    return x + (sign(x) - x).detach()


class ScaledTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.alpha = 1.0

    def set_epoch(self, epoch: int) -> None:
        self.alpha = math.sqrt(epoch + 1.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha * h)


class ImgNet(nn.Module):
    """Image hashing net.

    - With a ``backbone`` (raw pixels, fine-tuning): backbone features -> Linear(D, K), exactly
      DJSRH's ``ImgNet`` when the backbone is AlexNet (fc7 -> ``fc_encode``).
    - On fixed features (the CPU default: cached backbone features, or a dataset's own features):
      Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden, K). The hidden layer stands in for
      the fc6/fc7 layers DJSRH fine-tunes (its Wiki setting trains only those and ``fc_encode``);
      ``hidden=0`` gives a single linear hash layer.
    """

    def __init__(self, in_dim: int, bits: int, hidden: int = 4096, dropout: float = 0.0,
                 backbone: Backbone | None = None):
        super().__init__()
        self.backbone = backbone
        if backbone is not None:
            in_dim, hidden = backbone.out_dim, 0
        self.encoder = (nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
                        if hidden else nn.Identity())
        self.fc_encode = nn.Linear(hidden or in_dim, bits)
        self.act = ScaledTanh()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            x = self.backbone(self.backbone.preprocess(x))
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K) in (-1, 1)
        return self.act(self.fc_encode(self.features(x)))


class TxtNet(nn.Module):
    """DJSRH's TxtNet: Linear(d, 4096) -> ReLU -> Linear(4096, K) -> scaled tanh (DGCPN's adds
    Dropout before the last layer: ``dropout``)."""

    def __init__(self, in_dim: int, bits: int, hidden: int = 4096, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, bits)
        self.act = ScaledTanh()

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B, K)
        return self.act(self.fc2(self.drop(torch.relu(self.fc1(t)))))
