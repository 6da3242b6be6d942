"""The Python API; the CLI is a thin shell around these functions. They return values."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .engine import Reporter, RunResult
from .errors import RunError, UsageError
from .ingest import prepare_ingest, remember_in_sync
from .lifetime import disk_full
from .loader import load_document
from .lock import table_lock
from .planner import Plan, build_plan
from .registry import Registry, default_registry
from .resolve import Project, resolve, table_uri
from .table import open_dataset


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
    if project.deferred and open_dataset(project.table_uri) is None:
        raise UsageError("; ".join(p.message.split(":")[0] for p in project.deferred) + ": nothing to apply yet")
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


def status(spec: str | Path | Project, *, registry: Registry | None = None, errors: int = 3):
    """Per feature: fresh or stale, rows computed, failed (first errors), pending, outside its
    `only:` slice; per slice: rows per split. See `featurekit.status.Status`."""
    from .overview import table_status
    return table_status(_project(spec, registry), errors=errors)


def slice(spec: str | Path | Project, name: str, *, registry: Registry | None = None):  # noqa: A001
    """A stored slice: rows per split, rows removed by each step, duplicate groups, leaks, the
    change made by the last apply; `.keys(split)` lists a split's row keys."""
    from .curation.report import build_report
    project = _project(spec, registry)
    if name not in project.slices:
        raise UsageError(f"unknown slice {name!r}; slices: {', '.join(project.slices) or '(none defined)'}")
    ds = open_dataset(project.table_uri)
    if ds is None:
        raise RunError(f"table {project.table_uri} does not exist yet; run 'featurekit apply'")
    return build_report(project, name, ds)
