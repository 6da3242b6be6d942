"""Targets: one spec, several places to run it (`targets: {dev: {...}, prod: {...}}`).

A target overrides `table` (its keys), `engine` (whole) and `source`'s `path` and
`files_root`. `select_target` returns the document as the chosen target sees it: the same
file and positions, the data with the target's values in place, and problems about an
overridden value pointing at the target's line (``targets.prod.table.db``). The target is
`--target`, else the environment's FEATUREKIT_TARGET, else the first one written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import Problem, UsageError
from .document import Document, Loc

ENV = "FEATUREKIT_TARGET"
TARGET_KEYS = ("table", "engine", "source")


@dataclass
class TargetDocument(Document):
    """A spec document with one target's overrides applied."""

    target: str = ""
    overridden: tuple[Loc, ...] = ()

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        loc = tuple(loc)
        if any(loc[:len(o)] == o for o in self.overridden):
            loc = ("targets", self.target) + loc
        return super().problem(loc, message, key=key)


def target_names(doc: Document) -> list[str]:
    """The spec's targets, in the order written (none: an empty list)."""
    data = doc.data if isinstance(doc.data, dict) else {}
    targets = data.get("targets")
    return [str(k) for k in targets] if isinstance(targets, dict) else []


def chosen_target(doc: Document, target: str | None) -> str | None:
    """The target to use: `target` (given explicitly), FEATUREKIT_TARGET, or the first."""
    names = target_names(doc)
    wanted = target or os.environ.get(ENV) or None
    if not names:
        if target:
            raise UsageError(f"{doc.file}: --target {target}: this spec has no targets:; add "
                             f"targets: {{{target}: {{table: ..., engine: ...}}}} or leave out --target")
        return None  # FEATUREKIT_TARGET set for a shell of several projects: a spec without targets ignores it
    if wanted is None:
        return names[0]
    if wanted not in names:
        how = "--target" if target else ENV
        raise UsageError(f"{doc.file}: {how} {wanted}: unknown target; the spec's targets: {', '.join(names)}")
    return wanted


def select_target(doc: Document, target: str | None = None) -> Document:
    """`doc` as target `target` (see `chosen_target`) sees it; `doc` itself without targets."""
    name = chosen_target(doc, target)
    if name is None:
        return doc
    over = doc.data["targets"].get(name)
    if not isinstance(over, dict):
        over = {}  # the spec's model reports a target that is not a mapping
    data = dict(doc.data)
    overridden: list[Loc] = []
    for key in TARGET_KEYS:
        if key not in over:
            continue
        value = over[key]
        if key == "engine" or not (isinstance(value, dict) and isinstance(data.get(key), dict)):
            data[key] = value
            overridden.append((key,))
        else:
            data[key] = {**data[key], **value}
            overridden.extend((key, k) for k in value)
    return TargetDocument(doc.file, data, doc.positions, doc.key_positions, target=name,
                          overridden=tuple(overridden))
