"""The one handle on a table: every open, write and commit of a command goes through a `Table`.

A `Table` is opened once (lazily, on first use) and then follows its own writes: each write
returns the Lance version it made and the handle moves to it, so nothing reopens the table
to find out where it stands. A writer outside the handle (a Geneva job) is followed with
`refresh()`. Readers of a fixed version (`at(version)`) do not move the handle.

Why one place: an ``s3://`` table needs its storage options on every call that touches
storage (opening a dataset, a `LanceFileWriter`, a commit, an append), and a branch needs
its own root (`TableRef.root`).
"""
from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from ..errors import CommitConflict, DiskFull, LockLost, RunError, TableNotFound, UsageError
from ..lifetime import disk_full
from ..spec.names import LOCK_PREFIX, check_ref_name
from .ref import TableRef, as_ref, table_ref


class Table:
    """A table as one command sees it: where it is (`ref`) and its current dataset."""

    def __init__(self, ref: TableRef):
        self.ref = ref
        self._ds = None
        self._opened = False

    @classmethod
    def of(cls, project) -> Table:
        return cls(table_ref(project))

    def __repr__(self) -> str:
        return f"Table({self.ref}, version={self.version})"

    @property
    def uri(self) -> str:
        return self.ref.uri

    @property
    def branch(self) -> str | None:
        return self.ref.branch

    # -- reading --------------------------------------------------------------------------
    @property
    def dataset(self):
        """The dataset at the handle's current version; None while the table (or branch) does not exist."""
        if not self._opened:
            self._ds, self._opened = open_dataset(self.ref), True
        return self._ds

    @property
    def exists(self) -> bool:
        return self.dataset is not None

    @property
    def version(self) -> int | None:
        return None if self.dataset is None else self.dataset.version

    @property
    def schema(self) -> pa.Schema | None:
        return None if self.dataset is None else self.dataset.schema

    def require(self):
        """The current dataset; a missing table or branch is an error that says what to run."""
        if self.dataset is None:
            require_dataset(self.ref)
        return self.dataset

    def refresh(self):
        """Move to the latest version (after a writer outside this handle, e.g. a Geneva job)."""
        self._ds, self._opened = open_dataset(self.ref), True
        return self._ds

    def at(self, version: int | str | None):
        """The dataset at `version` (a number on this branch, or a tag); the handle stays where it is."""
        if version is None or (self.dataset is not None and version == self.dataset.version):
            return self.require()
        return require_dataset(self.ref, version)

    @property
    def main(self) -> Table:
        """The table's main line (this handle itself when it is on main)."""
        return self if self.ref.branch is None else Table(self.ref.main)

    # -- writing: each returns the version it made ------------------------------------------
    # Every write is fenced on an object store: while this process holds the table's lease
    # (`lease.tag_lock`), a commit goes through only if the lease is still this writer's
    # (`TagLease.fence`, checked by Lance right before it puts the manifest), and records the
    # holder's generation. A writer that lost its lease gets `LockLost` and commits nothing.
    @property
    def lease(self):
        """The writer lease this process holds on this table (object stores; None otherwise)."""
        if not self.ref.remote:
            return None
        from .lease import held
        return held(self.ref.identity)

    def _fenced(self, exc: BaseException, lease) -> None:
        """A commit the fence refused surfaces from Lance as an OSError: say what it is."""
        if lease is not None and lease.lost is not None:
            raise LockLost(lease.lost + "; this writer stopped before committing, so nothing more of it is in the "
                           "table; run 'featurekit status', then apply again", table=self.ref.uri) from None

    def write(self, data, **kwargs) -> int:
        """Create the table from `data`, or append `data` to it."""
        import lance
        mode = "append" if self.exists else "create"
        if mode == "create" and self.ref.branch is not None:
            raise RunError(f"{self.ref.uri} does not exist, so it has no branch {self.ref.branch!r} to write; "
                           "run apply without --branch first")
        lease = self.lease
        if lease is not None:
            lease.check()  # before writing data files a lost writer could not commit
            kwargs = {**kwargs, "commit_lock": lease.fence(self._ds if mode == "append" else None),
                      "transaction_properties": {**kwargs.get("transaction_properties", {}), **lease.properties}}
        try:
            self._ds = lance.write_dataset(data, self.ref.root, mode=mode, storage_options=self.ref.storage_options,
                                           **kwargs)
        except OSError as exc:
            self._fenced(exc, lease)
            raise
        self._opened = True
        if lease is not None:
            self._unfence()
        return self._ds.version

    def _unfence(self) -> None:
        """A dataset returned by a commit given a ``commit_lock`` keeps it for its own later
        commits (``add_columns``...), which would call it where it deadlocks: reopen at the version."""
        import lance
        self._ds = lance.dataset(self.ref.root, version=self._ds.version, storage_options=self.ref.storage_options)

    def _check_lease(self) -> None:
        """Writes Lance gives no commit hook for (schema changes): the lease is checked just before."""
        lease = self.lease
        if lease is not None:
            lease.check(self.dataset, None)

    def add_columns(self, fields: list[pa.Field]) -> int:
        """Add all-null columns (metadata only: no data file is written)."""
        self._check_lease()
        self.require().add_columns(pa.schema(fields))
        return self._ds.version

    def drop_columns(self, names: list[str]) -> int:
        self._check_lease()
        self.require().drop_columns(list(names))
        return self._ds.version

    def update_field_metadata(self, updates: dict[str, dict[str, str]]) -> int:
        self._check_lease()
        self.require().update_field_metadata(updates, replace=True)
        return self._ds.version

    def create_index(self, column: str, name: str, params: dict) -> int:
        """Build index `name` on `column` (`table.indexes.build_params`); replaces one of that name."""
        from .indexes import create
        self._check_lease()
        create(self.require(), column, name, params)
        return self.refresh().version

    def optimize_indices(self, names: list[str]) -> int:
        """Add the rows these indexes do not cover yet (appended, or in replaced fragments)."""
        self._check_lease()
        self.require().optimize.optimize_indices(index_names=list(names))
        return self.refresh().version

    def drop_index(self, name: str) -> int:
        self._check_lease()
        self.require().drop_index(name)
        return self.refresh().version

    def commit(self, operation, read_version: int | None = None, *, what: str = "") -> int:
        """Commit a Lance operation read at `read_version` (default: the current version).
        A concurrent writer's conflicting change is a `CommitConflict`, a full disk `DiskFull`;
        `what` ("feature 'x'") says in their messages what was being committed."""
        import lance
        from lance.commit import CommitConflictError
        base = self.require()
        read_version = base.version if read_version is None else read_version
        lease, target, fence = self.lease, base, {}
        if lease is not None:  # by URI: `base` must not take the commit_lock along (see `_unfence`)
            operation = lance.Transaction(read_version, operation, transaction_properties=lease.properties)
            target, fence = self.ref.root, {"commit_lock": lease.fence(base),
                                            "storage_options": self.ref.storage_options}
        try:
            self._ds = lance.LanceDataset.commit(target, operation, read_version=read_version, **fence)
            if lease is not None:
                self._unfence()
        except OSError as exc:
            self._fenced(exc, lease)
            subject = f"could not commit {what} to {self.ref.uri}" if what else f"could not commit to {self.ref.uri}"
            if disk_full(exc):
                raise DiskFull(f"{subject}: the disk is full ({exc}); free some space and run apply again",
                               table=self.ref.uri) from exc
            if isinstance(exc, CommitConflictError):
                raise CommitConflict(f"{subject}: another writer changed the same fragments; run apply again",
                                     table=self.ref.uri) from exc
            raise RunError(f"{subject}: {exc}") from exc
        return self._ds.version

    # -- branches and tags --------------------------------------------------------------------
    def ensure_branch(self) -> bool:
        """Create the handle's branch from main's current version when it does not exist yet;
        True when it was created. Main itself is never written: only ``_refs/branches/<name>.json``
        and ``tree/<name>/`` appear."""
        if self.exists or self.ref.branch is None:
            return False
        main = open_dataset(self.ref.main)
        if main is None:
            return False
        main.create_branch(self.ref.branch, main.version)  # a branch that exists would be an internal error
        self.refresh()
        return True

    def check_new_tag(self, tag: str) -> None:
        """Before an apply writes anything: the tag name is valid and not taken."""
        check_new_tag(self.ref, tag)

    def create_tag(self, tag: str, version: int | None = None) -> int:
        """Tag `version` (default: the current one) of the handle's branch; returns the version tagged."""
        version = self.version if version is None else version
        create_tag(self.ref, tag, version)
        return version


