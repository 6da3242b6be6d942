"""`featurekit graph`: the dependency graph of a spec's features, slices and recipes."""
from __future__ import annotations

from pathlib import Path

from ..planning.graph import Graph
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry


def graph(spec: str | Path | Project, *, registry: Registry | None = None) -> Graph:
    """The graph as a value: `.render("text" | "mermaid" | "dot")`, `.select([...])`, its nodes and edges."""
    return project_of(spec, registry).graph
