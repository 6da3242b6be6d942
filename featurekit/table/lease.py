"""The writer lock of a table on an object store: a Lance tag held on a renewable lease.

Why a tag: an object store has no flock, and a lock file would need a compare-and-swap the
store may not give. Lance's tag creation is a conditional put (``If-None-Match``), so of
several applies creating tag ``featurekit-writer`` at once exactly one succeeds (checked
with 4 threads x 15 rounds on moto, notes/lance-facts.md section 3). A tag costs no
version, and it names the holder in its metadata. The tag lives on an empty dataset beside
the table (`lock.lock_dataset_uri`), which exists before the table does.

Why a lease: a holder that dies (SIGKILL, a lost machine) cannot delete its tag. The holder
writes ``expires`` (epoch seconds) into the tag's metadata and renews it every quarter
lease from a thread; an apply finding the tag past ``expires`` takes it over. Two applies
taking over the same dead lease race on creating ``featurekit-writer-takeover-<stamp>``,
where the stamp is the dead tag's creation time: one wins, re-checks that the tag is still
the dead one, replaces it and removes the takeover tag; the other is told the table is busy.

Fencing: a holder that stalls longer than its lease (SIGSTOP, a frozen VM) loses the lock
and must not commit when it wakes. Every write of the table goes through `handle.Table`, which
hands Lance a ``commit_lock`` (`TagLease.fence`): Lance calls it with the version about to be
written, right before the manifest is put, and it refuses (`LockLost`, nothing committed) unless
the lock tag still carries this holder's token, the lease has not run out by this holder's own
clock, and the version being built on was not committed by a later holder. Each commit records
the holder's generation (the creation time of its tag, in microseconds: a later holder's is
larger) in its transaction properties (``featurekit.writer``), which is what the last check reads.
Left open: a holder frozen between that check and Lance's put of the manifest (microseconds)
could still write one version; Lance's own conditional put keeps it from overwriting one.

Limits: clocks of the machines sharing a table must agree to well under a lease.
"""
from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from ..errors import LockHeld, LockLost, RunError
from ..spec.names import LOCK_PREFIX

LOCK_TAG = LOCK_PREFIX
TAKEOVER = f"{LOCK_PREFIX}-takeover-"
LEASE_SECONDS = 120.0
WRITER_PROPERTY = "featurekit.writer"  # transaction property: the committing holder's generation

_HELD: dict[str, TagLease] = {}  # table identity -> the lease this process holds on it


def lease_seconds() -> float:
    """The lease (``FEATUREKIT_LOCK_LEASE_SECONDS``, default 120 s): how long a dead holder
    keeps others out."""
    try:
        return max(1.0, float(os.environ.get("FEATUREKIT_LOCK_LEASE_SECONDS", LEASE_SECONDS)))
    except ValueError:
        return LEASE_SECONDS


def _conflict(exc: BaseException) -> bool:
    return "conflict" in str(exc).lower() or "already exists" in str(exc).lower()


def _stamp(info: dict) -> int:
    created = info.get("created_at")
    return int(created.timestamp() * 1_000_000) if isinstance(created, datetime) else 0


