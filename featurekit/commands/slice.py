"""`featurekit slice`: what a stored slice holds (a `SliceReport`), and its gallery page."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..curation.report import SliceReport, build_report
from ..errors import UsageError
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table


def slice(spec: str | Path | Project, name: str, *, registry: Registry | None = None,  # noqa: A001
          branch: str | None = None, gallery: str | Path | None = None) -> SliceReport:
    """A stored slice: rows per split, rows removed by each step, duplicate groups, leaks, the
    change made by the last apply; `.keys(split)` lists a split's row keys. `gallery`: also
    write one static HTML page of sample rows per split and the largest duplicate groups."""
    project = project_of(spec, registry, branch)
    if name not in project.slices:
        raise UsageError(f"unknown slice {name!r}; slices: {', '.join(project.slices) or '(none defined)'}")
    report = build_report(project, name, Table.of(project).require())
    if gallery is not None:
        from ..curation.gallery import write_gallery
        report = dataclasses.replace(report, gallery=write_gallery(project, report, gallery))
    return report
