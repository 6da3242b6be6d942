"""`featurekit check`: the spec's `checks:` on the table as it stands (read-only)."""
from __future__ import annotations

from pathlib import Path

from ..checks import CheckReport, run_checks
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table


def check(spec: str | Path | Project, *, registry: Registry | None = None, branch: str | None = None) -> CheckReport:
    """Run every feature's and slice's checks on the table's current version, writing nothing.
    `CheckReport.ok` is False when an error-severity check failed (warnings are reported only)."""
    project = project_of(spec, registry, branch)
    return run_checks(project, Table.of(project).require())
