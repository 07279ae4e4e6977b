"""DCMH: Deep Cross-Modal Hashing (Jiang and Li, CVPR 2017), the supervised pairwise baseline.

As the authors' PyTorch code (``DCMH_pytorch``) trains it, per epoch:

1. image phase: for each batch, F[batch] <- the image net's outputs; a step on ``dcmh_loss``
   (likelihood against the text memory G, quantisation to B, bit balance of F);
2. text phase: the same for the text net against F;
3. B = sign(gamma (F + G)) (here at the start of the next epoch, which is the same point).

F, G start from N(0, 1) and B = sign(F + G), as in the code. SGD without momentum, one optimiser
per net, the learning rate falling linearly from 10^-1.5 towards 10^-6 over the run
(``np.linspace(lr, 1e-6, epochs + 1)[epoch + 1]``), batch 128, gamma = eta = 1. Nets: see
``models.supervised_nets`` (CNN-F -> K outputs on pixels; on fixed features an MLP head stands in
for the fc6/fc7 layers it fine-tunes). Relevance: items sharing a label.
"""
from __future__ import annotations

import torch

from ..codes import sign
from ..losses import dcmh_loss, label_similarity
from ..models import ImageEncoder, Memory, MLPHash
from ..models.supervised_nets import input_norm
from .base import HashMethod, register_method


@register_method("dcmh", supervised=True, memory_per_item=True)
class DCMH(HashMethod):
    """DCMH (CVPR 2017): supervised, pairwise likelihood + quantisation + balance.

    Jiang and Li, CVPR 2017 (module docstring).
    """

    small = {"img_hidden": 64, "txt_hidden": 64}

    phases = ("image", "text")

    def build(self, cfg):
        backbone = self.image_backbone()
        enc = ImageEncoder(self.img_dim, self.map_channels, backbone, hidden=0, norm=cfg.input_norm)
        self.img_net = MLPHash(enc.out_dim, self.bits, 0 if backbone is not None else cfg.img_hidden, enc)
        self.txt_net = MLPHash(self.txt_dim, self.bits, cfg.txt_hidden, input_norm(self.txt_dim, cfg.input_norm))
        self.memory = Memory(F=self.bits, G=self.bits)
        self.register_buffer("B", torch.empty(0, self.bits), persistent=False)

    def attach_training_set(self, labels: torch.Tensor) -> None:
        super().attach_training_set(labels)
        self._update_codes()

    def _update_codes(self) -> None:
        total = self.cfg.gamma * (self.memory.F + self.memory.G)
        self.B = sign(total)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if len(self.memory):
            self._update_codes()

    def training_state(self) -> dict:
        return {**super().training_state(), "B": self.B.detach().cpu().clone()}  # B is the epoch's, not F+G's now

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        if "B" in state:
            self.B = state["B"].to(self.memory.F.device)
        else:
            self._update_codes()

    def lr_factor(self, epoch: int, epochs: int) -> float:
        c = self.cfg
        return (c.lr + (c.lr_end - c.lr) * (epoch + 1) / epochs) / c.lr

    def loss(self, batch, phase="image"):
        c, mem, rows = self.cfg, self.memory, batch["row"]
        s = label_similarity(batch["label"], self.train_labels)  # (B, N)
        if phase == "image":
            cur, mine, other = self.img_net(batch["image"]), "F", mem.G  # (B, K)
        elif phase == "text":
            cur, mine, other = self.txt_net(batch["text"]), "G", mem.F
        else:
            raise ValueError(f"unknown DCMH phase {phase!r}")
        mem.write(mine, rows, cur)
        own = getattr(mem, mine)
        rest_sum = own.sum(0) - own[rows].sum(0)  # (K,) the rows not in this batch
        return dcmh_loss(cur, other, s, self.B[rows], rest_sum, c.gamma, c.eta)

    def make_optimizer(self):
        c = self.cfg
        return {"image": torch.optim.SGD(self.img_net.parameters(), lr=c.lr, weight_decay=c.weight_decay),
                "text": torch.optim.SGD(self.txt_net.parameters(), lr=c.lr, weight_decay=c.weight_decay)}
