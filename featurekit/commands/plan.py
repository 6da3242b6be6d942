"""`featurekit plan`: what apply would do per feature and slice, and why, as a `Plan` value."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..ingest.prepare import prepare_ingest
from ..planning.planner import Plan, build_plan
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table


def plan(spec: str | Path | Project, *, select: Iterable[str] | None = None, tier: int | None = None,
         prune: bool = False, registry: Registry | None = None, branch: str | None = None) -> Plan:
    """What `apply` would do, and why. Reads the source only if its files changed. On a
    branch that does not exist yet: what apply would do on a new branch from main."""
    project = project_of(spec, registry, branch)
    table = Table.of(project)
    if not table.exists and table.branch:
        table = table.main
    return plan_on(project, table, select=select, tier=tier, prune=prune)


def plan_on(project: Project, table: Table, *, select: Iterable[str] | None = None, tier: int | None = None,
            prune: bool = False, prepared=None, count_distinct: bool = True) -> Plan:
    """The plan of `project` against `table` as it stands (`prepared`: its source read already;
    `count_distinct`: count each step's distinct inputs, for people: the engine measures its own)."""
    ds = table.dataset
    if prepared is None:
        prepared = prepare_ingest(project, ds, prune=prune)
    return build_plan(project, ds, prepared, selected=selection(project, select), max_tier=tier, prune=prune,
                      count_distinct=count_distinct)


def selection(project: Project, select: Iterable[str] | None) -> set[str] | None:
    """The graph nodes `--select` names (dbt-style: 'a,b', '+a', 'a+'), or None for all."""
    select = [s for s in (select or []) if s.strip()]
    return project.graph.select(select) if select else None
