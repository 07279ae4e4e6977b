"""DGCPN: Deep Graph-neighbor Coherence Preserving Network (Yu, Zhou, Zhan, Tao, AAAI
2021), unsupervised.

As the authors' code (``train_div.py``, ``models.py``) does: the similarity S over the whole
training set, computed once from frozen image features and text vectors (``losses.dgcpn``); image
net D -> 4096 -> K and text net d -> 4096 -> K, each ReLU -> Dropout(0.5) -> Linear -> tanh (the
code comments out the scaled tanh: alpha stays 1; the text hash layer starts from N(0, 0.3^2));
SGD (momentum 0.9, weight decay 5e-4), lr 0.005, batch 32, 100 epochs, K = 1.5, dw = cw = 1,
a1 = 0.01, a2 = 0.3, k = 2,000 neighbours of 5,000 (``knn`` 0.4).

One departure: the code makes three SGD steps per batch (both nets on the loss; then the image
net with the text codes binarised, sign(code_T) detached; then the text net with sign(code_I)).
We take one step on the sum of the three losses, each with the same detaching, so each net gets
the same three gradients at the batch's weights (the sequential steps differ from this in the
second order of the learning rate), and the step fits the one trainer and data-parallel training.
"""
from __future__ import annotations

import torch

from ..codes import sign
from ..losses import dgcpn_loss, dgcpn_similarity
from ..models import ImgNet, TxtNet
from .base import HashMethod, register_method


@register_method("dgcpn", distributed=True)
class DGCPN(HashMethod):
    """DGCPN (AAAI 2021): unsupervised, graph-neighbour coherence over the training set.

    Yu et al., AAAI 2021; the authors' code is followed (module docstring).
    """

    canonical_targets = True

    small = {"img_hidden": 32, "txt_hidden": 32}

    def build(self, cfg):
        self.img_net = ImgNet(self.img_dim, self.bits, cfg.img_hidden, cfg.dropout, self.image_backbone())
        self.txt_net = TxtNet(self.txt_dim, self.bits, cfg.txt_hidden, cfg.dropout)
        torch.nn.init.normal_(self.txt_net.fc2.weight, 0.0, cfg.txt_init_std)
        self.register_buffer("S", torch.empty(0, 0), persistent=False)  # (N, N) over the training set

    def set_epoch(self, epoch: int) -> None:
        """The code keeps tanh's alpha at 1 (its set_alpha calls are commented out)."""

    def attach_training_features(self, feat: torch.Tensor, text: torch.Tensor) -> None:
        c = self.cfg
        self.S = dgcpn_similarity(feat, text, c.knn, c.a1, c.a2, c.scale_per_neighbour)

    def loss(self, batch):
        c = self.cfg
        code_i, code_t = self.img_net(batch["image"]), self.txt_net(batch["text"])  # (b, K) this rank's rows
        code_i, code_t, rows = self.gather(code_i, code_t, batch["row"])  # (B, .) global batch
        s = self.S[rows][:, rows]  # (B, B)
        joint, parts = dgcpn_loss(code_i, code_t, s, c.k, c.dw, c.cw)
        img, _ = dgcpn_loss(code_i, sign(code_t).detach(), s, c.k, c.dw, c.cw)
        txt, _ = dgcpn_loss(sign(code_i).detach(), code_t, s, c.k, c.dw, c.cw)
        return joint + img + txt, {**parts, "img": img.item(), "txt": txt.item()}

    def make_optimizer(self):
        c = self.cfg
        return torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
