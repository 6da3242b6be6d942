"""Read batches ahead of the trainer: threads in-process, or worker processes.

Threads are the default: the reads (`preadv`, Lance's take) release the GIL, so two threads
keep two cores busy with no start-up cost and no copy between processes. Worker processes
(`num_workers > 0`) go through torch's DataLoader for its ordering, error propagation and
pin-memory thread; they are started with forkserver (spawn where there is none) because
Lance is not fork-safe, open the dataset themselves, and write each batch into shared
memory so handing it to the trainer copies nothing. At most `depth` batches are in flight
either way: memory is bounded by the prefetch depth, not by the table.
"""
from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

FORKSERVER_PRELOAD = ["numpy", "pyarrow", "torch", "featurekit.training.batches"]


def threaded(fn: Callable[[Any], Any], items: Iterable[Any], *, depth: int, threads: int) -> Iterator[Any]:
    """fn(item) for each item, in order, with up to `depth` calls running ahead in `threads`."""
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="featurekit-prefetch")
    pending: deque = deque()
    it = iter(items)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= max(1, depth):
                break
        while pending:
            result = pending.popleft().result()
            for item in it:
                pending.append(pool.submit(fn, item))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


SLAB = "__featurekit_slab__"


class _Batches:
    """The map-style dataset torch's workers see: an index is (row positions, slab number).

    With a slab (>= 0) the worker writes the tensor columns into that shared-memory slab
    and returns only a marker; otherwise it returns the batch in new shared memory."""

    def __init__(self, reader, slabs: list[dict[str, Any]]):
        self.reader = reader
        self.slabs = slabs

    def __getitem__(self, index):
        rows, slab = index
        if slab < 0:
            return self.reader.read(rows)
        batch = self.reader.read(rows, into=self.slabs[slab])
        return {**{k: None if k in self.slabs[slab] else v for k, v in batch.items()}, SLAB: (slab, len(rows))}


class SlabPool:
    """Shared-memory buffers for worker batches, reused once the trainer lets go of them.

    Why: a worker's batch otherwise lands in fresh shared memory (page faults and zeroing
    in the worker, a new mapping in the trainer) each time. The slabs are mapped in every
    process once; a batch is a view of one, so a slab is free again when no view is alive
    (its array's reference count is back to the pool's own) and no worker is writing it.
    """

    def __init__(self, reads, batch_size: int, count: int):
        import torch
        self.tensors: list[dict[str, Any]] = []
        for _ in range(count):
            slab = {}
            for c in reads:
                t = torch.from_numpy(np.empty(0, c.dtype)).new_empty((batch_size, *c.shape))
                slab[c.key] = t.share_memory_()
            self.tensors.append(slab)
        self.arrays = [{k: t.numpy() for k, t in slab.items()} for slab in self.tensors]
        self.busy: set[int] = set()   # handed to a worker, not yet back
        # counted the way `acquire` counts (the list, the loop variable, the call's argument)
        self._idle = min((_refs(a) for a in self.arrays[0].values()), default=0) if count else 0

    def acquire(self) -> int:
        """A free slab's number, or -1 when all are in use (the worker then allocates)."""
        for s, arrays in enumerate(self.arrays):
            if s not in self.busy and all(_refs(a) == self._idle for a in arrays.values()):
                self.busy.add(s)
                return s
        return -1

    def release_all(self) -> None:
        self.busy.clear()

    def wrap(self, batch: dict[str, Any]) -> dict[str, Any]:
        if SLAB not in batch:
            return batch
        import torch
        s, n = batch.pop(SLAB)
        self.busy.discard(s)
        views = {k: torch.from_numpy(a[:n]) for k, a in self.arrays[s].items()}
        return {k: views.get(k, v) for k, v in batch.items()}  # the worker kept each key's place


def _as_is(batch):
    """The workers' collate function: leave numpy arrays alone (torch's default turns them into
    tensors, which then travel through shared memory one segment each)."""
    return batch


def _tensors(batch: dict[str, Any]) -> dict[str, Any]:
    import torch
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def _refs(a) -> int:
    return sys.getrefcount(a)


class _Plan:
    """The sampler: yields the current pass's batches, each with a free slab when there is one."""

    def __init__(self, slabs: SlabPool | None) -> None:
        self.items: list = []
        self.slabs = slabs

    def __iter__(self):
        for rows in self.items:
            yield rows, (self.slabs.acquire() if self.slabs is not None else -1)

    def __len__(self) -> int:
        return len(self.items)


def mp_context():
    """forkserver (workers forked from a clean server that preloaded torch: fast start, no
    Lance state inherited), or spawn where forkserver does not exist."""
    import multiprocessing as mp
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    from multiprocessing import forkserver
    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:  # not started yet: preload is ours to set
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ctx


class WorkerPool:
    """Persistent worker processes reading batches through a `BatchReader` copy each.

    Tensor columns go through a `SlabPool` unless batches are pinned for CUDA (then torch's
    pin-memory thread copies each batch into its own recycled pinned blocks)."""

    def __init__(self, reader, *, num_workers: int, depth: int, pin_memory: bool, batch_size: int,
                 timeout: float = 0):
        import torch.utils.data as tud
        prefetch_factor = max(1, depth // num_workers)
        tensors = reader.tensor_columns()
        self.slabs = SlabPool(tensors, batch_size, num_workers * prefetch_factor + 3) \
            if tensors and not pin_memory else None
        self.plan = _Plan(self.slabs)
        self.loader = tud.DataLoader(
            _Batches(reader, self.slabs.tensors if self.slabs else []), batch_size=None, sampler=self.plan,
            num_workers=num_workers, multiprocessing_context=mp_context(), persistent_workers=True,
            pin_memory=pin_memory, prefetch_factor=prefetch_factor, timeout=timeout, collate_fn=_as_is)

    def run(self, items: list) -> Iterator[Any]:
        self.plan.items = list(items)
        if self.slabs is not None:  # a pass cut short left slabs marked busy; the reset drains their batches
            self.slabs.release_all()
        for batch in iter(self.loader):  # persistent workers: a new pass resets the same workers
            yield _tensors(self.slabs.wrap(batch) if self.slabs is not None else batch)

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()
            self.loader._iterator = None
