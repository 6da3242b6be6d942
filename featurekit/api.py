"""The Python API; the CLI is a thin shell around these functions. They return values."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .engine import Reporter, RunResult
from .errors import RunError, UsageError
from .ingest.prepare import prepare_ingest, remember_in_sync
from .lifetime import disk_full
from .planning.planner import Plan, build_plan
from .planning.project import project_of
from .planning.resolve import Project
from .plugins.registry import Registry
from .table.handle import check_new_tag, create_tag, ensure_branch, open_dataset, require_dataset, table_ref
from .table.lock import table_lock


def _selection(project: Project, select: Iterable[str] | None) -> set[str] | None:
    select = [s for s in (select or []) if s.strip()]
    return project.graph.select(select) if select else None


def plan(spec: str | Path | Project, *, select: Iterable[str] | None = None, tier: int | None = None,
         prune: bool = False, registry: Registry | None = None, branch: str | None = None) -> Plan:
    """What `apply` would do, and why. Reads the source only if its files changed. On a
    branch that does not exist yet: what apply would do on a new branch from main."""
    project = project_of(spec, registry, branch)
    ref = table_ref(project)
    ds = open_dataset(ref)
    if ds is None and ref.branch:
        ds = open_dataset(ref.main)
    return build_plan(project, ds, prepare_ingest(project, ds, prune=prune), selected=_selection(project, select),
                      max_tier=tier, prune=prune)


@dataclass
class ApplyResult:
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
    ref = table_ref(project)
    if project.deferred and open_dataset(ref.main) is None:
        raise UsageError("; ".join(p.message.split(":")[0] for p in project.deferred) + ": nothing to apply yet")
    selected = _selection(project, select)
    _engine(project, engine)  # an unknown engine is an error even when there is nothing to do
    if tag is not None:
        check_new_tag(ref, tag)  # before anything is written
    if dry_run:
        return ApplyResult(plan(project, select=select, tier=tier, prune=prune), None, ref.branch)
    with table_lock(ref):  # plan and run under one lock: the plan stays true
        ds, created = ensure_branch(ref)
        if ds is None and ref.branch:
            raise UsageError(f"{ref.uri} does not exist yet, so it cannot have branch {ref.branch!r}; "
                             "run apply without --branch first")
        prepared = prepare_ingest(project, ds, prune=prune)
        the_plan = build_plan(project, ds, prepared, selected=selected, max_tier=tier, prune=prune)
        result = ApplyResult(the_plan, None, ref.branch, created)
        if prepared is not None:
            prepared.check()  # source.on_change / on_skip: error refuses before anything is written
        if the_plan.is_noop:
            remember_in_sync(project, ds, prepared)  # a source read and found in sync: no version
        else:
            result.run = _run(project, the_plan, prepared, engine, reporter)
            if result.run.version_after == the_plan.table_version:  # e.g. retries that failed again
                remember_in_sync(project, ds, prepared)
        if tag is not None and result.ok:
            latest = open_dataset(ref)
            if latest is not None:
                create_tag(ref, tag, latest.version)
                result.tag, result.tagged_version = tag, latest.version
        return result


def _engine(project: Project, engine: str | None):
    """The engine to run with (`--engine`, else the spec's), with its options."""
    engine_name = engine or project.spec.engine.kind
    entry = project.registry.get("engine", engine_name)
    if entry is None:
        raise UsageError(project.registry.unknown("engine", engine_name))
    options = project.spec.engine.options if engine_name == project.spec.engine.kind else {}
    return entry.cls(options)


def _run(project: Project, the_plan: Plan, prepared, engine: str | None, reporter: Reporter | None) -> RunResult:
    runner = _engine(project, engine)
    try:
        return runner.run(project, the_plan, prepared, reporter or Reporter())
    except RunError:
        raise
    except Exception as exc:
        if disk_full(exc):  # committed work is kept; what was being written is not
            raise RunError(f"the disk holding {project.table_uri} is full ({exc}); free some space and run apply "
                           "again: finished work was committed and will not be redone") from exc
        raise


def status(spec: str | Path | Project, *, registry: Registry | None = None, errors: int = 3,
           branch: str | None = None):
    """Per feature: fresh or stale, rows computed, failed (first errors), pending, outside its
    `only:` slice; per slice: rows per split. See `featurekit.status.Status`."""
    from .commands.status import table_status
    project = project_of(spec, registry, branch)
    if table_ref(project).branch:
        require_dataset(table_ref(project))  # a branch that does not exist is an error, not "new"
    return table_status(project, errors=errors)


def slice(spec: str | Path | Project, name: str, *, registry: Registry | None = None,  # noqa: A001
          branch: str | None = None):
    """A stored slice: rows per split, rows removed by each step, duplicate groups, leaks, the
    change made by the last apply; `.keys(split)` lists a split's row keys."""
    from .curation.report import build_report
    project = project_of(spec, registry, branch)
    if name not in project.slices:
        raise UsageError(f"unknown slice {name!r}; slices: {', '.join(project.slices) or '(none defined)'}")
    return build_report(project, name, require_dataset(table_ref(project)))


def sample(spec: str | Path | Project, rows: int, *, select: Iterable[str] | None = None, tier: int | None = None,
           registry: Registry | None = None, branch: str | None = None):
    """Run each feature the apply would compute on `rows` sample rows, commit nothing, and
    estimate the real apply's time and storage. See `featurekit.sample.SampleReport`."""
    from .commands.sample import sample_run
    project = project_of(spec, registry, branch)
    return sample_run(project, plan(project, select=select, tier=tier), rows)


def branches(spec: str | Path | Project, *, registry: Registry | None = None):
    """The table's Lance branches: base version, latest version, and the features and slices
    whose fingerprints differ from main. See `featurekit.branches.BranchReport`."""
    from .commands.branches import branch_report
    return branch_report(project_of(spec, registry))
