"""A method defined in a test file, with no list edited anywhere: registering it here is all it takes
for the registry-wide tests (``tests/test_registries.py``, which loop at run time) to train, score
and reload it beside the built-in ones."""
from dataclasses import dataclass

import torch

from cmhash.methods.base import HashMethod
from cmhash.registry import METHODS, register_method


@dataclass
class PairConfig:
    lr: float = 0.01


@register_method("test-pairs")
class PairHash(HashMethod):
    """A linear hash layer per modality, paired items aligned by cosine (a test file's method)."""

    Config = PairConfig

    def build(self, cfg):
        self.img_net = torch.nn.Linear(self.img_dim, self.bits)  # (B, D) -> (B, K)
        self.txt_net = torch.nn.Linear(self.txt_dim, self.bits)  # (B, d) -> (B, K)

    def loss(self, batch):
        hi, ht = torch.tanh(self.img_net(batch["image"])), torch.tanh(self.txt_net(batch["text"]))  # (B, K)
        align = 1 - torch.nn.functional.cosine_similarity(hi, ht).mean()  # paired items point the same way
        quant = ((hi.abs() - 1) ** 2).mean() + ((ht.abs() - 1) ** 2).mean()  # outputs near +-1
        loss = align + 0.1 * quant
        return loss, {"align": align.item(), "quant": quant.item()}

    def make_optimizer(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)


def test_the_registry_holds_it():
    assert "test-pairs" in METHODS.names() and METHODS.get("test-pairs").name == "test-pairs"
