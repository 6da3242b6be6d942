"""Readers pin what they read: a `DataLoader` or `featurekit.read` holds a lease on the table
version it reads, and `featurekit compact` keeps every version a live reader holds.

Why: a loader pins a version when it is made and reads it for a whole epoch (hours); an apply
meanwhile makes newer versions, and ``compact --older-than 0s`` would delete the files under
it (`OSError: Not found` mid-epoch). Train runs are protected by their manifests' tags; plain
loaders and reads by this lease.

A lease is a small record naming the version, the branch, the holder (user@host pid, what)
and a heartbeat (epoch seconds), renewed every third of ``FEATUREKIT_READER_LEASE_SECONDS``
(default 60 s) by a daemon thread and removed when the reader closes (or is garbage
collected). A record whose heartbeat is older than the lease is a dead reader's: compact
ignores it and removes it. Local tables keep the records as JSON files in a folder beside the
table's real path (``.<name>.featurekit-readers/``); object-store tables as Lance tags
(``featurekit-reader-<id>``, metadata only) on the lock dataset beside the table
(`lock.lock_dataset_uri`), which any reader may write without the writer lock.

Only main's versions are pinned: compact removes no branch version.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .ref import TableRef, as_ref

READER_TAG = "featurekit-reader-"
LEASE_SECONDS = 60.0


def reader_lease_seconds() -> float:
    """How long a reader that stopped renewing keeps its version (``FEATUREKIT_READER_LEASE_SECONDS``)."""
    try:
        return max(1.0, float(os.environ.get("FEATUREKIT_READER_LEASE_SECONDS", LEASE_SECONDS)))
    except ValueError:
        return LEASE_SECONDS


def readers_folder(ref: TableRef) -> Path:
    table = Path(ref.identity)
    return table.parent / f".{table.name}.featurekit-readers"


class ReaderPin:
    """One reader's lease on version `version` of the main line of `ref`'s table."""

    def __init__(self, ref: TableRef, version: int, what: str, lease: float | None = None):
        self.ref, self.version, self.what = ref.main, int(version), what
        self.lease = lease or reader_lease_seconds()
        self.id = uuid.uuid4().hex[:16]
        self.holder = f"{_user()}@{socket.gethostname()} pid {os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_ds = None

    def record(self) -> dict[str, str]:
        return {"version": str(self.version), "holder": self.holder, "what": self.what,
                "heartbeat": f"{time.time():.3f}", "pid": str(os.getpid()), "host": socket.gethostname()}

    # -- storage ------------------------------------------------------------------------------
    def _write(self) -> None:
        if self.ref.remote:
            tags = self._lock_ds.tags
            if self._created:
                tags.replace_metadata(READER_TAG + self.id, self.record())
            else:
                tags.create(READER_TAG + self.id, self._lock_ds.version)
                self._created = True
                tags.replace_metadata(READER_TAG + self.id, self.record())
            return
        folder = readers_folder(self.ref)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.id}.json"
        tmp = folder / f".{self.id}.tmp"
        tmp.write_text(json.dumps(self.record()))
        os.replace(tmp, path)

    def _remove(self) -> None:
        try:
            if self.ref.remote:
                if self._created:
                    self._lock_ds.tags.delete(READER_TAG + self.id)
            else:
                (readers_folder(self.ref) / f"{self.id}.json").unlink(missing_ok=True)
        except (OSError, ValueError):
            pass  # its heartbeat stops: the lease runs out on its own

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> ReaderPin:
        self._created = False
        if self.ref.remote:
            from .lock import lock_dataset
            self._lock_ds = lock_dataset(self.ref).dataset
        self._write()
        self._thread = threading.Thread(target=self._beat, name="featurekit-reader-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self._write()
            except Exception:  # a store hiccup: the lease has slack for the next beat
                continue

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._remove()

    def __enter__(self) -> ReaderPin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pin_version(where, version: int, what: str) -> ReaderPin | None:
    """Hold a reader's lease on `version` of the table at `where` (a TableRef or a URI; a branch's
    root is not pinned: compact removes no branch version). None when it cannot be written (a
    read-only folder or bucket): the read goes on, unprotected."""
    ref = as_ref(where)
    if ref.branch is not None or "/tree/" in ref.uri:
        return None
    try:
        return ReaderPin(ref, version, what).start()
    except Exception:  # noqa: BLE001 - a read-only store, a store hiccup: the read goes on, unprotected
        return None


def live_readers(where, *, clean: bool = True) -> list[dict]:
    """The live readers' leases of the table's main line (version, holder, what, age of the last
    heartbeat in seconds), oldest version first. Dead readers' records are removed (`clean`)."""
    ref = as_ref(where).main
    lease = reader_lease_seconds()
    now = time.time()
    out = []
    for name, record, remove in _records(ref):
        try:
            age = now - float(record.get("heartbeat", 0))
            version = int(record["version"])
        except (KeyError, TypeError, ValueError):
            continue
        if age > lease or _dead_here(record):
            if clean:
                remove()
            continue
        out.append({"version": version, "holder": record.get("holder", "?"), "what": record.get("what", "a reader"),
                    "age": max(0.0, age), "id": name})
    return sorted(out, key=lambda r: (r["version"], r["id"]))


def _records(ref: TableRef):
    if ref.remote:
        from .lock import lock_dataset
        ds = lock_dataset(ref, create=False)
        if ds is None:
            return
        ds = ds.dataset
        for name, info in ds.tags.list().items():
            if name.startswith(READER_TAG):
                def remove(name=name):
                    try:
                        ds.tags.delete(name)
                    except (OSError, ValueError):
                        pass
                yield name, dict(info.get("metadata") or {}), remove
        return
    folder = readers_folder(ref)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        yield path.stem, record, (lambda path=path: path.unlink(missing_ok=True))


def _dead_here(record: dict) -> bool:
    """A reader on this machine whose process is gone (no need to wait out its lease)."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:
        return "?"
