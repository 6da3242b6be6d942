"""Process lifetime: worker processes die with their parent, SIGTERM stops a run the way
Ctrl-C does, an extractor call can be given a deadline, and a full disk is named.

Why this module exists: an apply forks worker processes. If the apply is killed (SIGTERM
from ``docker stop``/systemd, SIGKILL from the OOM killer), orphaned workers would keep
computing for nobody and, having inherited the table lock's file descriptor, keep every
later apply out. Here workers (1) ask the kernel for SIGKILL when their parent dies
(``PR_SET_PDEATHSIG``, Linux), (2) watch their parent's pid as a fallback elsewhere, and
(3) drop their copy of the lock descriptor as their first act.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

MONITOR_SECONDS = 0.25  # how often a worker checks that its parent is alive
PR_SET_PDEATHSIG = 1


class Stopped(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM, SIGINT). A KeyboardInterrupt, so every
    ``finally`` that commits finished work on Ctrl-C does so here too."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class ExtractorTimeout(Exception):
    """An extractor call ran past ``resources.timeout``: its rows fail (and are retried
    next apply), the other rows keep their values."""


# -- worker processes --------------------------------------------------------------

class CallBoard:
    """Shared memory where each worker posts the extractor call it is in: (piece, started,
    hard limit). The parent reads it to end a worker whose call is stuck, even one that
    holds the GIL in C code (a thread inside the worker could not run then)."""

    FIELDS = 3

    def __init__(self, context, slots: int):
        self.slots = slots
        self.cells = context.Array("d", self.FIELDS * slots, lock=False)
        self.claimed = context.Value("i", 0)

    def claim(self) -> int:
        with self.claimed.get_lock():
            slot = self.claimed.value % self.slots
            self.claimed.value += 1
        return slot

    def post(self, slot: int, piece: int, limit: float) -> None:
        i = self.FIELDS * slot
        self.cells[i], self.cells[i + 2], self.cells[i + 1] = piece, limit, time.monotonic()

    def clear(self, slot: int) -> None:
        self.cells[self.FIELDS * slot + 1] = 0.0

    def stuck(self) -> int | None:
        """A piece whose call has run past its hard limit (CLOCK_MONOTONIC is system-wide)."""
        now = time.monotonic()
        for slot in range(self.slots):
            piece, started, limit = self.cells[self.FIELDS * slot:self.FIELDS * slot + self.FIELDS]
            if started and now > started + limit:
                return int(piece)
        return None


class _Worker:
    board: CallBoard | None = None  # set in worker processes
    slot = 0
    piece: int | None = None        # the piece being computed


_WORKER = _Worker()
_PARENT_ONLY: set[int] = set()  # descriptors a worker must not keep (the table lock's)


@contextmanager
def parent_only(fd: int):
    """While the block runs, a worker process started by featurekit closes its copy of `fd`
    first thing: a forked copy of the table lock's descriptor would keep the lock alive
    after this process died."""
    _PARENT_ONLY.add(fd)
    try:
        yield
    finally:
        _PARENT_ONLY.discard(fd)


def parent_only_fds() -> tuple[int, ...]:
    return tuple(_PARENT_ONLY)


def worker_init(parent_pid: int, board: CallBoard | None = None) -> None:
    """Pool initializer: runs first in every worker process (fork or spawn)."""
    if board is not None:
        _WORKER.board, _WORKER.slot = board, board.claim()
    for fd in parent_only_fds():  # forked copies of the table lock: not ours to hold
        _release_fd(fd)
    _forget_parent_pools()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides what Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and may always end a worker
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before we could ask for the signal
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="featurekit-parent-watch",
                     daemon=True).start()


def set_piece(piece_id: int | None) -> None:
    """The piece this worker computes now (posted with each call it makes)."""
    _WORKER.piece = piece_id


def _forget_parent_pools() -> None:
    """A forked worker inherits the parent's registry of process-pool wakeup pipes (an earlier
    pool's, still shutting down when this one forked); at its exit CPython pokes them and prints
    "Exception ignored ... Bad file descriptor" on the apply's stderr. They are not this process's."""
    module = sys.modules.get("concurrent.futures.process")
    wakeups = getattr(module, "_threads_wakeups", None)
    if wakeups is not None:
        wakeups.clear()


_AT_FORK: list[bool] = []


def _forget_parent_pools_at_fork() -> None:
    """Forget them in the child right at the fork too, before `worker_init` runs: a worker
    stopped while still starting (a SIGTERM during start-up) exits through the same path. And
    at any exit, a pool wakeup whose pipe is already gone (a pool killed by a stop) is skipped
    instead of printing a "Bad file descriptor" traceback."""
    if not _AT_FORK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_parent_pools)
        # registered after concurrent.futures' own exit hook, so it runs before it
        threading._register_atexit(_skip_dead_pool_wakeups)
        _AT_FORK.append(True)


def _skip_dead_pool_wakeups() -> None:
    module = sys.modules.get("concurrent.futures.process")
    for wakeup in list(getattr(module, "_threads_wakeups", {}).values()):
        writer = getattr(wakeup, "_writer", None)
        try:
            if writer is not None and not getattr(wakeup, "_closed", True):
                os.fstat(writer.fileno())
        except (OSError, ValueError):
            wakeup._closed = True  # its `wakeup()` then does nothing


def _release_fd(fd: int) -> None:
    """Point `fd` at /dev/null: the lock's open file is no longer referenced from here,
    and the number stays valid for whatever object still wraps it."""
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def _die_with_parent() -> bool:
    """Linux: the kernel sends SIGKILL to this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """Fallback where PR_SET_PDEATHSIG is missing: once the parent is gone we are
    re-parented, and getppid() changes."""
    while os.getppid() == parent_pid:
        time.sleep(MONITOR_SECONDS)
    os._exit(1)


