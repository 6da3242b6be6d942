"""The plan: what an apply would do and why, as a frozen value you can print and diff.

`build_plan` compares the resolved project with what the table records (field metadata
and per-row state columns) and the source with what was last ingested.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import UsageError
from ..ingest.prepare import PreparedIngest, show_keys
from ..plugins.function import is_code_version
from ..table.handle import table_ref
from ..table.metadata import (
    SLICE_VERSION,
    StoredFeature,
    StoredSlice,
    failed_filter,
    hash_column,
    slice_todo_filter,
    state_column,
    stored_features,
    stored_slices,
    todo_filter,
)
from .indexes import IndexStep, index_steps
from .indexes import describe as describe_index
from .inputkeys import sharing_mode
from .resolve import Feature, Project, Slice


@dataclass(frozen=True)
class IngestStep:
    files: int
    changed: bool               # the source was read (its files changed since the last ingest)
    new_rows: int               # rows with new keys, to append
    already_present: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_keys: dict[str, tuple] = field(default_factory=dict)  # per reason, keys of rows skipped
    skipped_examples: dict[str, tuple] = field(default_factory=dict)  # per reason, the first "where: why"
    changed_keys: tuple = ()    # keys whose source row differs from what was ingested
    on_change: str = "update"   # what apply does with them (source.on_change)
    gone_keys: tuple = ()       # keys in the table, no longer in the source
    delete_gone: bool = False   # apply --prune deletes them
    prune_blocked: str | None = None

    @property
    def has_work(self) -> bool:
        return bool(self.new_rows or (self.changed_keys and self.on_change != "ignore")
                    or (self.gone_keys and self.delete_gone))

    @property
    def action(self) -> str:
        return "append" if self.has_work else "none"

    @property
    def updated_rows(self) -> int:
        """Rows edited in the source, rewritten by this apply (``source.on_change: update``)."""
        return len(self.changed_keys) if self.on_change == "update" else 0

    @property
    def deleted_rows(self) -> int:
        """Rows gone from the source that this apply deletes (``--prune``)."""
        return len(self.gone_keys) if self.delete_gone else 0


def ingest_counts(step: IngestStep | None, written: int) -> dict[str, int]:
    """What an ingest did to the table's rows: new rows appended, edited rows rewritten,
    gone rows deleted. `written`: the rows it wrote (new ones and the edited ones' new content)."""
    updated = step.updated_rows if step is not None else 0
    return {"new": max(written - updated, 0), "updated": updated,
            "deleted": step.deleted_rows if step is not None else 0}


def ingest_done(entry: dict[str, Any]) -> list[str]:
    """An apply-log entry's ingest, short: ``ingested 5``, or ``ingested 0 new, 1 updated, 2 deleted``."""
    counts = entry.get("ingest_rows") or {"new": entry.get("ingested") or 0}
    if not (counts.get("updated") or counts.get("deleted")):
        return [f"ingested {counts['new']}"] if counts.get("new") else []
    return ["ingested " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("new", "updated", "deleted"))]


def describe_ingest(counts: dict[str, int]) -> str:
    """``ingested N row(s)``; with edits and deletions, each counted as such."""
    new, updated, deleted = counts.get("new", 0), counts.get("updated", 0), counts.get("deleted", 0)
    if not (updated or deleted):
        return f"ingested {new} row(s)"
    parts = [f"ingested {new} new row(s)"]
    if updated:
        parts.append(f"updated {updated} edited row(s)")
    if deleted:
        parts.append(f"deleted {deleted} row(s) gone from the source")
    return ", ".join(parts)


@dataclass(frozen=True)
class FeatureStep:
    name: str
    tier: int
    action: str                 # create | recompute | fill | none | skip
    reasons: tuple[str, ...]
    columns: tuple[str, ...]
    fingerprint: str
    rows: int | None = None     # rows to compute (None: the whole table, not yet known)
    new_rows: int = 0           # rows never computed (appended, or new in the slice)
    changed_rows: int = 0       # rows edited in the source, computed again (not among new_rows)
    failed_rows: int = 0        # rows that failed last time and will be retried
    outdated_rows: int = 0      # rows computed by another definition (an interrupted recompute)
    only_pending: str | None = None  # the `only:` slice runs first in this apply: rows known then
    distinct: int | None = None  # distinct inputs among the rows (the extractor runs once per input)
    sharing: str | None = None   # how rows with equal inputs get one value (`inputkeys.sharing_mode`)

    @property
    def has_work(self) -> bool:
        return self.action in ("create", "recompute", "fill")


