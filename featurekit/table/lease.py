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

Limits: clocks of the machines sharing a table must agree to well under a lease; a holder
that stalls longer than its lease (no renewal) loses the lock, and is told so when it ends.
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
        self.ds.tags.replace_metadata(LOCK_TAG, {"token": self.token, "holder": self.holder,
                                                 "expires": f"{time.time() + self.lease:.3f}"})

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
                    self.lost = (f"the writer lock on {self.where} was taken over while this apply ran "
                                 f"(its lease of {self.lease:g}s ran out before it was renewed)")
                    return
                self._claim()
            except Exception:  # a store hiccup: try again next round; the lease has slack
                continue

    def release(self) -> None:
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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "?"


@contextmanager
def tag_lock(ds, where: str, lease: float | None = None):
    """Hold the table's writer lock (`ds`: the table's main line) while the block runs."""
    lock = TagLease(ds, where, lease or lease_seconds())
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
    if lock.lost:
        raise LockLost(lock.lost + "; its commits are in, but another apply may have computed the same rows: "
                       "run 'featurekit status'")
