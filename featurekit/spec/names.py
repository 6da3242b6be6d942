"""Names a spec may give: features, slices, columns, Lance branches and tags.

The lowest layer that knows them, so that validating a spec never reaches the table layer.
"""
from __future__ import annotations

import re

from ..errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would let "name\n" through
RESERVED_PREFIX = "_fk_"
# every prefix of the columns featurekit keeps beside a feature's (table/metadata.py): _fk_<name> is
# its state, _fkin_<feature> its input keys. No name in a spec may start with one.
RESERVED_PREFIXES = (RESERVED_PREFIX, "_fkin_")
LANCE_COLUMNS = ("_rowid", "_rowaddr", "_rowoffset", "_distance", "_score")  # Lance's own, in every scan
RESERVED_FEATURES = ("source",)  # _fk_source holds each row's source hash, not a feature's state
REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
RESERVED_REFS = ("main",)
LOCK_PREFIX = "featurekit-writer"  # tags featurekit's writer lock uses (lock.py): never a user's tag


def ref_problem(name: str, what: str) -> str | None:
    """Why `name` cannot be a branch or tag name, or None.

    Lance accepts more (non-ASCII, ``a/b``), but a non-ASCII tag breaks ``tags.list()`` for
    the whole table in pylance 14.0.2 and ``/`` nests folders: featurekit keeps to plain names."""
    if not isinstance(name, str) or not REF_NAME.match(name) or ".." in name:
        return (f"{what} name {name!r} must be 1-100 ASCII letters, digits, '.', '-' or '_', starting with a "
                "letter or digit, without '..'")
    if name in RESERVED_REFS:
        return f"{what} name {name!r} is reserved by Lance for the table's main line"
    if name.startswith(LOCK_PREFIX):
        return f"{what} name {name!r} starts with {LOCK_PREFIX!r}, which featurekit's writer lock uses"
    return None


def check_ref_name(name: str, what: str) -> str:
    problem = ref_problem(name, what)
    if problem:
        raise UsageError(problem)
    return name


def check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"{what} name {name!r} must be letters, digits and _, not starting with a digit")
    problem = reserved_problem(name)
    if problem:
        raise ValueError(f"{what} name {problem}")
    if what == "a feature" and name in RESERVED_FEATURES:
        raise ValueError(f"{what} cannot be named {name!r}: featurekit keeps each row's source hash in "
                         f"{RESERVED_PREFIX}{name}; rename the feature")
    return name


def reserved_problem(name: str) -> str | None:
    """Why `name` cannot name a column featurekit writes, or None: "'x' starts with ..."."""
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"{name!r} starts with {prefix!r}, which featurekit reserves"
    if name.lower() in LANCE_COLUMNS:
        return f"{name!r} is a column Lance adds to scans ({', '.join(LANCE_COLUMNS)}); choose another name"
    return None


def column_name_problem(name: str) -> str | None:
    """Why `name` cannot be a column of the table (a source column or a `files:` target), or None."""
    if not isinstance(name, str) or not name:
        return "a column name must not be empty"
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        what = "a byte that is not UTF-8" if ord(bad) >= 0xD800 else f"the control character {bad!r}"
        return f"column name {name!r} holds {what}; use printable characters"
    return reserved_problem(name)


TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def table_name_problem(name: str) -> str | None:
    """Why `name` cannot name a table inside a database, or None (it becomes `<db>/<name>.lance`:
    a '/' or '..' would put it elsewhere)."""
    if not TABLE_NAME.match(name) or ".." in name:
        return (f"table name {name!r} must be 1-128 ASCII letters, digits, '_', '.' or '-', starting with a "
                "letter, digit or '_', without '/' or '..'")
    return None
