"""Where a table lives and how featurekit reaches it: every open, write and commit goes through here.

A `TableRef` is a table's main URI, the object-store options that reach it and, optionally, a
Lance branch. Why one place: an ``s3://`` table needs its storage options on every call that
touches storage (opening a dataset, a `LanceFileWriter`, a commit, an append), and a branch
needs its own root, ``<uri>/tree/<branch>``: a branch's new data files live under that root,
and a dataset opened any other way (``checkout_version((branch, None))``) reports main's URI,
so files written beside it would land in main's data folder (notes/lance-facts.md section 4).

Storage options come from the spec's ``table.storage_options``. A value may name environment
variables as ``${NAME}`` (``$$`` is a literal ``$``); they are expanded when the table is
first reached, never when the spec is parsed, so a secret stays out of the spec, out of git,
out of plans and out of the apply log.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import RunError, UsageError
from ..spec.names import LOCK_PREFIX, check_ref_name

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")
def expand_options(raw: Mapping[str, str]) -> dict[str, str]:
    """Storage options with ``${NAME}`` replaced from the environment."""
    out = {}
    for key, value in raw.items():
        def sub(m: re.Match, key=key) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in os.environ:
                raise UsageError(f"table.storage_options.{key}: environment variable {name} is not set; "
                                 f"export {name}=... (the spec names it so the value stays out of git)")
            return os.environ[name]
        out[key] = _VAR.sub(sub, str(value))
    return out


@dataclass(frozen=True)
class TableRef:
    """A table: its main URI, its storage options as written in the spec, and a branch (or None).

    Picklable (data-loader workers reopen the table themselves)."""

    uri: str
    options: tuple[tuple[str, str], ...] = ()
    branch: str | None = None

    def __str__(self) -> str:
        return self.uri if self.branch is None else f"{self.uri} (branch {self.branch})"

    @cached_property
    def storage_options(self) -> dict[str, str] | None:
        return expand_options(dict(self.options)) or None

    @property
    def remote(self) -> bool:
        return "://" in self.uri

    @property
    def root(self) -> str:
        """Where this ref's manifests and new data files live. A local path is made absolute:
        a branch records main's path as given when it is created, and a relative one would
        make the branch unreadable from any other working directory (notes/lance-facts.md)."""
        base = self.uri if self.remote else os.path.abspath(self.uri)
        return base if self.branch is None else f"{base.rstrip('/')}/tree/{self.branch}"

    def on(self, branch: str | None) -> TableRef:
        return dataclasses.replace(self, branch=branch)

    @property
    def main(self) -> TableRef:
        return self.on(None)


def as_ref(where: Any) -> TableRef:
    if isinstance(where, TableRef):
        return where
    return TableRef(os.fspath(where))


def table_ref(project) -> TableRef:
    """The table a resolved project reads and writes (its branch, when it names one)."""
    table = project.spec.table
    return TableRef(project.table_uri, tuple(sorted(table.storage_options.items())), table.branch)


# -- opening ------------------------------------------------------------------------------

def open_dataset(where: Any, version: int | str | None = None):
    """The Lance dataset at `where` (a TableRef, or a URI), latest version or `version` (a
    number on the ref's branch, or a tag); None when the table (or the branch) does not exist.
    A version or tag that does not exist is a UsageError."""
    ref = as_ref(where)
    if not ref.remote and not os.path.isdir(ref.root):
        return None
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


def reopen(ds):
    """The latest version of the dataset `ds` was opened from (same root, same options)."""
    import lance
    return lance.dataset(ds.uri, storage_options=ds.initial_storage_options)


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
    raise RunError(f"table {ref.uri} does not exist yet; run 'featurekit apply' first")


# -- writing ------------------------------------------------------------------------------

def write_dataset(data, where: Any, *, mode: str, **kwargs):
    """`lance.write_dataset` onto the ref's root (its branch), with its storage options."""
    import lance
    ref = as_ref(where)
    if mode == "create" and ref.branch is not None:
        raise RunError(f"{ref.uri} does not exist, so it has no branch {ref.branch!r} to write; "
                       "run apply without --branch first")
    return lance.write_dataset(data, ref.root, mode=mode, storage_options=ref.storage_options, **kwargs)


def commit(where: Any, operation, read_version: int):
    """Commit `operation` onto the ref's branch (or onto the dataset `where`, an open LanceDataset)."""
    import lance
    if isinstance(where, lance.LanceDataset):
        return lance.LanceDataset.commit(where, operation, read_version=read_version)
    ref = as_ref(where)
    return lance.LanceDataset.commit(ref.root, operation, read_version=read_version,
                                     storage_options=ref.storage_options)


# -- branches and tags --------------------------------------------------------------------

def branches(where: Any) -> dict[str, dict]:
    """Branches of the table: name -> Lance's record (parent_branch, parent_version, create_at)."""
    main = open_dataset(as_ref(where).main)
    return dict(main.branches.list()) if main is not None else {}


def ensure_branch(ref: TableRef):
    """The branch's dataset, created from main's current version when it does not exist yet.
    Returns (dataset, created). Main itself is never written: only ``_refs/branches/<name>.json``
    and ``tree/<name>/`` appear."""
    existing = open_dataset(ref)
    if existing is not None or ref.branch is None:
        return existing, False
    main = open_dataset(ref.main)
    if main is None:
        return None, False
    main.create_branch(ref.branch, main.version)  # a branch that exists would be an internal error
    return open_dataset(ref), True


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
