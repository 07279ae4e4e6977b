"""SSAH: Self-Supervised Adversarial Hashing (Li et al., CVPR 2018), the supervised, adversarial
basis of UDSPH.

A label net (LabNet) learns semantic features and codes from the multi-label vectors; the image
and text nets learn to match them (pairwise likelihood against the LabNet's memorised features
and codes, quantisation, label prediction: ``losses.ssah``) while two discriminators tell the
LabNet's features from each modality's and the modality nets learn to fool them
(``losses.adversarial``). As the authors' ``SSAH.py`` trains, each epoch runs four phases in order:
label net, discriminators, image net, text net; each phase here is one pass over the batches
(the code repeats the label net up to 10 passes, the modality nets up to 15, stopping when the
loss rises). Adam, batch 128; initial learning rates are the code's (label net 10^-2, image net
10^-4.5, text net 10^-3.5, discriminators 10^-3); the code divides them by sqrt(10) per pass, we
decay them exponentially to ``lr_decay_to`` of their start over the run. Memories H (codes) and
F_L (features) of the LabNet over the training set start from N(0, 1), as in the code.
Encoding uses the image and text nets' hash outputs.

Presets depart from the code's rates and weights where it collapses on fixed features (lr 10^-3
for the three nets, beta = delta = 0.01; measured in ``presets/ssah.yaml`` and docs/supervised.md);
fixed input vectors are standardised (``models.InputNorm``). On single-label data with many
classes (under 25 % similar pairs: ``pair_weights: auto``) J weighs similar and dissimilar pairs
equally (HashNet's weighted likelihood, Cao et al. 2017): unweighted, 95 % dissimilar pairs drive
the label net's codes to 0 and every code collapses (UCM-captions, 21 classes, 64 bits: mAP .09
unweighted, .88 / .93 weighted).
"""
from __future__ import annotations

import torch

from ..losses import discriminator_loss, generator_loss, label_similarity, ssah_net_loss
from ..models import Discriminator, ImageEncoder, Memory, SemanticHashNet, lab_net, ssah_txt_net
from ..utils import CmhashError
from .base import HashMethod, register_method

#: below this share of similar training pairs (single-label data with many classes), "auto" pair
#: weights balance the likelihood: unweighted, SSAH's label net collapses there (UCM, 21 classes:
#: codes near 0, mAP 0.09 at 64 bits; see docs/supervised.md)
SPARSE_SIMILARITY = 0.25


@register_method("ssah", supervised=True, memory_per_item=True)
class SSAH(HashMethod):
    """SSAH (CVPR 2018): supervised, label net + adversarial discriminators.

    Li et al., CVPR 2018 (module docstring).
    """

    small = {"hidden": 64, "feat_dim": 32}

    @property
    def phases(self) -> tuple:
        return ("label",) * max(1, self.cfg.label_passes) + ("disc", "image", "text")

    def build(self, cfg):
        if cfg.pair_weights not in ("auto", "balanced", "none"):  # checked before training, not at its first step
            raise CmhashError(f"pair_weights must be auto, balanced or none, got {cfg.pair_weights!r}")
        img_dim, txt_dim, n_labels = self.img_dim, self.txt_dim, self.n_labels
        enc = ImageEncoder(img_dim, self.map_channels, self.image_backbone(), hidden=cfg.hidden, norm=cfg.input_norm)
        self.img_net = SemanticHashNet(enc, enc.out_dim, self.bits, n_labels, cfg.feat_dim)
        self.txt_net = ssah_txt_net(txt_dim, self.bits, n_labels, cfg.hidden, cfg.feat_dim, cfg.input_norm)
        self.lab_net = lab_net(n_labels, self.bits, cfg.hidden, cfg.feat_dim)
        self.dis_img, self.dis_txt = Discriminator(cfg.feat_dim), Discriminator(cfg.feat_dim)
        self.memory = Memory(H=self.bits, FL=cfg.feat_dim)

    def encode_image(self, x):
        return self.img_net(x)[0]

    def encode_text(self, t):
        return self.txt_net(t)[0]

    def _net_loss(self, out, batch, s) -> tuple[torch.Tensor, dict]:
        c, mem = self.cfg, self.memory
        h, f, lab = out
        return ssah_net_loss(h, f, lab, batch["label"], mem.H, mem.FL, s, c.alpha, c.gamma, c.beta, c.eta,
                             self.balanced_pairs)

    @property
    def balanced_pairs(self) -> bool:
        """Whether J weighs similar and dissimilar pairs equally: ``pair_weights`` "balanced", or
        "auto" when fewer than ``SPARSE_SIMILARITY`` of the training pairs are similar."""
        c = self.cfg
        if c.pair_weights != "auto":
            return c.pair_weights == "balanced"
        if getattr(self, "_sparse", None) is None:
            lab = self.train_labels[: 2000]
            self._sparse = bool(label_similarity(lab, lab).mean() < SPARSE_SIMILARITY)
        return self._sparse

    def modality_terms(self, phase: str, out, batch: dict, s: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """SSAH's image or text net objective on that net's ``out`` = (hash, feature, label): the
        shared terms plus fooling its discriminator."""
        loss, parts = self._net_loss(out, batch, s)
        adv = generator_loss((self.dis_img if phase == "image" else self.dis_txt)(out[1]))
        parts["adv"] = adv.item()
        return loss + self.cfg.delta * adv, parts

    def modality_loss(self, phase: str, batch: dict, s: torch.Tensor) -> tuple[torch.Tensor, dict]:
        net = self.img_net if phase == "image" else self.txt_net
        return self.modality_terms(phase, net(batch[phase]), batch, s)

    def loss(self, batch, phase="label"):
        s = label_similarity(batch["label"], self.train_labels)  # (B, N)
        if phase == "label":
            out = self.lab_net(batch["label"])
            self.memory.write("H", batch["row"], out[0])  # the code writes the batch's rows first
            self.memory.write("FL", batch["row"], out[1])
            return self._net_loss(out, batch, s)
        if phase == "disc":
            with torch.no_grad():
                f_i, f_t, f_l = (self.img_net(batch["image"])[1], self.txt_net(batch["text"])[1],
                                 self.lab_net(batch["label"])[1])
            loss = discriminator_loss([self.dis_img(f_l), self.dis_txt(f_l)], [self.dis_img(f_i), self.dis_txt(f_t)])
            return loss, {"disc": loss.item()}
        if phase in ("image", "text"):
            return self.modality_loss(phase, batch, s)
        raise ValueError(f"unknown SSAH phase {phase!r}")

    def make_optimizer(self):
        c = self.cfg
        dis = list(self.dis_img.parameters()) + list(self.dis_txt.parameters())
        return {"label": torch.optim.Adam(self.lab_net.parameters(), lr=c.lr_lab),
                "disc": torch.optim.Adam(dis, lr=c.lr_dis),
                "image": torch.optim.Adam(self.img_net.parameters(), lr=c.lr_img),
                "text": torch.optim.Adam(self.txt_net.parameters(), lr=c.lr_txt)}
