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

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

FORKSERVER_PRELOAD = ["numpy", "pyarrow", "torch", "featurekit.batchread"]


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


class _Batches:
    """The map-style dataset torch's workers see: an index is a batch's row positions."""

    def __init__(self, reader):
        self.reader = reader

    def __getitem__(self, rows):
        return self.reader.read(rows)


class _Plan:
    """The sampler: yields the current iteration's batches (set before each pass)."""

    def __init__(self) -> None:
        self.items: list = []

    def __iter__(self):
        return iter(self.items)

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
    """Persistent worker processes reading batches through a `BatchReader` copy each."""

    def __init__(self, reader, *, num_workers: int, depth: int, pin_memory: bool, timeout: float = 0):
        import torch.utils.data as tud
        self.plan = _Plan()
        self.loader = tud.DataLoader(
            _Batches(reader), batch_size=None, sampler=self.plan, num_workers=num_workers,
            multiprocessing_context=mp_context(), persistent_workers=True, pin_memory=pin_memory,
            prefetch_factor=max(1, depth // num_workers), timeout=timeout)

    def run(self, items: list) -> Iterator[Any]:
        self.plan.items = list(items)
        yield from iter(self.loader)  # persistent workers: a new pass resets the same workers

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()
            self.loader._iterator = None
