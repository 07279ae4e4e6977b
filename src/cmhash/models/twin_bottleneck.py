"""Twin-bottleneck reconstruction layer (Shen et al., "Auto-Encoding Twin-Bottleneck Hashing",
CVPR 2020, section 3), DSPRH's "feature reconstruction layer" (section 3.3):

    h = Enc(F)                      = ReLU(W_e F)                          (B, enc_dim)
    b = Cod(h)                      = tanh(alpha W_b h)   the hash code    (B, K)
    z = sigmoid(W_z h)              the continuous bottleneck              (B, cont_dim)
    A = ((1 + sgn(b) sgn(b)^T / K) / 2)^p = (1 - Ham(b_i, b_j) / K)^p,  p = 1.4
    z' = ReLU(D^-1/2 A D^-1/2 z W_g)    graph convolution over the batch  (B, cont_dim)
    x^ = Dec(z') = W_2 ReLU(W_1 z')     the other modality's feature space (B, out_dim)

sgn is sign() with a straight-through gradient (TBH uses a stochastic binary neuron with a
straight-through estimator; we use the deterministic sign so encoding is reproducible), so the
reconstruction error trains the code layer through the adjacency. ``graph=False`` drops the
graph convolution (a plain auto-encoder on z) for ablation; ``reconstruct=False`` keeps only the
encoder and the code layer (no bottleneck or decoder is built).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .nets import ScaledTanh, sign_ste


def hamming_adjacency(code: torch.Tensor, power: float = 1.4) -> torch.Tensor:
    """(B, K) relaxed codes -> (B, B) TBH adjacency (1 - Ham(sgn b_i, sgn b_j) / K)^power."""
    b = sign_ste(code)
    k = code.shape[1]
    return ((1.0 + b @ b.T / k) / 2.0).clamp_min(0.0).pow(power)


def normalized_adjacency(a: torch.Tensor) -> torch.Tensor:
    d = a.sum(dim=1).clamp_min(1e-12).rsqrt()  # (B,)
    return d[:, None] * a * d[None, :]


class TwinBottleneck(nn.Module):
    def __init__(self, in_dim: int, bits: int, out_dim: int, enc_dim: int = 1024, cont_dim: int = 512,
                 dec_dim: int = 1024, graph: bool = True, power: float = 1.4, reconstruct: bool = True):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(in_dim, enc_dim), nn.ReLU(inplace=True)) if enc_dim else nn.Identity()
        width = enc_dim or in_dim
        self.hash = nn.Linear(width, bits)
        self.act = ScaledTanh()
        self.power, self.reconstruct = power, reconstruct
        if not reconstruct:
            return
        self.cont = nn.Sequential(nn.Linear(width, cont_dim), nn.Sigmoid())
        self.gcn = nn.Linear(cont_dim, cont_dim) if graph else None
        self.dec = nn.Sequential(nn.Linear(cont_dim, dec_dim), nn.ReLU(inplace=True), nn.Linear(dec_dim, out_dim))

    def code(self, f: torch.Tensor) -> torch.Tensor:  # (B, K) in (-1, 1)
        return self.act(self.hash(self.enc(f)))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_dim) -> (code (B, K), reconstruction (B, out_dim))."""
        if not self.reconstruct:
            raise RuntimeError("this twin bottleneck was built without its decoder (reconstruct=False)")
        h = self.enc(f)
        code = self.act(self.hash(h))
        z = self.cont(h)  # (B, cont_dim)
        if self.gcn is not None:
            z = torch.relu(normalized_adjacency(hamming_adjacency(code, self.power)) @ self.gcn(z))
        return code, self.dec(z)