class TagLease:
    """The lock on one table (`ds`: its main line, latest version)."""

    def __init__(self, ds, where: str, lease: float):
        self.ds, self.where, self.lease = ds, where, lease
        self.token = uuid.uuid4().hex
        self.holder = f"{_user()}@{socket.gethostname()} pid {os.getpid()}"
        self.lost: str | None = None
        self.generation = 0     # the creation time of our tag (us): a later holder's is larger
        self.expires = 0.0      # our lease, as last written into the tag
        self.key: str | None = None  # the table's identity, while `tag_lock` holds it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the tag --------------------------------------------------------------------------
    def _info(self, name: str = LOCK_TAG) -> dict | None:
        return self.ds.tags.list().get(name)

    def _expires(self, info: dict) -> float:
        try:
            return float(info.get("metadata", {}).get("expires"))
        except (TypeError, ValueError):  # created, metadata not written yet: the lease runs from creation
            created = info.get("created_at")
            return (created.timestamp() if isinstance(created, datetime) else 0.0) + self.lease

    def _create(self, name: str = LOCK_TAG) -> bool:
        try:
            self.ds.tags.create(name, self.ds.version)
        except (ValueError, OSError) as exc:
            if _conflict(exc):
                return False
            raise RunError(f"could not take the writer lock on {self.where} (Lance tag {name!r}): {exc}") from exc
        return True

    def _claim(self) -> None:
        expires = time.time() + self.lease
        self.ds.tags.replace_metadata(LOCK_TAG, {"token": self.token, "holder": self.holder,
                                                 "expires": f"{expires:.3f}"})
        self.expires = expires
        if not self.generation:
            self.generation = _stamp(self._info() or {})

    def _delete(self, name: str) -> None:
        try:
            self.ds.tags.delete(name)
        except (ValueError, OSError):
            pass  # gone already

    # -- acquire, renew, release ------------------------------------------------------------
    def acquire(self) -> None:
        for _ in range(3):  # the holder may release between our create and our look
            if self._create():
                self._claim()
                self._start_renewing()
                return
            info = self._info()
            if info is None:
                continue
            if self._expires(info) > time.time():
                raise LockHeld(self._busy(info))
            self._take_over(info)
            self._start_renewing()
            return
        raise LockHeld(f"could not take the writer lock on {self.where}: it changed hands repeatedly; "
                       "run apply again")

    def _take_over(self, dead: dict) -> None:
        takeover = f"{TAKEOVER}{_stamp(dead)}"
        if not self._create(takeover):
            other = self._info(takeover)
            if other is not None and self._expires(other) <= time.time():
                self._delete(takeover)  # a taker that died mid-way: the next apply gets through
            raise LockHeld(f"another featurekit apply is taking over the expired writer lock on {self.where}; "
                           "wait for it to finish, then run apply again")
        try:
            current = self._info()
            if current is not None and _stamp(current) == _stamp(dead):
                self._delete(LOCK_TAG)
            elif current is not None:
                raise LockHeld(self._busy(current))
            if not self._create():
                raise LockHeld(self._busy(self._info() or {}))
            self._claim()
        finally:
            self._delete(takeover)

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="featurekit-lock-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                info = self._info()
                if info is None or info.get("metadata", {}).get("token") != self.token:
                    self._lose()
                    return
                if self.expires <= time.time():  # we stalled past our own lease: it is no longer ours
                    self._lose()
                    return
                self._claim()
            except Exception:  # a store hiccup: try again next round; the lease has slack
                continue

    def _lose(self) -> None:
        if self.lost is None:
            self.lost = (f"the writer lock on {self.where} was taken over while this apply ran "
                         f"(its lease of {self.lease:g}s ran out before it was renewed)")

    # -- fencing: checked inside every commit -------------------------------------------------
    @property
    def properties(self) -> dict[str, str]:
        """What each commit records: this holder's generation."""
        return {WRITER_PROPERTY: str(self.generation)}

    def check(self, ds=None, version: int | None = None) -> None:
        """Raise `LockLost` unless this holder may still commit: the lock tag is ours, our lease
        runs, and (given the table `ds` and the `version` about to be written) the version built
        on was not committed by a later holder."""
        if self.lost is None:
            try:
                info = self._info()
            except Exception as exc:  # cannot tell: do not commit blind
                raise LockLost(f"could not check the writer lock on {self.where} before committing ({exc}); "
                               "nothing was committed; run apply again", table=self.where) from exc
            if info is None or info.get("metadata", {}).get("token") != self.token or self.expires <= time.time():
                self._lose()
        if self.lost is None and ds is not None and version is not None and version > 1:
            later = _writer_generation(ds, version - 1)
            if later is not None and later > self.generation:
                self._lose()
        if self.lost is not None:
            raise LockLost(self.lost + "; this writer stopped before committing, so nothing more of it is in the "
                           "table; run 'featurekit status', then apply again", table=self.where)

    def fence(self, ds):
        """A Lance ``commit_lock`` for commits to `ds`'s table: `check` at the version written."""
        @contextmanager
        def commit_lock(version: int):
            # Lance calls this from inside its runtime, where no Lance call may block: check
            # from a thread of our own and wait for it.
            failure: list[BaseException] = []

            def run():
                try:
                    self.check(ds, version)
                except BaseException as exc:  # noqa: BLE001 - handed to the committing thread
                    failure.append(exc)
            thread = threading.Thread(target=run, name="featurekit-lock-fence")
            thread.start()
            thread.join()
            if failure:
                raise failure[0]
            yield
        return commit_lock

    def release(self) -> None:
        if _HELD.get(self.key) is self:
            del _HELD[self.key]
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            info = self._info()
        except Exception:
            return  # the lease expires on its own
        if info is not None and info.get("metadata", {}).get("token") == self.token:
            self._delete(LOCK_TAG)

    def _busy(self, info: dict) -> str:
        meta = info.get("metadata", {}) or {}
        who = f"another featurekit apply ({meta['holder']})" if meta.get("holder") else "another featurekit apply"
        until = datetime.fromtimestamp(self._expires(info), timezone.utc).strftime("%H:%M:%S UTC")
        return (f"{who} is writing {self.where}; wait for it to finish, then run apply again (its lock, Lance tag "
                f"{LOCK_TAG!r}, is renewed while it runs; if it died, the lock is free after {until})")


def _writer_generation(ds, version: int) -> int | None:
    """The generation recorded by the commit that made `version` (None: not recorded, or unreadable)."""
    try:
        tx = ds.read_transaction(version)
        return int((tx.transaction_properties or {}).get(WRITER_PROPERTY)) if tx is not None else None
    except Exception:
        return None


def held(key: str) -> TagLease | None:
    """The lease this process holds on the table with identity `key` (None: none, or a local table)."""
    return _HELD.get(key)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "?"


@contextmanager
def tag_lock(ds, where: str, lease: float | None = None, *, key: str | None = None):
    """Hold the table's writer lock (`ds`: the lock's dataset) while the block runs; `key`
    (the table's identity) makes the lease the fence of every commit of that table."""
    lock = TagLease(ds, where, lease or lease_seconds())
    lock.acquire()
    lock.key = key or where
    _HELD[lock.key] = lock
    try:
        yield lock
    finally:
        lock.release()
    if lock.lost:
        raise LockLost(lock.lost + "; the commits it made before are in, later ones were refused: "
                       "run 'featurekit status'", table=where)
