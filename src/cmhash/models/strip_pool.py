"""Strip pooling block (Hou, Zhang, Cheng, Feng, "Strip Pooling: Rethinking Spatial Pooling for
Scene Parsing", CVPR 2020, section 3.1 and Figure 2), the "SPNet block" of DSPRH section 3.2.

For X (B, C, H, W):

    y_h = BN(Conv_{3x1}(AvgPool_{H x 1}(X)))      (B, C, H, 1)   a column strip per row
    y_w = BN(Conv_{1x3}(AvgPool_{1 x W}(X)))      (B, C, 1, W)   a row strip per column
    y   = y_h expanded + y_w expanded              (B, C, H, W)   rank-1 in space per channel
    out = X * sigmoid(Conv_{1x1}(ReLU(y)))                         gating of the input

DSPRH calls this the rank-1 tensor (CP-decomposition) context module: y is, per channel, the
outer sum of a row and a column profile. The strip convolutions are 3x1 / 1x3 over the pooled
strips, as in SPNet's released ``StripPooling`` block.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class StripPooling(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_h = nn.Sequential(nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False),
                                    nn.BatchNorm2d(channels))
        self.conv_w = nn.Sequential(nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False),
                                    nn.BatchNorm2d(channels))
        self.fuse = nn.Conv2d(channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map sigmoid(...) in (0, 1), (B, C, H, W)."""
        _, _, h, w = x.shape
        y_h = self.conv_h(x.mean(dim=3, keepdim=True))  # (B, C, H, 1)
        y_w = self.conv_w(x.mean(dim=2, keepdim=True))  # (B, C, 1, W)
        y = y_h.expand(-1, -1, h, w) + y_w.expand(-1, -1, h, w)  # (B, C, H, W)
        return torch.sigmoid(self.fuse(torch.relu(y)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return x * self.gate(x)
