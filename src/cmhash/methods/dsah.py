"""DSAH: Deep Semantic-Alignment Hashing (Yang et al., ICMR 2020), unsupervised.

DJSRH's nets plus two decoders: the image code reconstructs the text vector (Linear K -> d) and
the text code reconstructs the image feature F_I (Linear K -> D). Similarity S = mu (0.9 S_I +
0.1 S_T), mu = 1.5, no second-order term; loss in ``losses.dsah``; SGD with Nesterov momentum
0.7, lr 0.005, weight decay 5e-4, batch 32, 200 epochs.

Decoders and sign(): the authors feed sign(code) to the decoders, so the reconstruction
gradients train the decoders but never reach the hash nets. ``recon_grad="none"`` (the default)
keeps that, to match the reference; ``recon_grad="ste"`` passes them through sign() with a
straight-through estimator (sign forward, identity backward), the usual fix.
The reference picks its best epoch on the query set; our trainer selects on a validation part
of the training set instead.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..codes import sign
from ..losses import dsah_loss, dsah_similarity
from ..models import ImgNet, TxtNet
from ..models.nets import sign_ste
from ..utils import CmhashError
from .base import HashMethod, register_method


@register_method("dsah", distributed=True)
class DSAH(HashMethod):
    """DSAH (ICMR 2020): DJSRH + semantic alignment and cross reconstruction.

    Yang et al., ICMR 2020; the authors' code is followed (module docstring).
    """

    canonical_targets = True

    small = {"img_hidden": 32, "txt_hidden": 32}  # at 4,096 on a 12-d toy set every code collapses to one

    def build(self, cfg):
        if cfg.recon_grad not in ("none", "ste"):
            raise CmhashError(f"dsah recon_grad must be 'none' or 'ste', got {cfg.recon_grad!r}")
        self.img_net = ImgNet(self.img_dim, self.bits, cfg.img_hidden, cfg.img_dropout, self.image_backbone())
        self.txt_net = TxtNet(self.txt_dim, self.bits, cfg.txt_hidden)
        self.dec_img = nn.Linear(self.bits, self.txt_dim)  # image code -> text vector
        self.dec_txt = nn.Linear(self.bits, self.spec.image.dim)  # text code -> image feature F_I

    def _binary(self, code: torch.Tensor) -> torch.Tensor:
        if self.cfg.recon_grad == "ste":
            return sign_ste(code)
        return sign(code).detach()

    def loss(self, batch):
        c = self.cfg
        code_i, code_t = self.img_net(batch["image"]), self.txt_net(batch["text"])  # (b, K) this rank's rows
        recon_i = self.dec_img(self._binary(code_i))  # (b, d)
        recon_t = self.dec_txt(self._binary(code_t))  # (b, D)
        code_i, code_t, recon_i, recon_t, feat, text, t_feat, t_text = self.gather(
            code_i, code_t, recon_i, recon_t, batch["feat"], batch["text"], *self.target_inputs(batch))  # (B, .)
        with torch.no_grad():
            s, s_i, s_t = dsah_similarity(t_feat, t_text, c.mu, c.beta)  # (B, B)
        return dsah_loss(code_i, code_t, s, s_i, s_t, recon_i, text, recon_t, feat, c.mu,
                         c.w_diag, c.w_recon, c.w_sym, c.w_intra)

    def make_optimizer(self):
        c = self.cfg
        return torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum, nesterov=True,
                               weight_decay=c.weight_decay)
