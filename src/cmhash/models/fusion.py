"""DSPRH's image feature space (section 3.2, Figure 3): three features, weighted and fused.

    f3 = fc7                                      (the pooled branch)
    f2 = ReLU(fc(iSQRT-COV(conv5)))               (channel semantics, second-order)
    f1 = ReLU(fc(iSQRT-COV(SP(conv5))))           (strip-pooling context, then second-order)
    F_I = w1 f1 + w2 f2 + w3 f3,   w1 = w2        (the fusion layer; 0.25/0.25/0.5 MIRFlickr,
                                                   0.125/0.125/0.75 NUS-WIDE)

Where "conv5" and "fc7" come from, by input:
- raw pixels with a backbone (fine-tuning): ``backbone.feature_map`` plays conv5 (AlexNet conv5,
  ResNet-34 layer4, EfficientNet-Lite0's head conv) and ``backbone.pool`` of that map plays fc7
  (AlexNet's real fc7; the global average for the other two), ``feat_dim`` = its width.
- cached conv maps of a frozen backbone (the CPU default): f3 = ReLU(Linear(GAP(map))) stands in
  for the fc6/fc7 layers DSPRH fine-tunes (GAP of the map is exactly the pooled feature of
  EfficientNet-Lite0 and ResNet-34).
- a dataset of fixed feature vectors (Wiki's SIFT bag of words): there is no conv map, so f1 and
  f2 cannot exist: the fusion degenerates to F_I = f3 = ReLU(Linear(x)) (w3 = 1).

``map_dim`` reduces the map's channels first (1x1 conv + BN + ReLU, shared by both map branches)
when the backbone's map is wider (EfficientNet-Lite0: 1280 -> 256), so that strip pooling stays
cheap; each iSQRT-COV then reduces to ``cov_dim`` channels, giving cov_dim (cov_dim + 1) / 2
values.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbones import Backbone
from .isqrt_cov import ISqrtCov
from .strip_pool import StripPooling


class FusionImageFeatures(nn.Module):
    def __init__(self, in_dim: int, map_channels: int, feat_dim: int = 4096, weights=(0.25, 0.25, 0.5),
                 map_dim: int = 256, cov_dim: int = 128, cov_iters: int = 5, strip: bool = True,
                 dropout: float = 0.0, backbone: Backbone | None = None):
        super().__init__()
        self.backbone = backbone
        if backbone is not None:
            map_channels, feat_dim = backbone.map_channels, backbone.out_dim
        self.w1, self.w2, self.w3 = (float(w) for w in weights)
        self.use_map = map_channels > 0 and (self.w1 > 0 or self.w2 > 0)
        self.out_dim = feat_dim
        if backbone is None:
            self.f3 = nn.Sequential(nn.Linear(map_channels if map_channels else in_dim, feat_dim),
                                    nn.ReLU(inplace=True), nn.Dropout(dropout))
        if self.use_map:
            if map_dim and map_channels > map_dim:
                self.reduce = nn.Sequential(nn.Conv2d(map_channels, map_dim, 1, bias=False), nn.BatchNorm2d(map_dim),
                                            nn.ReLU(inplace=True))
                c = map_dim
            else:
                self.reduce, c = nn.Identity(), map_channels
            if self.w2 > 0:
                self.cov2 = ISqrtCov(c, cov_dim, cov_iters)
                self.fc2 = nn.Sequential(nn.Linear(self.cov2.out_dim, feat_dim), nn.ReLU(inplace=True))
            if self.w1 > 0:
                self.strip = StripPooling(c) if strip else nn.Identity()
                self.cov1 = ISqrtCov(c, cov_dim, cov_iters)
                self.fc1 = nn.Sequential(nn.Linear(self.cov1.out_dim, feat_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W) uint8 | conv maps (B, C, h, w) | features (B, D) -> F_I (B, feat_dim)."""
        if self.backbone is not None:
            fmap = self.backbone.feature_map(self.backbone.preprocess(x))  # (B, C, h, w)
            f3 = self.backbone.pool(fmap)  # (B, D)
        elif x.dim() == 4:
            fmap = x.float()
            f3 = self.f3(fmap.mean(dim=(2, 3)))
        else:
            return self.f3(x)  # no conv map: F_I = f3
        if not self.use_map:
            return f3
        m = self.reduce(fmap)
        out = self.w3 * f3
        if self.w2 > 0:
            out = out + self.w2 * self.fc2(self.cov2(m))
        if self.w1 > 0:
            out = out + self.w1 * self.fc1(self.cov1(self.strip(m)))
        return out
