"""Data-parallel steps across the ranks of a ``torchrun`` job (``run.world_size`` > 1).

Each rank computes the summed loss of its shard of the window; the window's supervised
token count, the loss and every adapter gradient are summed over the ranks (all-reduce, the
collective DDP uses: gloo on CPU, nccl on GPUs), and each rank divides by the *global* token
count. So N ranks at micro-batch B take exactly the step one process takes at N x B: the
same rows (the loader's shards interleave the one shuffled order), the same normalisation,
the same gradient on every rank, hence the same clipped update and identical adapters.
(DDP's own averaging divides each rank's mean by N, which equals this only when every rank
holds the same number of supervised tokens.)

Imported when a run starts (it imports torch).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def world_size(run) -> int:
    return int(getattr(run, "world_size", 1) or 1)


def is_main(run) -> bool:
    return bool(getattr(run, "main", True))


def _dist():
    import torch.distributed as dist
    return dist


def summed(values: Sequence[float], device) -> list[float]:
    """`values` summed element-wise over the ranks."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    _dist().all_reduce(t)
    return t.tolist()


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Every parameter's gradient replaced by its sum over the ranks (one flat all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    _dist().all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def gathered(run, value: Any) -> list[Any]:
    """Every rank's `value` in rank order (a list of one alone)."""
    if world_size(run) == 1:
        return [value]
    out: list[Any] = [None] * world_size(run)
    _dist().all_gather_object(out, value)
    return out


def barrier(run) -> None:
    if world_size(run) > 1:
        _dist().barrier()
