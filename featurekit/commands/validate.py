"""`featurekit validate`: check specs without touching data; every problem of every spec at once."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, SpecError
from ..planning.project import load_spec
from ..plugins.registry import Registry


@dataclass(frozen=True)
class SpecSummary:
    """A spec that validated: what it declares, and the checks that waited for the data."""

    path: str
    features: int
    slices: int
    recipes: int
    deferred: tuple[Problem, ...] = ()

    def render(self) -> str:
        counts = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                           ((self.features, "feature"), (self.slices, "slice"), (self.recipes, "recipe")))
        lines = [f"{self.path}: ok ({counts})"]
        lines += [f"  waited for the data: {p}" for p in self.deferred]
        return "\n".join(lines)


@dataclass(frozen=True)
class Validation:
    """The specs that validated, and every problem found in the others."""

    specs: tuple[SpecSummary, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise SpecError(list(self.problems))


def validate(specs: Iterable[str | Path] | str | Path, *, strict: bool = False,
             registry: Registry | None = None) -> Validation:
    """Parse, resolve plugins, columns, types and the graph of each spec; touches no data.
    Without the source files (a fresh clone of a specs repository) everything else is checked
    and the checks that waited for the data are listed; `strict` makes them problems."""
    paths = [specs] if isinstance(specs, (str, Path)) else list(specs)
    summaries: list[SpecSummary] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            project = load_spec(path, registry=registry)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        if strict and project.deferred:
            problems.extend(project.deferred)
            continue
        summaries.append(SpecSummary(str(path), len(project.features), len(project.spec.slices),
                                     len(project.spec.recipes), tuple(project.deferred)))
    return Validation(tuple(summaries), tuple(problems))
