"""Data-parallel training: which process of a ``torchrun`` job this is, and the little the
run folder needs the processes to agree on.

``torchrun --nproc_per_node N -m featurekit train SPEC --recipe R`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each is a `World`: rank 0 alone makes the run
folder and writes the manifest, metrics and checkpoints and shares its decisions (`share`);
every rank reads its shard of the loader (`DataLoader(rank=, world_size=)`); the trainer
averages gradients over the process group `start` opens (gloo on CPU, nccl on GPUs).

torch is imported only when there is more than one process.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel job (rank 0 of 1 when run alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run folder."""
        return self.rank == 0


def from_env(env: Mapping[str, str] | None = None) -> World:
    """The `World` torchrun (or any launcher setting RANK / WORLD_SIZE / LOCAL_RANK) describes."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE", "1") or 1)
    rank = int(env.get("RANK", "0") or 0)
    if size < 1 or not 0 <= rank < size:
        from ..errors import UsageError
        raise UsageError(f"RANK={rank} and WORLD_SIZE={size} from the environment: need 0 <= RANK < WORLD_SIZE")
    return World(rank, size, int(env.get("LOCAL_RANK", str(rank)) or rank))


def backend() -> str:
    """nccl when the processes have GPUs, gloo otherwise."""
    import torch
    return "nccl" if torch.cuda.is_available() else "gloo"


def start(world: World) -> bool:
    """Join the process group (a no-op alone, or when the caller already did); True if this
    call opened it, so the same caller `stop`s it."""
    if world.size == 1:
        return False
    import torch
    import torch.distributed as dist
    if dist.is_initialized():
        return False
    kind = backend()
    if kind == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(kind, rank=world.rank, world_size=world.size)
    return True


def stop(opened: bool) -> None:
    if opened:
        import torch.distributed as dist
        dist.destroy_process_group()


def share(world: World, value: Any = None) -> Any:
    """Rank 0's `value` on every rank (a picklable object)."""
    if world.size == 1:
        return value
    import torch.distributed as dist
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if world.size == 1:
        return [value]
    import torch.distributed as dist
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist
        dist.barrier()
