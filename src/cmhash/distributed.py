"""Data-parallel training on PyTorch's engine: ``torchrun --nproc-per-node N -m cmhash train ...``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; ``init_from_env``
joins the process group (gloo on CPU, NCCL on CUDA, one GPU per local rank). The trainer then
gives rank r the r-th contiguous slice of every global batch (all ranks draw the same
permutation), wraps the method in ``DistributedDataParallel`` (gradients averaged) and lets only
rank 0 write files.

Methods whose loss compares every pair of a batch (DJSRH's S, DSAH's and DSPRH's targets) call
``gather`` on their per-item tensors: an all_gather that keeps gradients, so every rank computes
the single-process loss of the global batch. Its backward sums each rank's gradient for the local
slice (W times the single-process gradient, W ranks computing the same loss) and DDP's average
divides by W: the update equals the single-process update on the global batch, up to the order of
floating-point sums.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from .utils import CmhashError


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; returns the device this rank should use."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise CmhashError("this torch build has no torch.distributed: cannot run under torchrun")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return device


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. writes a feature cache), the others after it."""
    rank, size = world()
    if size > 1 and rank != 0:
        dist.barrier()
    yield
    if size > 1 and rank == 0:
        dist.barrier()


def gather(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
    """Concatenate every rank's tensors along dim 0 in rank order, with gradients flowing back to
    each rank's own slice; the tensors themselves outside a process group."""
    if world()[1] == 1:
        return tensors if len(tensors) > 1 else tensors[0]
    from torch.distributed.nn.functional import all_gather

    out = tuple(torch.cat(all_gather(t.contiguous()), 0) if t.requires_grad else _gather_nograd(t) for t in tensors)
    return out if len(out) > 1 else out[0]


def _gather_nograd(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(world()[1])]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, 0)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
