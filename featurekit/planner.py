"""The plan: what an apply would do and why, as a frozen value you can print and diff.

`build_plan` compares the resolved project with what the table records (field metadata
and per-row state columns) and the source with what was last ingested.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .ingest import PreparedIngest, show_keys
from .resolve import Feature, Project, state_column
from .table import StoredFeature, failed_filter, stored_features, todo_filter


@dataclass(frozen=True)
class IngestStep:
    files: int
    changed: bool               # the source was read (its files changed since the last ingest)
    new_rows: int               # rows with new keys, to append
    already_present: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_keys: dict[str, tuple] = field(default_factory=dict)  # per reason, keys of rows skipped
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
    failed_rows: int = 0        # rows that failed last time and will be retried
    outdated_rows: int = 0      # rows computed by another definition (an interrupted recompute)

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

    @property
    def is_noop(self) -> bool:
        return not (self.ingest and self.ingest.has_work) and not any(s.has_work for s in self.features) \
            and not any(o.action == "drop" for o in self.orphans)

    def step(self, name: str) -> FeatureStep:
        return next(s for s in self.features if s.name == name)

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
            if not i.changed:
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
        for s in self.features:
            lines.append(f"  {_symbol(s.action)} {s.name} (tier {s.tier}): {_describe(s)}")
            for reason in s.reasons:
                lines.append(f"      {reason}")
        for o in self.orphans:
            verb = "drop (--prune)" if o.action == "drop" else "orphaned: not in the spec; kept (apply --prune drops it)"
            lines.append(f"  - {o.name}: {verb} [{', '.join(o.columns)}]")
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


def _describe(s: FeatureStep) -> str:
    if s.action == "skip":
        return "not selected"
    if s.action == "none":
        return "up to date"
    rows = "all rows" if s.rows is None else f"{s.rows} row(s)"
    if s.action == "create":
        return f"new column(s) {', '.join(s.columns)}: compute {rows}"
    if s.action == "recompute":
        return f"stale: recompute {rows}"
    parts = []
    if s.new_rows:
        parts.append(f"{s.new_rows} new row(s) to fill")
    if s.failed_rows:
        parts.append(f"{s.failed_rows} failed row(s) to retry")
    if s.outdated_rows:
        parts.append(f"{s.outdated_rows} row(s) left by an interrupted run")
    return ", ".join(parts)


def stale_reasons(f: Feature, stored: StoredFeature, stale_upstream: set[str]) -> list[str]:
    reasons = []
    if stored.extractor != f.extractor_cls.name:
        reasons.append(f"extractor changed: {stored.extractor} -> {f.extractor_cls.name}")
    elif stored.version != str(f.extractor_cls.version):
        reasons.append(f"extractor version {stored.version} -> {f.extractor_cls.version}")
    params = f.params.model_dump(mode="json")
    changed = sorted(k for k in set(params) | set(stored.params) if params.get(k) != stored.params.get(k))
    if changed:
        reasons.append("params changed: " + ", ".join(
            f"{k} {json.dumps(stored.params.get(k))} -> {json.dumps(params.get(k))}" for k in changed))
    if stored.inputs != f.inputs:
        reasons.append(f"inputs changed: {stored.inputs} -> {f.inputs}")
    ups = sorted(u for u in f.depends_on if u in stale_upstream)
    if ups:
        reasons.append("upstream feature changed: " + ", ".join(ups))
    if not reasons:
        reasons.append(f"fingerprint {stored.fingerprint} -> {f.fingerprint}")
    return reasons


def build_plan(project: Project, dataset, prepared: PreparedIngest | None, *,
               selected: set[str] | None = None, max_tier: int | None = None, prune: bool = False) -> Plan:
    """Compare the project with the table; `dataset` is a LanceDataset or None."""
    stored = stored_features(dataset.schema) if dataset is not None else {}
    existing_cols = set(dataset.schema.names) if dataset is not None else set()
    total = dataset.count_rows() if dataset is not None else 0
    incoming = prepared.count if prepared else 0
    steps: list[FeatureStep] = []
    changing: set[str] = set()  # features whose definition changes in this plan
    for name, f in project.features.items():
        base = dict(name=name, tier=f.tier, columns=tuple(f.columns), fingerprint=f.fingerprint)
        if (selected is not None and f"feature:{name}" not in selected) or (max_tier and f.tier > max_tier):
            steps.append(FeatureStep(action="skip", reasons=(), **base))
            continue
        old = stored.get(name)
        missing_cols = [c for c in f.columns if c not in existing_cols]
        if old is None or missing_cols or f.state_column not in existing_cols:
            changing.add(name)
            steps.append(FeatureStep(action="create", reasons=("new feature",) if old is None else
                                     (f"columns missing from the table: {', '.join(missing_cols) or f.state_column}",),
                                     rows=_rows_in_scope(project, f, dataset, total, incoming), **base))
            continue
        if old.fingerprint != f.fingerprint:
            changing.add(name)
            steps.append(FeatureStep(action="recompute", reasons=tuple(stale_reasons(f, old, changing)),
                                     rows=_rows_in_scope(project, f, dataset, total, incoming), **base))
            continue
        steps.append(_fill_step(project, f, dataset, incoming, base))
    orphans = _orphans(project, stored, "drop" if prune else "keep")
    ingest = None
    if prepared is not None:
        ingest = IngestStep(files=len(project.source_files), changed=prepared.changed,
                            new_rows=prepared.new_rows.num_rows if prepared.new_rows is not None else 0,
                            already_present=prepared.already_present, skipped=prepared.issue_counts(),
                            skipped_keys={k: tuple(v) for k, v in prepared.skipped_keys().items()},
                            changed_keys=tuple(prepared.changed_keys), on_change=prepared.on_change,
                            gone_keys=tuple(prepared.gone_keys),
                            delete_gone=bool(set(prepared.gone_keys) & set(prepared.delete_keys)),
                            prune_blocked=prepared.prune_blocked)
    return Plan(spec=project.spec.name, table=project.table_uri, table_exists=dataset is not None,
                table_version=dataset.version if dataset is not None else None, table_rows=total,
                ingest=ingest, features=tuple(steps), orphans=orphans)


def only_filter(project: Project, f: Feature) -> str | None:
    if not f.spec.only:
        return None
    where = project.spec.slices[f.spec.only].where
    return f"({where})" if where else None


def _orphans(project: Project, stored: dict[str, StoredFeature], action: str) -> tuple[OrphanStep, ...]:
    """Columns the table holds for features the spec no longer has, or that a feature no
    longer produces (its ``outputs:`` changed)."""
    produced = {c for f in project.features.values() for c in f.columns}
    out = []
    for name, s in sorted(stored.items()):
        if name not in project.features:
            out.append(OrphanStep(name, s.columns + (state_column(name),), action))
        elif leftover := tuple(c for c in s.columns if c not in produced):
            out.append(OrphanStep(f"{name} (old outputs)", leftover, action))
    return tuple(out)


def count_rows(dataset, *filters: str | None) -> int | None:
    """Rows matching all `filters`; None when a filter names a column not in the table yet
    (an `only:` slice over a feature this apply creates)."""
    where = " AND ".join(f for f in filters if f)
    try:
        return dataset.count_rows(filter=where or None)
    except (ValueError, OSError):
        return None


def _rows_in_scope(project: Project, f: Feature, dataset, total: int, incoming: int) -> int | None:
    scope = only_filter(project, f)
    if scope is None:
        return total + incoming
    if dataset is None or incoming:
        return None  # the new rows' slice membership is known only once their features exist
    return count_rows(dataset, scope)


def _fill_step(project: Project, f: Feature, dataset, incoming: int, base: dict) -> FeatureStep:
    state, fp = f.state_column, f.fingerprint
    in_slice = only_filter(project, f)
    scope = in_slice
    failed = dataset.count_rows(filter=failed_filter(state, fp))
    todo = count_rows(dataset, todo_filter(state, fp), scope)
    if todo is None:  # the slice cannot be evaluated yet: every row not done may need work
        todo = dataset.count_rows(filter=todo_filter(state, fp))
        scope = None
    pending = dataset.count_rows(filter=" AND ".join(filter(None, [f"{state} IS NULL", scope]))) if todo else 0
    outdated = max(todo - pending - failed, 0)
    new_rows = pending + incoming
    if not (new_rows or failed or outdated):
        return FeatureStep(action="none", reasons=(), **base)
    rows = new_rows + failed + outdated if not (in_slice and incoming) else None
    return FeatureStep(action="fill", reasons=(), rows=rows, new_rows=new_rows, failed_rows=failed,
                       outdated_rows=outdated, **base)
