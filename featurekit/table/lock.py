"""One featurekit writer per table at a time, so two applies cannot both append the same
new keys or compute the same rows twice.

Object-store tables (s3://, gs://, ...): a Lance tag held on a renewable lease (`lease`).
Local tables: an advisory ``flock`` on a file beside the table. The kernel releases it when the last
descriptor of its open file is closed, so a holder that dies (SIGKILL, OOM) never leaves
a stale lock: the next apply takes it over at once. Forked worker processes would inherit
that descriptor and keep the lock alive after their parent's death, so every worker drops
its copy first thing (`lifetime.worker_init`, through `lifetime.parent_only`). The pid written
in the file is only for messages. A branch apply takes the same lock as main's: one writer
per table.

The lock is keyed by the table's identity (`TableRef.identity`): a local table's resolved real
path, so a symlinked folder, a ``file://`` URI and relative or absolute spellings all take one
lock file, beside the real folder; an object-store table's canonical URI.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockHeld, RunError
from ..lifetime import parent_only


def lock_path(uri: str) -> Path:
    """The lock file of the local table `uri` (any spelling): beside its real folder. A folder of
    that name (the lock dataset an earlier featurekit kept for a ``file://`` table) holds it."""
    from .ref import table_identity
    table = Path(table_identity(os.fspath(uri)))
    path = table.parent / f".{table.name}.featurekit-lock"
    return path / "flock" if path.is_dir() else path


@contextmanager
def table_lock(where):
    """Hold the writer lock of the table `where` (a `TableRef` or a URI) while the block runs."""
    from .ref import as_ref
    ref = as_ref(where)
    if ref.remote:
        with _object_store_lock(ref):
            yield
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): unlocked
        yield
        return
    uri = ref.uri
    path = lock_path(ref.identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(_busy_message(fh, path, uri), table=uri) from None
        _write_pid(fh)
        try:
            with parent_only(fh.fileno()):
                yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)  # the pid stays in the file: only the flock counts


def lock_dataset_uri(uri: str) -> str:
    """An object-store table's lock lives in an empty Lance dataset beside it,
    ``.<name>.lance.featurekit-lock`` (no ``.lance`` suffix: LanceDB does not list it as a table)."""
    parent, name = uri.rstrip("/").rsplit("/", 1)
    return f"{parent}/.{name}.featurekit-lock"


@contextmanager
def _object_store_lock(ref):
    """The tag lock, on a dataset of its own beside the table rather than on the table: it
    exists before the table does (two first applies racing to create a table on S3 can both
    "succeed", one silently overwritten), and its tag pins none of the table's versions."""
    from .lease import tag_lock
    lock = lock_dataset(ref)
    with tag_lock(lock.dataset, ref.uri, key=ref.identity):
        yield


def lock_dataset(ref, *, create: bool = True):
    """The `Table` of the empty dataset beside an object-store table that holds its writer lock
    and its readers' leases (`readers`); created when missing unless `create` is False (then None)."""
    from .handle import Table
    from .ref import TableRef
    lock = Table(TableRef(lock_dataset_uri(ref.identity), ref.options))
    if not lock.exists:
        if not create:
            return None
        import pyarrow as pa
        try:
            lock.write(pa.table({"lock": pa.array([], pa.int8())}))
        except OSError as exc:  # another apply created it first: the same empty dataset
            if "already exists" not in str(exc):
                raise RunError(f"could not create the writer lock of {ref.uri} at {lock.uri}: {exc}") from exc
            lock.refresh()
    return lock


def _write_pid(fh) -> None:
    """For messages only: a full disk must not stop the apply here."""
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
    except OSError:
        pass


def _busy_message(fh, path: Path, uri: str) -> str:
    fh.seek(0)
    holder = fh.read().strip()  # empty if the holder has not written its pid yet
    if holder.isdigit() and not _alive(int(holder)):
        holders = _processes_holding(path)
        who = f"processes {', '.join(map(str, holders))}" if holders else "another process"
        return (f"the lock on {uri} is held by {who} left behind by featurekit apply (pid {holder}), "
                f"which is gone; stop them (kill {' '.join(map(str, holders)) or 'PID'}), then run apply again")
    who = f"another featurekit apply (pid {holder})" if holder.isdigit() else "another featurekit apply"
    return f"{who} is writing {uri}; wait for it to finish, then run apply again"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes_holding(path: Path) -> list[int]:
    """Other pids with a descriptor open on `path` (Linux /proc; empty elsewhere)."""
    target = str(path.resolve())
    out = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    out.append(int(pid))
                    break
            except OSError:
                continue
    return sorted(out)