# -- opening ------------------------------------------------------------------------------

def open_dataset(where: Any, version: int | str | None = None):
    """The Lance dataset at `where` (a TableRef, or a URI), latest version or `version` (a
    number on the ref's branch, or a tag); None when the table (or the branch) does not exist.
    A version or tag that does not exist is a UsageError."""
    ref = as_ref(where)
    if not ref.remote and not os.path.isdir(ref.root):
        return None  # (a local ref's root is a plain path, also when it was written as file://)
    import lance
    if isinstance(version, str):
        return _open_tag(ref, version)
    try:
        ds = lance.dataset(ref.root, storage_options=ref.storage_options)
    except (ValueError, FileNotFoundError, OSError) as exc:
        if _not_found(exc):
            return None
        raise RunError(f"cannot open {ref}: {exc}") from None
    if version is None or version == ds.version:
        return ds
    try:
        return lance.dataset(ref.root, version=version, storage_options=ref.storage_options)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(f"{ref} has no version {version} (latest: {ds.version}): {exc}") from None


def _not_found(exc: BaseException) -> bool:
    text = str(exc)
    return "not found" in text.lower() or "does not exist" in text.lower() or isinstance(exc, FileNotFoundError)


def _open_tag(ref: TableRef, tag: str):
    """A tag names a version on some branch: open that branch's root, so that the dataset's
    URI (and every file path derived from it) is the branch's."""
    main = open_dataset(ref.main)
    if main is None:
        return None
    tags = visible_tags(main)
    if tag not in tags:
        raise UsageError(f"{ref.uri} has no tag {tag!r}" + (f" (tags: {', '.join(sorted(tags))})" if tags
                                                           else " (it has no tags; create one with apply --tag)"))
    info = tags[tag]
    return open_dataset(ref.on(info.get("branch")), int(info["version"]))


