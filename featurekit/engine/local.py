"""The embedded engine: pylance in this process, plus worker processes for CPU-bound work.

Data evolution only (the base `Engine` lays out the columns): a feature's columns are first
added as all-null columns, then filled fragment by fragment; each fragment's new file is
committed with a DataReplacement every ``checkpoint_seconds``, so a re-run resumes where
the last commit left off. The other columns, image bytes above all, are never rewritten.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa
from pydantic import Field

from ..lifetime import machine_workers
from ..planning.resolve import Feature
from .base import Engine, EngineOptions, FeatureFill
from .compute import compute_piece_counted
from .fragment import FragmentJob, FragmentTask, FullScan, compute_fragment, known_rows
from .pool import WorkerPool

PARALLEL_AFTER_SECONDS = 2.0  # estimated in-process compute time above which a worker pool pays off
COMPUTE_SHARE = 0.5  # ... when at least this share of a fragment's time is the extractor's
MIN_ROW_SECONDS = 2e-5  # ... and a row costs more than copying it to a worker and back does
SHARED_PARALLEL_SECONDS = 0.5  # distinct inputs (small values: cheap to copy) go to forked workers above this
WRITE_THREADS = 2  # fragments written at once when nothing is left to compute (shared values)


class LocalOptions(EngineOptions):
    checkpoint_seconds: float = Field(30.0, gt=0, le=1e9, allow_inf_nan=False,
                                      description="commit finished fragments at least this often")
    max_workers: int | None = Field(None, gt=0, le=1 << 20, description="cap on worker processes (default: the cores)")
    ingest_commit_rows: int | None = Field(None, gt=0, le=1 << 40, description="rows a commit while ingesting "
                                           "(default: 16 fragments)")
    reuse_memory_mb: float = Field(1024, ge=0, le=1 << 30, allow_inf_nan=False,
                                   description="memory for values shared by rows with equal inputs within an apply")


class LocalEngine(Engine):
    name = "local"
    Options = LocalOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.pool: WorkerPool | None = None

    def checkpoint_seconds(self) -> float:
        return self.options.checkpoint_seconds

    def reuse_memory_bytes(self) -> int | None:
        return int(self.options.reuse_memory_mb * (1 << 20))

    def ingest_commit_rows(self, project) -> int:
        return self.options.ingest_commit_rows or super().ingest_commit_rows(project)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def workers_for(self, f: Feature, n_tasks: int) -> int:
        """Worker processes for a feature with `n_tasks` fragments of work."""
        if f.resources.workers:
            return min(f.resources.workers, n_tasks, machine_workers())
        if f.resources.gpus:
            return 1
        return max(1, min(os.cpu_count() or 1, n_tasks, self.options.max_workers or 64))

    def fill(self, fill: FeatureFill) -> None:
        """Fragments in this process, in threads, or in worker processes (when the first
        fragment shows the rest would take long enough to pay for them)."""
        f = fill.feature
        queue = [dataclasses.replace(t, on_rows=fill.rows_done) for t in fill.fragments]
        workers = self.workers_for(f, len(queue))
        if f.resources.timeout or (workers > 1 and (f.resources.workers or 0) > 1):
            self._run_pool(queue, workers, fill)  # a timeout is enforced in worker processes
            return
        first = compute_fragment(queue.pop(0))
        fill.take(first)

        # worker processes share the extractor's time only, and cost a copy of each piece's
        # inputs and outputs: worth it when computing dominates and there is enough of it
        estimate = first.compute_seconds * len(queue)
        per_row = first.compute_seconds / max(1, first.computed + first.failed)
        if workers > 1 and len(queue) > 1 and estimate > PARALLEL_AFTER_SECONDS and per_row > MIN_ROW_SECONDS and \
                first.compute_seconds > COMPUTE_SHARE * first.seconds:
            self._run_pool(one_scan(queue), workers, fill)
        elif len(queue) > 1 and (threads := self.threads_for(f, fill, queue)) > 1:
            with ThreadPoolExecutor(min(threads, len(queue))) as pool:
                for res in pool.map(compute_fragment, queue):
                    fill.take(res)
        else:
            for t in one_scan(queue):
                fill.take(compute_fragment(t))

    def threads_for(self, f: Feature, fill: FeatureFill, queue: list[FragmentTask]) -> int:
        """Fragments at once in threads: the extractor's `resources.threads` (Arrow built-ins,
        which release the GIL), or, when shared values know every row's value, enough to overlap
        the fragments' file writes (Lance writes without the GIL). A feature sharing values by a
        memo runs its fragments in order (each learns from the ones before)."""
        if fill.reuse is None:
            return f.resources.threads
        if all(known_rows(t) is not None for t in queue):
            return min(WRITE_THREADS, os.cpu_count() or 1)
        return 1

    def compute_pieces(self, f: Feature, task, pieces: list[pa.RecordBatch]) -> Iterator[tuple]:
        """The distinct inputs of shared values: the first piece here, timed; the rest in worker
        processes when they would take long enough to pay for them (forked workers start in
        milliseconds, and these inputs are small values, cheap to copy), else here too."""
        if not pieces:
            return
        t0 = time.perf_counter()
        yield compute_piece_counted(task, pieces[0])
        rest = pieces[1:]
        estimate = (time.perf_counter() - t0) / max(1, pieces[0].num_rows) * sum(p.num_rows for p in rest)
        workers = self.workers_for(f, len(rest)) if rest else 1
        forked = _worker_context().get_start_method() == "fork"
        if workers < 2 or estimate < (SHARED_PARALLEL_SECONDS if forked else PARALLEL_AFTER_SECONDS):
            for piece in rest:
                yield compute_piece_counted(task, piece)
            return
        pool = self._pool(workers)
        window: deque = deque()  # (piece, its future; None: compute it here)
        todo = iter(rest)
        broken = False  # the pool broke: the pieces still to come are computed here
        while True:
            while len(window) < 2 * workers and (piece := next(todo, None)) is not None:
                window.append((piece, None if broken else pool.submit(compute_piece_counted, task, piece)))
            if not window:
                return
            piece, future = window.popleft()
            if future is not None:
                try:
                    yield future.result()
                    continue
                except BrokenProcessPool:  # (the other pieces in flight fail the same way: here too)
                    broken, self.pool = True, None
            yield compute_piece_counted(task, piece)

    def _run_pool(self, queue: list[FragmentTask], workers: int, fill: FeatureFill) -> None:
        """Worker processes compute; this process does all Lance I/O.

        Fragments are read here piece by piece, the pieces' inputs go to the workers (at most
        two per worker in flight), and each fragment's file is written here in order. Workers
        never touch Lance, so they can be forked (instant, no re-import of the caller's
        script) unless a library that dislikes fork is loaded; then they are spawned. If the
        pool breaks, the rest is computed in this process."""
        pool = self._pool(workers)
        window: deque = deque()  # (job, piece or None for "job done", future or None)
        jobs = iter(queue)
        pieces = None
        job = None
        local = False  # the pool broke: compute here

        def refill() -> None:
            nonlocal pieces, job
            while len(window) < 2 * workers:
                if pieces is None:
                    task = next(jobs, None)
                    if task is None:
                        return
                    job = FragmentJob(task)
                    pieces = job.pieces()
                piece = next(pieces, None)
                if piece is None:
                    window.append((job, None, None))
                    pieces = None
                    continue
                future = None
                if piece.logical is not None and not local:
                    future = pool.submit(compute_piece_counted, job.task.feature, piece.logical)
                window.append((job, piece, future))

        refill()
        while window:
            owner, piece, future = window.popleft()
            if piece is None:
                fill.take(owner.close())
            elif piece.logical is None:
                owner.finish(piece, {}, None)
            else:
                try:
                    if future is None:
                        raise BrokenProcessPool("computing in this process")
                    values, errors, passed = future.result()
                except BrokenProcessPool as exc:
                    if not local:
                        fill.message(f"worker processes failed ({exc}); computing the rest in this process")
                        local = True
                        self.pool = None
                    values, errors, passed = compute_piece_counted(owner.task.feature, piece.logical)
                owner.finish(piece, values, errors, passed)
            refill()

    def _pool(self, workers: int) -> WorkerPool:
        if self.pool is not None and self.pool.size >= workers:
            return self.pool
        if self.pool is not None:
            self.pool.shutdown()
        self.pool = WorkerPool(workers, _worker_context())
        return self.pool


def one_scan(queue: list[FragmentTask]) -> list[FragmentTask]:
    """Fragments read in order, one after the other: those whose rows all need work share one
    scan (`fragment.FullScan`)."""
    scanned = [t.full and known_rows(t) is None for t in queue]  # (fragments known by shared values read nothing)
    full = [t.fragment_id for t, s in zip(queue, scanned) if s]
    if len(full) < 2:
        return queue
    scan = FullScan(queue[0].dataset, full, queue[0].feature)
    return [dataclasses.replace(t, scan=scan) if s else t for t, s in zip(queue, scanned)]


FORK_UNSAFE = ("torch", "tensorflow", "jax")  # their thread pools do not survive fork


def _worker_context():
    """fork when it is safe: the workers only compute, never touch Lance, and nothing whose
    threads break under fork is loaded. Else spawn."""
    if "fork" in multiprocessing.get_all_start_methods() and not any(m in sys.modules for m in FORK_UNSAFE):
        return multiprocessing.get_context("fork")  # Lance's fork warning: silenced in pool.py, where it forks
    return multiprocessing.get_context("spawn")
