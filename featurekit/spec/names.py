"""Names a spec may give: features, slices, columns, Lance branches and tags.

The lowest layer that knows them, so that validating a spec never reaches the table layer.
"""
from __future__ import annotations

import re

from ..errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIX = "_fk_"
RESERVED_FEATURES = ("source",)  # _fk_source holds each row's source hash, not a feature's state
REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
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
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"{what} name {name!r} starts with {RESERVED_PREFIX!r}, which featurekit reserves")
    if what == "a feature" and name in RESERVED_FEATURES:
        raise ValueError(f"{what} cannot be named {name!r}: featurekit keeps each row's source hash in "
                         f"{RESERVED_PREFIX}{name}; rename the feature")
    return name
