"""What apply does to the table's indexes: build the declared ones that are missing, rebuild those
whose definition changed, add unindexed rows to the others, drop orphans with --prune.

The same function plans (`plan` shows the steps, before the data changes) and decides at the
end of an apply (on the table as the apply left it), so the two never disagree on the rules.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..table.indexes import build_params, index_name, stored_indexes, unindexed_rows, valued_rows
from .resolve import Project


@dataclass(frozen=True)
class IndexStep:
    column: str
    type: str                   # the spec's type (IVF_PQ, BTREE, ...); Lance's for an orphan
    action: str                 # create | recreate | optimize | none | wait | drop | keep
    name: str                   # the index's name (the one to build for create/recreate)
    reasons: tuple[str, ...] = ()
    rows: int | None = None     # rows to add (optimize) or to index (create); None: known at the end
    old: str | None = None      # recreate: the index replaced

    @property
    def has_work(self) -> bool:
        return self.action in ("create", "recreate", "optimize", "drop")


def index_steps(project: Project, ds, *, prune: bool = False, incoming: int = 0,
                rewritten: frozenset[str] = frozenset()) -> tuple[IndexStep, ...]:
    """Steps for the spec's indexes on `ds` (None: no table yet). `incoming`: rows the apply
    will append first; `rewritten`: columns it creates or recomputes whole (their indexes go
    with them). At the end of an apply both are empty: the table is what it is."""
    stored = stored_indexes(ds)
    rows = (ds.count_rows() if ds is not None else 0) + incoming
    names = set(ds.schema.names) if ds is not None else set()
    out = []
    for col, ix in project.spec.indexes.items():
        name = index_name(col, build_params(ix, rows))
        if col in rewritten or (ds is None and incoming):
            out.append(IndexStep(col, ix.type, "create", name, ("after the column is written by this apply",)))
            continue
        if col not in names:
            out.append(IndexStep(col, ix.type, "wait", name, ("the column is not in the table yet",)))
            continue
        ours = [s for s in stored if s.ours and s.column == col]
        current = next((s for s in ours if s.name == name), None)
        if current is None and ds is not None and not incoming and valued_rows(ds, col) == 0:
            out.append(IndexStep(col, ix.type, "wait", name, ("the column has no values yet",)))
        elif current is None and ours:
            out.append(IndexStep(col, ix.type, "recreate", name, (f"definition changed: {ours[0].name} -> {name}",),
                                 rows, old=ours[0].name))
        elif current is None:
            out.append(IndexStep(col, ix.type, "create", name, ("new index",), rows))
        else:
            todo = unindexed_rows(ds, current) + incoming
            out.append(IndexStep(col, ix.type, "optimize" if todo else "none", name, (), todo))
    for s in stored:
        if s.ours and s.column not in project.spec.indexes:
            out.append(IndexStep(s.column, s.type, "drop" if prune else "keep", s.name))
    return tuple(out)


def describe(step: IndexStep) -> str:
    what = f"index {step.column} ({step.type})"
    rows = "" if step.rows is None else f" over {step.rows} row(s)"
    return {"create": f"+ {what}: build{rows}", "recreate": f"~ {what}: rebuild{rows}",
            "optimize": f"~ {what}: add {step.rows} unindexed row(s)", "none": f"= {what}: up to date",
            "wait": f"  {what}: waiting", "drop": f"- {what}: drop {step.name} (--prune)",
            "keep": f"- {what}: orphaned: not in the spec; kept (apply --prune drops it)"}[step.action]
