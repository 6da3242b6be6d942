"""Where a table lives: its main URI, the object-store options that reach it, and a branch.

A branch needs its own root, ``<uri>/tree/<branch>``: a branch's new data files live under
that root, and a dataset opened any other way (``checkout_version((branch, None))``) reports
main's URI, so files written beside it would land in main's data folder (notes/lance-facts.md).

Storage options come from the spec's ``table.storage_options``. A value may name environment
variables as ``${NAME}`` (``$$`` is a literal ``$``); they are expanded when the table is
first reached, never when the spec is parsed, so a secret stays out of the spec, out of git,
out of plans and out of the apply log.
"""
from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import UsageError

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
        """On an object store (not a local path, nor a ``file://`` URI)."""
        return self.local_path is None

    @property
    def local_path(self) -> str | None:
        """Main's folder, absolute, for a local table (a path or a ``file://`` URI); None on an object store."""
        return local_path(self.uri)

    @property
    def identity(self) -> str:
        """One name per table, whatever its spelling: the resolved real path of a local table
        (symlinked folders, ``file://``, relative and absolute spellings agree), the canonical
        URI of an object store's. The writer lock is keyed by it."""
        return table_identity(self.uri)

    @property
    def root(self) -> str:
        """Where this ref's manifests and new data files live. A local path (or ``file://`` URI)
        is made an absolute path: a branch records main's path as given when it is created, and
        a relative one would make the branch unreadable from any other working directory
        (notes/lance-facts.md); one spelling also keeps ``file://`` and plain-path writers alike."""
        base = self.local_path or self.uri
        return base if self.branch is None else f"{base.rstrip('/')}/tree/{self.branch}"

    def on(self, branch: str | None) -> TableRef:
        return dataclasses.replace(self, branch=branch)

    @property
    def main(self) -> TableRef:
        return self.on(None)


_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def local_path(uri: str) -> str | None:
    """The absolute local path of `uri` (a path or a ``file://`` URI); None for any other scheme."""
    if "://" not in uri:
        return os.path.abspath(uri)
    scheme, rest = uri.split("://", 1)
    if scheme.lower() != "file":
        return None
    parsed = urllib.parse.urlsplit(f"file://{rest}")
    path = urllib.parse.unquote(parsed.path)
    if parsed.netloc not in ("", "localhost"):  # file://relative/x: Lance reads it as a relative path
        path = f"{parsed.netloc}{path}"
    return os.path.abspath(path or ".")


def table_identity(uri: str) -> str:
    """See `TableRef.identity`."""
    path = local_path(uri)
    if path is not None:
        return os.path.realpath(path)
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    bucket, _, key = rest.partition("/")
    key = "/".join(part for part in key.split("/") if part not in ("", "."))
    return f"{_SCHEME_ALIASES.get(scheme, scheme)}://{bucket.lower() if scheme in ('s3', 's3a', 's3n', 'gs', 'gcs') else bucket}/{key}"


def as_ref(where: Any) -> TableRef:
    if isinstance(where, TableRef):
        return where
    return TableRef(os.fspath(where))


def table_ref(project) -> TableRef:
    """The table a resolved project reads and writes (its branch, when it names one)."""
    table = project.spec.table
    return TableRef(project.table_uri, tuple(sorted(table.storage_options.items())), table.branch)
