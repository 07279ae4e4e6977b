"""Per-item memories of the training set, as DCMH and SSAH keep them (``F``, ``G``, ``H``, label
features): one row per training item, written with a batch's detached outputs and read whole by
the pairwise terms, which compare a batch with every training item.

The rows live in non-persistent buffers: a model's ``state_dict`` (what encoding needs) stays free
of them, and the trainer saves them beside it (``training_state``) so a killed run resumes
exactly. DCMH and SSAH start them from N(0, 1), as their code does (``np.random.randn``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..utils import CmhashError


class Memory(nn.Module):
    def __init__(self, **dims: int):
        super().__init__()
        self.dims = dict(dims)
        for name in dims:
            self.register_buffer(name, torch.empty(0, dims[name]), persistent=False)

    def attach(self, n: int) -> None:
        """Allocate ``n`` rows per memory, drawn from N(0, 1) with the global (seeded) generator."""
        for name, d in self.dims.items():
            dev = getattr(self, name).device
            setattr(self, name, torch.randn(n, d).to(dev))

    def __len__(self) -> int:
        return len(getattr(self, next(iter(self.dims)))) if self.dims else 0

    def write(self, name: str, rows: torch.Tensor, values: torch.Tensor) -> None:
        getattr(self, name)[rows] = values.detach().to(getattr(self, name).dtype)

    def state(self) -> dict:
        return {name: getattr(self, name).detach().cpu().clone() for name in self.dims}

    def load_state(self, state: dict) -> None:
        for name in self.dims:
            if name not in state:
                raise CmhashError(f"checkpoint lacks the training memory {name!r}")
            dev = getattr(self, name).device
            setattr(self, name, state[name].to(dev))
