"""`featurekit apply`: ingest the source, run the plan on an engine, commit; under the writer lock."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..engine import Engine, Reporter, RunResult
from ..errors import DiskFull, RunError, UsageError
from ..ingest.prepare import prepare_ingest, remember_in_sync
from ..lifetime import disk_full
from ..planning.planner import Plan
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table
from ..table.lock import table_lock
from .plan import plan_on


@dataclass
class ApplyResult:
    """What an apply did: its plan, the engine's `RunResult` (None: dry run or nothing to do),
    the branch it wrote and the tag it made."""

    plan: Plan
    run: RunResult | None
    branch: str | None = None      # the Lance branch applied onto (None: main)
    branch_created: bool = False   # this apply created the branch from main's current version
    tag: str | None = None         # `tag=`: the tag made, naming `tagged_version`
    tagged_version: int | None = None

    @property
    def ok(self) -> bool:
        return self.run is None or self.run.ok


def apply(spec: str | Path | Project, *, engine: str | None = None, select: Iterable[str] | None = None,
          tier: int | None = None, dry_run: bool = False, prune: bool = False,
          reporter: Reporter | None = None, registry: Registry | None = None, branch: str | None = None,
          tag: str | None = None) -> ApplyResult:
    """Ingest the source and run the plan; `dry_run` only plans. Failed rows are recorded,
    and `ApplyResult.ok` is False when a feature exceeded its failure threshold.

    `branch`: apply onto that Lance branch, created from main's current version when it does
    not exist; main and its readers are untouched. `tag`: tag the version the apply leaves
    (the one it produced, or the current one when there was nothing to do)."""
    project = project_of(spec, registry, branch)
    table = Table.of(project)
    if project.deferred and not table.main.exists:
        raise UsageError("; ".join(p.message.split(":")[0] for p in project.deferred) + ": nothing to apply yet")
    runner = engine_for(project, engine)  # an unknown engine is an error even when there is nothing to do
    runner.check(project, table)  # a table the engine cannot run is refused before a branch is made
    if tag is not None:
        table.check_new_tag(tag)  # before anything is written
    if dry_run:
        shown = table if table.exists or not table.branch else table.main
        return ApplyResult(plan_on(project, shown, select=select, tier=tier, prune=prune), None, table.branch)
    with table_lock(table.ref):  # plan and run under one lock: the plan stays true
        created = table.ensure_branch()
        if not table.exists and table.branch:
            raise UsageError(f"{table.uri} does not exist yet, so it cannot have branch {table.branch!r}; "
                             "run apply without --branch first")
        ds = table.dataset
        prepared = prepare_ingest(project, ds, prune=prune)
        the_plan = plan_on(project, table, select=select, tier=tier, prune=prune, prepared=prepared,
                           count_distinct=False)
        result = ApplyResult(the_plan, None, table.branch, created)
        if prepared is not None:
            prepared.check()  # source.on_change / on_skip: error refuses before anything is written
        if the_plan.is_noop:
            remember_in_sync(project, ds, prepared)  # a source read and found in sync: no version
        else:
            result.run = _run(runner, project, the_plan, prepared, table, reporter)
            if result.run.version_after == the_plan.table_version:  # e.g. retries that failed again
                remember_in_sync(project, ds, prepared)
        if tag is not None and result.ok and table.exists:
            result.tag, result.tagged_version = tag, table.create_tag(tag)
        return result


def engine_for(project: Project, name: str | None) -> Engine:
    """The engine to run with (`name`, else the spec's), with its options."""
    engine_name = name or project.spec.engine.kind
    entry = project.registry.get("engine", engine_name)
    if entry is None:
        raise UsageError(project.registry.unknown("engine", engine_name))
    options = project.spec.engine.options if engine_name == project.spec.engine.kind else {}
    return entry.cls(options)


def _run(runner: Engine, project: Project, the_plan: Plan, prepared, table: Table,
         reporter: Reporter | None) -> RunResult:
    try:
        return runner.run(project, the_plan, prepared, reporter or Reporter(), table)
    except RunError:
        raise
    except Exception as exc:
        if disk_full(exc):  # committed work is kept; what was being written is not
            raise DiskFull(f"the disk holding {project.table_uri} is full ({exc}); free some space and run apply "
                           "again: finished work was committed and will not be redone", table=project.table_uri) from exc
        raise
