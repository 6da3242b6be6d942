"""One featurekit writer per table at a time (local tables), so two applies cannot both
append the same new keys or compute the same rows twice.

An advisory ``flock`` on a file beside the table: released by the OS if the process dies,
so a crash never leaves a stale lock. Object-store tables (s3://, gs://) are not locked.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError


def lock_path(uri: str) -> Path:
    table = Path(uri)
    return table.parent / f".{table.name}.featurekit-lock"


@contextmanager
def table_lock(uri: str):
    try:
        import fcntl
    except ImportError:  # no flock (Windows): unlocked, as for object stores
        fcntl = None
    if "://" in uri or fcntl is None:
        yield
        return
    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()  # empty if the holder has not written its pid yet
            who = f"another featurekit apply (pid {holder})" if holder.isdigit() else "another featurekit apply"
            raise RunError(f"{who} is writing {uri}; wait for it to finish, then run apply again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)  # the pid stays in the file: only the flock counts
