"""The Python API; the CLI is a thin shell around these functions. They return values."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Reporter, RunResult
from .errors import RunError, UsageError
from .ingest import prepare_ingest, remember_in_sync
from .lifetime import disk_full
from .loader import load_document
from .lock import table_lock
from .planner import Plan, build_plan
from .registry import Registry, default_registry
from .resolve import Project, resolve, table_uri
from .table import applies, failed_filter, open_dataset, sql_quote, stored_features


def load_spec(path: str | Path, *, registry: Registry | None = None) -> Project:
    """Parse, validate and resolve a spec; raises `SpecError` listing every problem."""
    path = Path(path)
    doc = load_document(path)
    registry = registry or default_registry()
    schema = _peek_schema(doc, path)
    return resolve(doc, registry, path, schema)


def _peek_schema(doc, path: Path):
    data = doc.data if isinstance(doc.data, dict) else {}
    table = data.get("table")
    if not (isinstance(table, dict) and isinstance(table.get("db"), str) and isinstance(table.get("name"), str)):
        return None
    from .spec import Spec, TableSpec
    uri = table_uri(Spec.model_construct(table=TableSpec.model_construct(db=table["db"], name=table["name"])), path.parent)
    ds = open_dataset(uri)
    return ds.schema if ds is not None else None


def _project(spec: str | Path | Project, registry: Registry | None) -> Project:
    return spec if isinstance(spec, Project) else load_spec(spec, registry=registry)


def _selection(project: Project, select: Iterable[str] | None) -> set[str] | None:
    select = [s for s in (select or []) if s.strip()]
    return project.graph.select(select) if select else None


def plan(spec: str | Path | Project, *, select: Iterable[str] | None = None, tier: int | None = None,
         prune: bool = False, registry: Registry | None = None) -> Plan:
    """What `apply` would do, and why. Reads the source only if its files changed."""
    project = _project(spec, registry)
    ds = open_dataset(project.table_uri)
    return build_plan(project, ds, prepare_ingest(project, ds, prune=prune), selected=_selection(project, select),
                      max_tier=tier, prune=prune)


@dataclass
class ApplyResult:
    plan: Plan
    run: RunResult | None

    @property
    def ok(self) -> bool:
        return self.run is None or self.run.ok


def apply(spec: str | Path | Project, *, engine: str | None = None, select: Iterable[str] | None = None,
          tier: int | None = None, dry_run: bool = False, prune: bool = False,
          reporter: Reporter | None = None, registry: Registry | None = None) -> ApplyResult:
    """Ingest the source and run the plan; `dry_run` only plans. Failed rows are recorded,
    and `ApplyResult.ok` is False when a feature exceeded its failure threshold."""
    project = _project(spec, registry)
    selected = _selection(project, select)
    if dry_run:
        return ApplyResult(plan(project, select=select, tier=tier, prune=prune), None)
    with table_lock(project.table_uri):  # plan and run under one lock: the plan stays true
        ds = open_dataset(project.table_uri)
        prepared = prepare_ingest(project, ds, prune=prune)
        the_plan = build_plan(project, ds, prepared, selected=selected, max_tier=tier, prune=prune)
        if the_plan.is_noop:
            remember_in_sync(project, ds, prepared)  # a source read and found in sync: no version
            return ApplyResult(the_plan, None)
        if prepared is not None:
            prepared.check()  # source.on_change: error refuses before anything is written
        run = _run(project, the_plan, prepared, engine, reporter)
        if run.version_after == the_plan.table_version:  # e.g. retries that failed again
            remember_in_sync(project, ds, prepared)
        return ApplyResult(the_plan, run)


def _run(project: Project, the_plan: Plan, prepared, engine: str | None, reporter: Reporter | None) -> RunResult:
    engine_name = engine or project.spec.engine.kind
    entry = project.registry.get("engine", engine_name)
    if entry is None:
        raise UsageError(project.registry.unknown("engine", engine_name))
    options = project.spec.engine.options if engine_name == project.spec.engine.kind else {}
    runner = entry.cls(options)
    try:
        return runner.run(project, the_plan, prepared, reporter or Reporter())
    except RunError:
        raise
    except Exception as exc:
        if disk_full(exc):  # committed work is kept; what was being written is not
            raise RunError(f"the disk holding {project.table_uri} is full ({exc}); free some space and run apply "
                           "again: finished work was committed and will not be redone") from exc
        raise


@dataclass(frozen=True)
class FeatureStatus:
    name: str
    state: str                 # fresh | stale | new | orphaned
    columns: tuple[str, ...]
    computed: int = 0
    failed: int = 0
    pending: int = 0
    errors: tuple[tuple[Any, str], ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    table: str
    exists: bool
    version: int | None
    rows: int
    features: tuple[FeatureStatus, ...]
    history: tuple[dict, ...] = field(default_factory=tuple)  # applies: which Lance versions each made

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


def status(spec: str | Path | Project, *, registry: Registry | None = None, errors: int = 3) -> Status:
    """Per feature: fresh or stale, rows computed, failed (first errors), pending."""
    project = _project(spec, registry)
    ds = open_dataset(project.table_uri)
    if ds is None:
        feats = tuple(FeatureStatus(n, "new", tuple(f.columns)) for n, f in project.features.items())
        return Status(project.table_uri, False, None, 0, feats)
    stored = stored_features(ds.schema)
    the_plan = build_plan(project, ds, prepare_ingest(project, ds))  # source rows changed or new: pending
    rows = ds.count_rows()
    out = []
    for step in the_plan.features:
        f = project.features[step.name]
        if step.action == "create":
            out.append(FeatureStatus(step.name, "new", step.columns, pending=rows))
            continue
        state = f.state_column
        if step.action == "recompute":
            computed, failed, pending = 0, 0, step.rows if step.rows is not None else rows
        else:  # the plan counted failed and pending rows (inside an `only:` slice) already
            computed = ds.count_rows(filter=f"{state} = {sql_quote(f.fingerprint)}")
            failed, pending = step.failed_rows, step.new_rows + step.outdated_rows
        sample = ()
        if failed:
            cols = [c for c in [project.key, state] if c and c in ds.schema.names]
            tbl = ds.to_table(columns=cols, filter=failed_filter(state, f.fingerprint), limit=errors)
            keys = tbl.column(project.key).to_pylist() if project.key in tbl.column_names else [None] * tbl.num_rows
            sample = tuple((k, s.split("!", 1)[1]) for k, s in zip(keys, tbl.column(state).to_pylist()))
        label = "stale" if step.action == "recompute" else ("fresh" if not (failed or pending) else "incomplete")
        out.append(FeatureStatus(step.name, label, step.columns, computed, failed, pending, sample, step.reasons))
    for name, s in sorted(stored.items()):
        if name not in project.features:
            out.append(FeatureStatus(name, "orphaned", s.columns))
    return Status(project.table_uri, True, ds.version, rows, tuple(out), tuple(applies(ds.schema)))