@contextmanager
def forking_workers():
    """Around code that forks worker processes: Lance warns at every fork of a process that
    imported it ("lance is not fork-safe"). featurekit's workers never call Lance (they only
    compute), so the warning says nothing here; it is silenced for these forks only, never
    process-wide."""
    import warnings
    _forget_parent_pools_at_fork()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lance is not fork-safe")
        yield


def machine_workers() -> int:
    """The CPUs this process may run on: the cap on worker processes."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# -- stopping a run ------------------------------------------------------------------

class _StopState:
    depth = 0                  # > 0 inside a commit: the stop waits until it is done
    pending: int | None = None  # the signal that arrived meanwhile
    raised: int | None = None   # the signal a `Stopped` was raised for (Lance may wrap it in its own error)


_STATE = _StopState()


def _on_signal(signum, frame) -> None:
    if _STATE.depth > 0 and _STATE.pending is None:  # a second signal does not wait
        _STATE.pending = signum
        return
    _STATE.pending = None
    _STATE.raised = signum
    raise Stopped(signum)


@contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """While the block runs, SIGTERM and SIGINT raise `Stopped`; inside a `critical()`
    section the first one waits for the section to end (a second one does not). Only the
    main thread can install signal handlers; elsewhere the block runs unchanged.

    A `Stopped` raised while Lance (Rust) was reading comes back wrapped in Lance's own error
    (``ArrowInvalid: External error: Stopped: stopped by SIGTERM``), which the code between
    may even turn into a `RunError`: whatever leaves the block after a stop is the `Stopped`
    again, so the command exits 128 + signal (143 for SIGTERM), not 1."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in signums}
    _STATE.raised = None
    try:
        yield
    except Stopped:
        raise
    except BaseException as exc:
        if _STATE.raised is not None:
            raise Stopped(_STATE.raised) from exc
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _STATE.pending = None
        _STATE.raised = None


@contextmanager
def critical():
    """A section a stop must not cut in half (a Lance commit and the bookkeeping after it):
    a signal arriving inside is acted on when the outermost section ends."""
    _STATE.depth += 1
    try:
        yield
    finally:
        _STATE.depth -= 1
        if _STATE.depth == 0 and _STATE.pending is not None:
            signum, _STATE.pending = _STATE.pending, None
            _STATE.raised = signum
            raise Stopped(signum)


# -- extractor deadlines ---------------------------------------------------------------

def hard_limit(seconds: float) -> float:
    """How long a call may run before its worker is ended: twice the timeout, at least +1s."""
    return seconds + max(1.0, seconds)


@contextmanager
def deadline(seconds: float | None):
    """Raise `ExtractorTimeout` in this thread after `seconds` (SIGALRM). In a worker
    process the call is also posted on the pool's `CallBoard`: one still running at
    `hard_limit(seconds)` (stuck in C code, where no alarm reaches) has its worker ended
    by the parent."""
    if not seconds:
        yield
        return
    board = _WORKER.board
    if board is not None and _WORKER.piece is not None:
        board.post(_WORKER.slot, _WORKER.piece, hard_limit(seconds))
    soft = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not soft:
        try:
            yield
        finally:
            if board is not None:
                board.clear(_WORKER.slot)
        return

    def expired(signum, frame):
        raise ExtractorTimeout(f"timed out after {seconds:g}s (resources.timeout)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if board is not None:
            board.clear(_WORKER.slot)


# -- errors --------------------------------------------------------------------------

def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or anything in its cause chain) is "no space left on device";
    Lance reports it as an OSError whose text ends in "(os error 28)"."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
