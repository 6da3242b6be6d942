"""Worker processes for pieces of a fragment, with what a plain ProcessPoolExecutor lacks.

- Workers die with the apply (`lifetime.worker_init`): no orphan keeps computing or keeps
  the table lock after a SIGTERM/SIGKILL of the parent.
- Stopping is prompt: `shutdown` on an error or a stop kills workers still busy instead of
  waiting for their batches (which may hang).
- ``resources.timeout``: inside the worker an alarm interrupts a slow call (its rows fail,
  see `lifetime.deadline`). A call the alarm cannot reach (stuck in C code) is seen here on
  the `CallBoard` once past its hard limit: the workers are ended, that piece's rows fail
  ("timed out"), and the other pieces in flight are resubmitted, so no other row is lost.
"""
from __future__ import annotations

import itertools
import os
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa

from ..lifetime import CallBoard, forking_workers, hard_limit, set_piece, worker_init
from .compute import FeatureTask, compute_piece_counted

MAX_RESUBMITS = 8  # a piece resubmitted more often than this gives up (a pool that keeps dying)
POLL_SECONDS = 0.2  # how often a wait looks at the call board for a stuck call


def run_piece(piece_id: int, ft: FeatureTask, logical: pa.RecordBatch):
    """What a worker runs: `compute_piece_counted`, remembering which piece it is on."""
    set_piece(piece_id)
    try:
        return compute_piece_counted(ft, logical)
    finally:
        set_piece(None)


def timed_out_piece(ft: FeatureTask, n: int):
    """Values and errors for a piece whose worker was ended: every row failed."""
    message = (f"ExtractorTimeout: a call ran past {hard_limit(ft.timeout):g}s (resources.timeout "
               f"{ft.timeout:g}s) and could not be interrupted; the worker was stopped")
    return {c: pa.nulls(n, t) for c, t in ft.output_types.items()}, [message] * n, n


class WorkerPool:
    """A process pool computing pieces; `submit` returns a `PieceFuture`."""

    def __init__(self, workers: int, context):
        self.size = workers
        self.context = context
        self.generation = 0
        self.timed_out: set[int] = set()  # pieces whose call got stuck: their rows fail
        self.outstanding: set = set()
        self._ids = itertools.count()
        self.board: CallBoard | None = None
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        self.board = CallBoard(self.context, self.size)
        return ProcessPoolExecutor(self.size, mp_context=self.context, initializer=worker_init,
                                   initargs=(os.getpid(), self.board))

    def submit(self, fn, ft: FeatureTask, logical: pa.RecordBatch) -> PieceFuture:
        """`fn` is `compute_piece_counted` (kept in the signature of ProcessPoolExecutor.submit)."""
        return PieceFuture(self, next(self._ids), ft, logical)

    def _submit(self, piece_id: int, ft: FeatureTask, logical: pa.RecordBatch):
        with forking_workers():  # a fork pool starts its processes on the first submit
            future = self.executor.submit(run_piece, piece_id, ft, logical)
        self.outstanding.add(future)
        future.add_done_callback(self.outstanding.discard)
        return future

    def end_stuck_calls(self) -> None:
        """A call past its hard limit: fail its piece, end the workers, start afresh."""
        piece = self.board.stuck()
        if piece is not None and piece not in self.timed_out:
            self.timed_out.add(piece)
            self.restart()

    def restart(self) -> None:
        self._kill()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.generation += 1
        self.executor = self._start()

    def _kill(self) -> None:
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        for p in processes:
            if p.is_alive():
                p.kill()
        for p in processes:
            p.join(timeout=5)

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """Stop the workers. Busy ones (a stop, an error) are killed, not waited for."""
        self.executor.shutdown(wait=False, cancel_futures=cancel_futures)
        if any(not f.done() for f in list(self.outstanding)):
            self._kill()
        self.executor.shutdown(wait=wait)


class PieceFuture:
    """One piece in the pool: `result()` gives (values, errors, rows passed) like `compute_piece_counted`."""

    def __init__(self, pool: WorkerPool, piece_id: int, ft: FeatureTask, logical: pa.RecordBatch):
        self.pool, self.id, self.ft, self.logical = pool, piece_id, ft, logical
        self.generation = pool.generation
        try:
            self.future = pool._submit(piece_id, ft, logical)
        except BrokenProcessPool:  # a worker died before this submit: `result()` says so, as for the others
            self.future = Future()
            self.future.set_exception(BrokenProcessPool("a worker process died"))

    def result(self):
        pool = self.pool
        resubmits = 0
        while True:
            if self.id in pool.timed_out:
                return timed_out_piece(self.ft, self.logical.num_rows)
            if self.generation != pool.generation and not _succeeded(self.future):
                resubmits += 1  # the pool was restarted for another piece: run this one again
                if resubmits > MAX_RESUBMITS:
                    raise BrokenProcessPool("worker processes kept being restarted")
                self.generation = pool.generation
                self.future = pool._submit(self.id, self.ft, self.logical)
            try:
                return self.future.result(timeout=POLL_SECONDS)
            except TimeoutError:
                pool.end_stuck_calls()
            except (BrokenProcessPool, CancelledError):
                if self.id in pool.timed_out or self.generation != pool.generation:
                    continue
                raise BrokenProcessPool("a worker process died") from None


def _succeeded(future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