@dataclass(frozen=True)
class SliceStep:
    """A curation slice: examine rows (filter, dedupe, split) and store their membership."""

    name: str
    tier: int
    action: str                 # create | recompute | fill | none | skip
    reasons: tuple[str, ...]
    fingerprint: str
    rows: int | None = None     # rows to examine (None: every row, count known after ingest)
    new_rows: int = 0           # rows never examined (appended), or waiting for an upstream value

    @property
    def has_work(self) -> bool:
        return self.action in ("create", "recompute", "fill")


@dataclass(frozen=True)
class OrphanStep:
    name: str
    columns: tuple[str, ...]
    action: str  # keep | drop


@dataclass(frozen=True)
class Plan:
    spec: str
    table: str
    table_exists: bool
    table_version: int | None
    table_rows: int
    ingest: IngestStep | None
    features: tuple[FeatureStep, ...]
    orphans: tuple[OrphanStep, ...] = ()
    slices: tuple[SliceStep, ...] = ()
    order: tuple[str, ...] = ()  # "feature:x" / "slice:y" in the order the engine runs them
    indexes: tuple[IndexStep, ...] = ()  # the spec's `indexes:`, done at the end of the apply

    @property
    def is_noop(self) -> bool:
        return not (self.ingest and self.ingest.has_work) and not any(s.has_work for s in self.steps) \
            and not any(o.action == "drop" for o in self.orphans) and not any(i.has_work for i in self.indexes)

    @property
    def steps(self) -> tuple[FeatureStep | SliceStep, ...]:
        """Feature and slice steps in the order they run: a slice after the features it
        reads, an `only:` feature after its slice."""
        by_key = {f"feature:{s.name}": s for s in self.features} | {f"slice:{s.name}": s for s in self.slices}
        ordered = [by_key[k] for k in self.order if k in by_key]
        return tuple(ordered + [s for k, s in by_key.items() if k not in self.order])

    def step(self, name: str) -> FeatureStep:
        return next(s for s in self.features if s.name == name)

    def slice_step(self, name: str) -> SliceStep:
        return next(s for s in self.slices if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["noop"] = self.is_noop
        if self.ingest:
            d["ingest"]["action"] = self.ingest.action
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def render(self) -> str:
        head = f"plan for {self.spec}: table {self.table}"
        head += f" (version {self.table_version}, {self.table_rows} rows)" if self.table_exists else " (new table)"
        lines = [head]
        if self.ingest:
            i = self.ingest
            if not i.files:
                lines.append("  source: no file matches the source path: nothing to ingest; rows gone from "
                             "the source cannot be told (featurekit validate says more)")
            elif not i.changed:
                lines.append("  source: unchanged since the last ingest")
            else:
                msg = f"  source: {i.files} file(s), {i.new_rows} new row(s) to append"
                if i.already_present:
                    msg += f", {i.already_present} already in the table"
                lines.append(msg)
                lines.extend(_source_changes(i))
                for what, n in sorted(i.skipped.items()):
                    keys = i.skipped_keys.get(what)
                    lines.append(f"    skip {n} row(s): {what}" + (f" (keys {show_keys(list(keys))})" if keys else ""))
                    lines.extend(f"      {example}" for example in i.skipped_examples.get(what, ()))
        for s in self.steps:
            what = f"slice {s.name}" if isinstance(s, SliceStep) else f"{s.name} (tier {s.tier})"
            lines.append(f"  {_symbol(s.action)} {what}: {_describe(s)}")
            for reason in s.reasons:
                lines.append(f"      {reason}")
        for o in self.orphans:
            verb = "drop (--prune)" if o.action == "drop" else "orphaned: not in the spec; kept (apply --prune drops it)"
            lines.append(f"  - {o.name}: {verb} [{', '.join(o.columns)}]")
        for ix in self.indexes:
            lines.append("  " + describe_index(ix))
            lines.extend(f"      {reason}" for reason in ix.reasons)
        if not self.table_exists and self.ingest is None:
            lines.append("the table does not exist and the spec has no source: add source: to create it")
        elif self.is_noop:
            lines.append("nothing to do: everything is up to date")
        return "\n".join(lines)


def _source_changes(i: IngestStep) -> list[str]:
    lines = []
    if i.changed_keys:
        what = {"update": "to update (their features are recomputed)", "ignore": "ignored (source.on_change: ignore)",
                "error": "refused (source.on_change: error): apply fails"}[i.on_change]
        lines.append(f"    {len(i.changed_keys)} changed row(s) {what}: keys {show_keys(list(i.changed_keys))}")
    if i.gone_keys:
        fate = "to delete (--prune)" if i.delete_gone else \
            (f"kept: --prune cannot delete them now, {i.prune_blocked}" if i.prune_blocked else
             "kept (apply --prune deletes them)")
        lines.append(f"    {len(i.gone_keys)} row(s) no longer in the source, {fate}: keys {show_keys(list(i.gone_keys))}")
    return lines


def _symbol(action: str) -> str:
    return {"create": "+", "recompute": "~", "fill": "~", "none": "=", "skip": " "}[action]


def _describe(s: FeatureStep | SliceStep) -> str:
    if s.action == "skip":
        return "not selected"
    if s.action == "none":
        return "up to date"
    if isinstance(s, SliceStep):
        rows = "every row" if s.rows is None else f"{s.rows} row(s)"
        if s.action == "create":
            return f"new slice: examine {rows}"
        if s.action == "recompute":
            return f"stale: examine {rows} again"
        return f"examine {rows}: new, or waiting for an upstream value"
    rows = "all rows" if s.rows is None else f"{s.rows} row(s)"
    if s.distinct is not None and s.rows is not None:
        rows = f"{s.rows} rows, {s.distinct} distinct inputs ({s.sharing})"
    if s.only_pending:
        rows = f"the rows of slice {s.only_pending} (known once it has run)"
    if s.action == "create":
        return f"new column(s) {', '.join(s.columns)}: compute {rows}"
    if s.action == "recompute":
        return f"stale: recompute {rows}"
    parts = [f"new rows of slice {s.only_pending} (known once it has run)"] if s.only_pending else []
    if s.new_rows:
        parts.append(f"{s.new_rows} new row(s) to fill")
    if s.changed_rows:
        parts.append(f"{s.changed_rows} edited row(s) to compute again")
    if s.distinct is not None and s.rows:
        parts.append(f"{s.rows} rows, {s.distinct} distinct inputs ({s.sharing})")
    if s.failed_rows:
        parts.append(f"{s.failed_rows} failed row(s) to retry")
    if s.outdated_rows:
        parts.append(f"{s.outdated_rows} row(s) left by an interrupted run")
    return ", ".join(parts)


def _written(params: dict, key: str) -> str:
    """A param as the spec wrote it; one the spec left out is the extractor's default."""
    return json.dumps(params[key]) if key in params else "(default)"


def runtime_note(f: Feature, stored: StoredFeature) -> str | None:
    """Runtime params that differ from the ones the column was computed with: said, never a recompute."""
    now = f.extractor_cls(f.params).runtime_params()
    old = stored.runtime_params
    changed = sorted(k for k in set(now) | set(old) if now.get(k) != old.get(k))
    if not changed:
        return None
    return ("runtime params changed (not in the fingerprint: nothing to recompute): " + ", ".join(
        f"{k} {_written(old, k)} -> {_written(now, k)}" for k in changed))


def version_reason(stored: str, cls: type) -> str:
    """Why a changed extractor version makes a column stale; a local function's version is its code."""
    if is_code_version(cls.version):
        where = Path(cls.origin).name if getattr(cls, "origin", "") else cls.name  # file.py:line
        what = "code changed" if is_code_version(stored) else f"extractor version {stored} -> its code"
        function = getattr(getattr(cls, "function", None), "__name__", cls.name)
        return f"{what}: function {function} ({where}), {stored} -> {cls.version}"
    return f"extractor version {stored} -> {cls.version}"


def stale_reasons(f: Feature, stored: StoredFeature, stale_upstream: set[str]) -> list[str]:
    reasons = []
    if stored.extractor != f.extractor_cls.name:
        reasons.append(f"extractor changed: {stored.extractor} -> {f.extractor_cls.name}")
    elif stored.version != str(f.extractor_cls.version):
        reasons.append(version_reason(stored.version, f.extractor_cls))
    params = f.extractor_cls(f.params).fingerprint_params()
    changed = sorted(k for k in set(params) | set(stored.params) if params.get(k) != stored.params.get(k))
    if changed:
        reasons.append("params changed: " + ", ".join(
            f"{k} {_written(stored.params, k)} -> {_written(params, k)}" for k in changed))
    if stored.inputs != f.inputs:
        reasons.append(f"inputs changed: {stored.inputs} -> {f.inputs}")
    ups = sorted(u for u in f.depends_on if u in stale_upstream)
    if ups:
        reasons.append("upstream feature changed: " + ", ".join(ups))
    if not reasons:
        reasons.append(f"fingerprint {stored.fingerprint} -> {f.fingerprint}")
    return reasons


def build_plan(project: Project, dataset, prepared: PreparedIngest | None, *,
               selected: set[str] | None = None, max_tier: int | None = None, prune: bool = False,
               count_distinct: bool = True) -> Plan:
    """Compare the project with the table; `dataset` is a LanceDataset or None.

    Steps come in graph order, so what a step depends on is planned before it: a slice
    knows whether its upstream features change, and an `only:` feature whether its slice
    runs first (then its rows are known only once the slice has run)."""
    ctx = _Context(project, dataset, prepared.count if prepared else 0, selected, max_tier)
    ctx.prepared = prepared
    ctx.edited = prepared.changed_rows.num_rows if prepared is not None and prepared.changed_rows is not None else 0
    ctx.deleting = len(prepared.delete_keys) if prepared is not None else 0
    steps: dict[str, FeatureStep | SliceStep] = {}
    for key in project.graph.order():
        kind, name = key.split(":", 1)
        if kind == "feature" and name in project.features:
            step = ctx.feature_step(project.features[name])
            steps[key] = ctx.with_distinct(step, project.features[name]) if count_distinct else ctx.working_on(step)
        elif kind == "slice" and name in project.slices:
            steps[key] = ctx.slice_step(project.slices[name])
    orphans = _orphans(project, ctx.stored, stored_slices(dataset.schema) if dataset is not None else {},
                       "drop" if prune else "keep", ctx.existing)
    ingest = None
    if prepared is not None:
        ingest = IngestStep(files=len(project.source_files), changed=prepared.changed,
                            new_rows=prepared.new_rows.num_rows if prepared.new_rows is not None else 0,
                            already_present=prepared.already_present, skipped=prepared.issue_counts(),
                            skipped_keys={k: tuple(v) for k, v in prepared.skipped_keys().items()},
                            skipped_examples={k: tuple(v) for k, v in prepared.skipped_examples().items()},
                            changed_keys=tuple(prepared.changed_keys), on_change=prepared.on_change,
                            gone_keys=tuple(prepared.gone_keys),
                            delete_gone=bool(set(prepared.gone_keys) & set(prepared.delete_keys)),
                            prune_blocked=prepared.prune_blocked)
    rewritten = frozenset(c for f in project.features.values() if f"feature:{f.name}" in steps
                          and steps[f"feature:{f.name}"].action in ("create", "recompute") for c in f.columns)
    indexes = index_steps(project, dataset, prune=prune, rewritten=rewritten,
                          incoming=prepared.new_rows.num_rows if prepared is not None and prepared.new_rows is not None
                          else 0)
    return Plan(spec=project.spec.name, table=str(table_ref(project)), table_exists=dataset is not None,
                table_version=dataset.version if dataset is not None else None, table_rows=ctx.total,
                ingest=ingest, features=tuple(steps[f"feature:{n}"] for n in project.features
                                              if f"feature:{n}" in steps),
                orphans=orphans, slices=tuple(steps[f"slice:{n}"] for n in project.slices if f"slice:{n}" in steps),
                order=tuple(steps), indexes=indexes)


class _Context:
    """What planning one step needs to know about the table and the steps planned before it."""

    def __init__(self, project: Project, dataset, incoming: int, selected: set[str] | None, max_tier: int | None):
        self.project, self.dataset, self.incoming = project, dataset, incoming
        self.selected, self.max_tier = selected, max_tier
        self.stored = stored_features(dataset.schema) if dataset is not None else {}
        self.stored_slices = stored_slices(dataset.schema) if dataset is not None else {}
        self.existing = set(dataset.schema.names) if dataset is not None else set()
        self.total = dataset.count_rows() if dataset is not None else 0
        self.edited = 0    # of `incoming`: new content of rows edited in the source
        self.deleting = 0  # rows the ingest deletes (edited rows' old content; gone rows with --prune)
        self.changing: set[str] = set()     # features and slices whose definition changes in this plan
        self.slice_work: set[str] = set()   # slices that run in this apply
        self.working: set[str] = set()      # features that compute in this apply

    def skipped(self, key: str, tier: int) -> bool:
        return (self.selected is not None and key not in self.selected) or bool(self.max_tier and tier > self.max_tier)

    # features ---------------------------------------------------------------------------
    def feature_step(self, f: Feature) -> FeatureStep:
        base = dict(name=f.name, tier=f.tier, columns=tuple(f.columns), fingerprint=f.fingerprint)
        if self.skipped(f"feature:{f.name}", f.tier):
            return FeatureStep(action="skip", reasons=(), **base)
        only = f.spec.only
        if only and only not in self.slice_work and only not in self.stored_slices:
            raise UsageError(f"feature {f.name!r} is computed only on slice {only!r}, which is not in the table "
                             f"yet and is not part of this apply; select '+{f.name}' (with what it depends on), "
                             "or run apply without --select/--tier")
        pending = only if only in self.slice_work else None
        if pending:
            base["only_pending"] = pending
        old = self.stored.get(f.name)
        missing_cols = [c for c in f.columns if c not in self.existing]
        if old is None or missing_cols or f.state_column not in self.existing:
            self.changing.add(f.name)
            reasons = ("new feature",) if old is None else \
                (f"columns missing from the table: {', '.join(missing_cols) or f.state_column}",)
            return FeatureStep(action="create", reasons=reasons, rows=self.rows_in_scope(f, pending), **base)
        if old.fingerprint != f.fingerprint:
            self.changing.add(f.name)
            return FeatureStep(action="recompute", reasons=tuple(stale_reasons(f, old, self.changing)),
                               rows=self.rows_in_scope(f, pending), **base)
        step = self.fill_step(f, base, pending)
        note = runtime_note(f, old)
        return dataclasses.replace(step, reasons=step.reasons + (note,)) if note else step

    def working_on(self, step: FeatureStep) -> FeatureStep:
        if step.has_work:
            self.working.add(step.name)
        return step

    def with_distinct(self, step: FeatureStep, f: Feature) -> FeatureStep:
        """The step with its distinct inputs counted (`distinct.py`), when that is cheap."""
        if not self.working_on(step).has_work:
            return step
        if step.only_pending or step.rows is None:
            return step
        scope = only_filter(self.project, f)
        prepared = getattr(self, "prepared", None)
        incoming = None
        if scope is None and prepared is not None:
            parts = [t for t in (prepared.new_rows, prepared.changed_rows) if t is not None and t.num_rows]
            incoming = pa.concat_tables(parts, promote_options="permissive") if parts else None
        where = [scope] if step.action in ("create", "recompute") else [todo_filter(f.state_column, f.fingerprint),
                                                                          scope]
        from .distinct import distinct_inputs
        n = distinct_inputs(self.project, f, self.dataset, where, incoming, self.working - {f.name})
        return dataclasses.replace(step, distinct=n, sharing=sharing_mode(f, self.project.columns) if n is not None
                                   else None)

    def rows_in_scope(self, f: Feature, pending: str | None) -> int | None:
        scope = only_filter(self.project, f)
        if scope is None:
            return self.total + self.incoming - self.deleting  # the rows after the ingest
        if self.dataset is None or pending:
            return None  # the slice runs first in this apply: its rows are known only then
        return count_rows(self.dataset, scope)

    def fill_step(self, f: Feature, base: dict, pending: str | None) -> FeatureStep:
        ds, state, fp = self.dataset, f.state_column, f.fingerprint
        scope = only_filter(self.project, f)
        failed = count_rows(ds, failed_filter(state, fp), scope) or 0
        todo = count_rows(ds, todo_filter(state, fp), scope) or 0
        new = count_rows(ds, f"{state} IS NULL", scope) or 0
        outdated = max(todo - new - failed, 0)
        new_rows = new + self.incoming - self.edited if scope is None else new
        edited = self.edited if scope is None else 0
        if pending:  # new rows of the slice are known once it has run
            return FeatureStep(action="fill", reasons=(), rows=None, new_rows=new_rows, changed_rows=edited,
                               failed_rows=failed, outdated_rows=outdated, **base)
        if not (new_rows or edited or failed or outdated):
            return FeatureStep(action="none", reasons=(), **base)
        return FeatureStep(action="fill", reasons=(), rows=new_rows + edited + failed + outdated, new_rows=new_rows,
                           changed_rows=edited, failed_rows=failed, outdated_rows=outdated, **base)

    # slices -------------------------------------------------------------------------------
    def slice_step(self, sl: Slice) -> SliceStep:
        base = dict(name=sl.name, tier=sl.tier, fingerprint=sl.fingerprint)
        if self.skipped(f"slice:{sl.name}", sl.tier):
            return SliceStep(action="skip", reasons=(), **base)
        absent = [f"feature {u!r}" for u in sl.depends_on
                  if u not in self.working and self.project.features[u].state_column not in self.existing]
        if sl.parent and sl.parent not in self.slice_work and sl.parent not in self.stored_slices:
            absent.append(f"slice {sl.parent!r}")
        if absent:
            raise UsageError(f"slice {sl.name!r} reads {', '.join(absent)}, which is not in the table yet and is not "
                             f"part of this apply; select '+{sl.name}' (with what it depends on), "
                             "or run apply without --select/--tier")
        old = self.stored_slices.get(sl.name)
        every = None if self.incoming else self.total
        if old is None or sl.state_column not in self.existing:
            self.changing.add(sl.name)
            self.slice_work.add(sl.name)
            return SliceStep(action="create", reasons=("new slice",), rows=every, **base)
        if old.fingerprint != sl.fingerprint:
            self.changing.add(sl.name)
            self.slice_work.add(sl.name)
            return SliceStep(action="recompute", reasons=tuple(slice_stale_reasons(sl, old, self.changing)),
                             rows=every, **base)
        todo = count_rows(self.dataset, slice_todo_filter(sl.state_column, sl.fingerprint)) or 0
        parent_runs = sl.parent in self.slice_work
        # rows this apply deletes may be keepers: the duplicates they removed are examined again
        deleting = bool(getattr(getattr(self, "prepared", None), "delete_keys", None))
        if not (todo or self.incoming or parent_runs or deleting):
            return SliceStep(action="none", reasons=(), **base)
        self.slice_work.add(sl.name)
        return SliceStep(action="fill", reasons=(), rows=todo + self.incoming, new_rows=todo + self.incoming, **base)


def slice_stale_reasons(sl: Slice, stored: StoredSlice, changing: set[str]) -> list[str]:
    reasons = []
    old, new = stored.definition, sl.definition
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            reasons.append(f"{key} changed: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    ups = sorted(u for u in [*sl.depends_on, *([sl.parent] if sl.parent else [])] if u in changing)
    if ups:
        reasons.append("upstream changed: " + ", ".join(ups))
    if stored.version != SLICE_VERSION:
        reasons.append(f"slice semantics version {stored.version} -> {SLICE_VERSION}")
    if not reasons:
        reasons.append(f"fingerprint {stored.fingerprint} -> {sl.fingerprint}")
    return reasons


def only_filter(project: Project, f: Feature) -> str | None:
    """The rows an `only:` feature is computed for: its slice's rows, every split."""
    if not f.spec.only:
        return None
    return f"({project.slices[f.spec.only].column} IS NOT NULL)"


def _orphans(project: Project, stored: dict[str, StoredFeature], slices: dict[str, StoredSlice],
             action: str, existing: set[str] = frozenset()) -> tuple[OrphanStep, ...]:
    """Columns the table holds for features or slices the spec no longer has, or that a
    feature no longer produces (its ``outputs:`` changed)."""
    produced = {c for f in project.features.values() for c in f.columns}
    out = []
    for name, s in sorted(stored.items()):
        if name not in project.features:
            keys = (hash_column(name),) if hash_column(name) in existing else ()  # its input keys
            out.append(OrphanStep(name, s.columns + (state_column(name),) + keys, action))
        elif leftover := tuple(c for c in s.columns if c not in produced):
            out.append(OrphanStep(f"{name} (old outputs)", leftover, action))
    for name in sorted(slices):
        if name not in project.slices:
            out.append(OrphanStep(f"slice {name}", (name, state_column(name)), action))
    return tuple(out)


def count_rows(dataset, *filters: str | None) -> int | None:
    """Rows matching all `filters`; None when a filter names a column not in the table yet
    (an `only:` slice over a feature this apply creates)."""
    if dataset is None:
        return None
    where = " AND ".join(f for f in filters if f)
    try:
        return dataset.count_rows(filter=where or None)
    except (ValueError, OSError):
        return None
