"""UCCH: Unsupervised Contrastive Cross-modal Hashing (Hu, Zhu, Lin, Peng, Zhao, Peng, TPAMI
2023), unsupervised.

As the authors' code (``UCCH.py``, ``NCE/``, ``nets/``) does on fixed features: image net an MLP
of ``img_layers`` linear layers (3: D -> h -> h -> K), text net of ``txt_layers`` (2: d -> h -> K),
ReLU between, tanh, then L2-normalised rows (h = 8,192 in the code); a memory bank v (N, K) of
every training item, started from normalised random signs; per batch the contrastive hashing loss
against sgn(v) of the item and of K_neg = 4,096 uniformly drawn items (with replacement), and the
cross-modal ranking loss (``losses.ucch``), L = beta L_c + (1 - beta) L_r with beta 0.9; then
v_i <- normalise(d v_i + (1 - d) normalise((h_x,i + h_y,i) / 2)), d = 0.4. For the first
``warmup_epochs`` (1) the keys are the batch's own (h_x + h_y) / 2 (the others in the batch are the
negatives) and d = 0 (the code's ``epoch - warmup < 0`` branch). Adam, lr 1e-4, weight decay 1e-6,
gradients clipped to norm 1, lr x 0.1 every ``lr_step`` epochs (30: the code's milestones 30, 60, 90), batch 256, 100 epochs.

The memory is per item, so data-parallel training is not supported (as for DCMH and SSAH).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import contrastive_hashing_loss, cross_modal_ranking_loss
from ..models import Memory
from ..utils import CmhashError
from .base import HashMethod, register_method


class UCCHNet(nn.Module):
    """``layers`` linear layers (in -> hidden ... -> bits) with ReLU between, tanh, unit rows."""

    def __init__(self, in_dim: int, bits: int, hidden: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [bits]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.ReLU(inplace=True))
        self.fc = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K), unit rows
        return F.normalize(torch.tanh(self.fc(x)), dim=1)


@register_method("ucch", memory_per_item=True)
class UCCH(HashMethod):
    """UCCH (TPAMI 2023): unsupervised, contrastive hashing on a memory bank + cross-modal ranking.

    Hu et al., TPAMI 2023; the authors' code is followed (module docstring).
    """

    canonical_targets = True

    small = {"hidden": 32, "negatives": 16}

    clip_grad_norm = 1.0

    def build(self, cfg):
        bb = self.image_backbone()
        if bb is not None:
            self.img_net = nn.Sequential(_Backbone(bb), UCCHNet(bb.out_dim, self.bits, cfg.hidden, cfg.img_layers))
        else:
            self.img_net = UCCHNet(self.img_dim, self.bits, cfg.hidden, cfg.img_layers)
        self.txt_net = UCCHNet(self.txt_dim, self.bits, cfg.hidden, cfg.txt_layers)
        self.memory = Memory(v=self.bits)
        self.sampler = torch.Generator().manual_seed(0)
        self.epoch = 0

    def attach_training_set(self, labels: torch.Tensor) -> None:
        super().attach_training_set(labels)
        self.memory.v = F.normalize(torch.sign(self.memory.v), dim=1)  # the code's start

    def attach_training_features(self, feat: torch.Tensor, text: torch.Tensor) -> None:
        """Under ``train.targets: canonical`` the memory starts from the items' canonical codes,
        sgn((u_i + v_i) / 2) normalised (u, v the image and text projections, one direction a bit),
        instead of random signs: the first keys are what CCA knows. Where the canonical space has
        fewer directions than bits, the other bits are random hyperplanes of it, as CCA-ITQ's are."""
        if self.targets != "canonical":
            return
        z = (feat + text) / 2  # (N, c)
        c = z.shape[1]
        if c > self.bits:
            raise CmhashError(f"ucch starts its memory from {self.bits}-bit canonical codes, but the canonical space "
                              f"has {c} directions (set train.canonical_dims to 0 or at most {self.bits})")
        if c < self.bits:
            planes = torch.randn(c, self.bits - c, generator=torch.Generator().manual_seed(0)).to(z)
            z = torch.cat([z, z @ planes], 1)  # (N, K)
        self.memory.v = F.normalize(torch.sign(z), dim=1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def lr_factor(self, epoch: int, epochs: int) -> float:
        return 0.1 ** (epoch // self.cfg.lr_step) if self.cfg.lr_step > 0 else 1.0

    def keys(self, h_img: torch.Tensor, h_txt: torch.Tensor, rows: torch.Tensor, warm: bool) -> torch.Tensor:
        """(B, 1 + K_neg, K) signed keys: each item's own first, then its negatives."""
        b = len(rows)
        if warm:  # in-batch: own mean output, then the other items of the batch
            w = ((h_img + h_txt) / 2).detach()  # (B, K)
            others = torch.stack([torch.cat([torch.arange(i), torch.arange(i + 1, b)]) for i in range(b)])
            idx = torch.cat([torch.arange(b).unsqueeze(1), others], 1).to(w.device)  # (B, B)
            return torch.sign(w[idx])
        neg = torch.randint(len(self.memory), (b, self.cfg.negatives), generator=self.sampler).to(rows.device)
        idx = torch.cat([rows.unsqueeze(1), neg], 1)  # (B, 1 + K_neg)
        return torch.sign(self.memory.v[idx])

    def loss(self, batch):
        c, rows = self.cfg, batch["row"]
        h_i, h_t = self.img_net(batch["image"]), self.txt_net(batch["text"])  # (B, K) unit rows
        warm = self.epoch < c.warmup_epochs
        l_c, parts = contrastive_hashing_loss(h_i, h_t, self.keys(h_i, h_t, rows, warm), c.t)
        l_r, rparts = cross_modal_ranking_loss(h_i, h_t, c.margin, c.shift, c.kappa)
        with torch.no_grad():  # Eq. 5: the momentum update of the memory bank
            d = 0.0 if warm else c.momentum
            mean = F.normalize((h_i + h_t) / 2, dim=1)
            self.memory.write("v", rows, F.normalize(d * self.memory.v[rows] + (1 - d) * mean, dim=1))
        total = c.beta * l_c + (1 - c.beta) * l_r
        return total, {"contrastive": l_c.item(), "ranking": l_r.item(), **parts, **rparts}

    def make_optimizer(self):
        c = self.cfg
        return torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)


class _Backbone(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(self.backbone.preprocess(x))