def require_dataset(where: Any, version: int | str | None = None):
    """Like `open_dataset`, but a missing table or branch is an error that says what to run."""
    ref = as_ref(where)
    ds = open_dataset(ref, version)
    if ds is not None:
        return ds
    if ref.branch is not None and open_dataset(ref.main) is not None:
        names = ", ".join(sorted(branches(ref))) or "none"
        raise UsageError(f"{ref.uri} has no branch {ref.branch!r} (branches: {names}); "
                         f"create it with 'featurekit apply SPEC --branch {ref.branch}'")
    raise TableNotFound(f"table {ref.uri} does not exist yet; run 'featurekit apply' first", table=ref.uri)


# -- branches and tags --------------------------------------------------------------------

def branches(where: Any) -> dict[str, dict]:
    """Branches of the table: name -> Lance's record (parent_branch, parent_version, create_at)."""
    main = open_dataset(as_ref(where).main)
    return dict(main.branches.list()) if main is not None else {}


def visible_tags(ds) -> dict[str, dict]:
    """The table's tags (branch, version, created_at), without featurekit's lock tags."""
    return {name: info for name, info in ds.tags.list().items() if not name.startswith(LOCK_PREFIX)}


def check_new_tag(ref: TableRef, tag: str) -> None:
    """Before an apply writes anything: the tag name is valid and not taken."""
    check_ref_name(tag, "tag")
    main = open_dataset(ref.main)
    if main is not None and tag in visible_tags(main):
        info = visible_tags(main)[tag]
        where = f"version {info['version']}" + (f" of branch {info['branch']}" if info.get("branch") else "")
        raise UsageError(f"tag {tag!r} already exists ({where}) in {ref.uri}; choose another name, or delete it "
                         f"first: lance.dataset(URI).tags.delete({tag!r})")


def create_tag(ref: TableRef, tag: str, version: int) -> None:
    """Tag `version` of the ref's branch (tags are table-wide: one name, any branch)."""
    main = open_dataset(ref.main)
    main.tags.create(tag, version if ref.branch is None else (ref.branch, version))
