"""`featurekit status`: what the table holds against the spec, per feature and per slice."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..planning.planner import build_plan
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table
from ..table.metadata import applies, failed_filter, sql_quote, state_column, stored_features, stored_slices


@dataclass(frozen=True)
class FeatureStatus:
    name: str
    state: str                 # fresh | stale | new | incomplete | orphaned
    columns: tuple[str, ...]
    computed: int = 0
    failed: int = 0
    pending: int = 0
    errors: tuple[tuple[Any, str], ...] = ()
    reasons: tuple[str, ...] = ()
    outside: int = 0           # rows outside its `only:` slice: never computed, by design
    only: str | None = None
    last_error: str | None = None  # why the latest apply that ran it failed it as a whole (not fresh since)


@dataclass(frozen=True)
class SliceStatus:
    name: str
    state: str                 # fresh | stale | new | incomplete (rows not examined yet)
    splits: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    pending: int = 0           # rows to examine: new, or waiting for an upstream value
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexStatus:
    column: str
    type: str
    state: str                 # fresh | stale (rows to add) | new | outdated (definition changed) | waiting | orphaned
    name: str
    unindexed: int = 0         # rows the index does not cover yet (appended, or in rewritten fragments)
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    table: str
    exists: bool
    version: int | None
    rows: int
    features: tuple[FeatureStatus, ...]
    history: tuple[dict, ...] = field(default_factory=tuple)  # applies: which Lance versions each made
    slices: tuple[SliceStatus, ...] = ()
    # the last apply's check results: {version, at, results: [CheckResult.to_dict()]} ({}: none ran)
    checks: dict = field(default_factory=dict)
    indexes: tuple[IndexStatus, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def status(spec: str | Path | Project, *, registry: Registry | None = None, errors: int = 3,
           branch: str | None = None) -> Status:
    """Per feature: fresh or stale, rows computed, failed (the first `errors` messages),
    pending, outside its `only:` slice; per slice: rows per split; the apply log."""
    project = project_of(spec, registry, branch)
    table = Table.of(project)
    if table.branch:
        table.require()  # a branch that does not exist is an error, not "new"
    return table_status(project, table, errors=errors)


def table_status(project: Project, table: Table, errors: int = 3) -> Status:
    ds = table.dataset
    if ds is None:
        feats = tuple(FeatureStatus(n, "new", tuple(f.columns), only=f.spec.only) for n, f in project.features.items())
        return Status(str(table.ref), False, None, 0, feats,
                      slices=tuple(SliceStatus(n, "new") for n in project.slices))
    from ..ingest.prepare import prepare_ingest
    the_plan = build_plan(project, ds, prepare_ingest(project, ds))  # changed or new source rows: pending
    rows = ds.count_rows()
    log = applies(ds.schema)
    out = [_feature(project, ds, step, rows, errors) for step in the_plan.features]
    out = [dataclasses.replace(f, last_error=_last_error(log, f.name)) if f.state != "fresh" else f for f in out]
    for name, s in sorted(stored_features(ds.schema).items()):
        if name not in project.features:
            out.append(_orphan(ds, name, s))
    slices = tuple(_slice(ds, step) for step in the_plan.slices)
    return Status(str(table.ref), True, ds.version, rows, tuple(out), tuple(log), slices, last_checks(log),
                  tuple(_index(step) for step in the_plan.indexes))


INDEX_STATES = {"none": "fresh", "optimize": "stale", "create": "new", "recreate": "outdated", "wait": "waiting",
                "keep": "orphaned", "drop": "orphaned"}


def _index(step) -> IndexStatus:
    return IndexStatus(step.column, step.type, INDEX_STATES[step.action], step.old or step.name,
                       step.rows or 0 if step.action == "optimize" else 0, step.reasons)


def _last_error(log: list[dict], feature: str) -> str | None:
    """The error the latest apply that ran `feature` recorded for it as a whole, if any."""
    for entry in reversed(log):
        if feature in entry.get("features", {}):
            return entry["features"][feature].get("error")
    return None


def last_checks(log: list[dict]) -> dict:
    """The check results the latest apply that ran checks recorded."""
    for entry in reversed(log):
        if isinstance(entry.get("checks"), list):
            return {"version": entry.get("version_to"), "at": entry.get("at"), "results": entry["checks"]}
    return {}


def _feature(project: Project, ds, step, rows: int, errors: int) -> FeatureStatus:
    f = project.features[step.name]
    only = f.spec.only
    outside = 0
    if only and only in stored_slices(ds.schema):
        outside = ds.count_rows(filter=f"{project.slices[only].column} IS NULL")
    if step.action == "create":
        return FeatureStatus(step.name, "new", step.columns, pending=rows - outside, outside=outside, only=only)
    state = f.state_column
    if step.action == "recompute":
        computed, failed, pending = 0, 0, step.rows if step.rows is not None else rows - outside
    else:  # the plan counted failed and pending rows (inside an `only:` slice) already
        computed = ds.count_rows(filter=f"{state} = {sql_quote(f.fingerprint)}")
        failed, pending = step.failed_rows, step.new_rows + step.changed_rows + step.outdated_rows
    sample = ()
    if failed:
        cols = [c for c in [project.key, state] if c and c in ds.schema.names]
        tbl = ds.to_table(columns=cols, filter=failed_filter(state, f.fingerprint), limit=errors)
        keys = tbl.column(project.key).to_pylist() if project.key in tbl.column_names else [None] * tbl.num_rows
        sample = tuple((k, s.split("!", 1)[1]) for k, s in zip(keys, tbl.column(state).to_pylist()))
    label = "stale" if step.action == "recompute" else ("fresh" if not (failed or pending) else "incomplete")
    return FeatureStatus(step.name, label, step.columns, computed, failed, pending, sample, step.reasons,
                         outside, only)


def _orphan(ds, name: str, stored) -> FeatureStatus:
    """A feature the spec no longer has: its values stay in the table until `apply --prune`."""
    state = state_column(name)
    computed = failed = 0
    if state in ds.schema.names:
        computed = ds.count_rows(filter=f"{state} = {sql_quote(stored.fingerprint)}")
        failed = ds.count_rows(filter=failed_filter(state, stored.fingerprint))
    return FeatureStatus(name, "orphaned", stored.columns, computed, failed,
                         reasons=("not in the spec: its columns and values stay until 'featurekit apply --prune' "
                                  "drops them",))


def _slice(ds, step) -> SliceStatus:
    from ..curation.report import slice_counts
    if step.action == "create":
        return SliceStatus(step.name, "new", pending=ds.count_rows())
    splits, removed, waiting, unexamined = slice_counts(ds, step.name)
    label = {"recompute": "stale", "fill": "incomplete", "none": "fresh", "skip": "fresh"}[step.action]
    return SliceStatus(step.name, label, splits, removed, step.rows or 0, tuple(step.reasons))
