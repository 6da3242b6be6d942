"""`featurekit validate`: check specs without touching data; every problem of every spec at once."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, SpecError
from ..planning.project import load_spec
from ..plugins.registry import Registry
from ..spec.document import load_document
from ..spec.targets import target_names


@dataclass(frozen=True)
class SpecSummary:
    """A spec that validated: what it declares, and the checks that waited for the data."""

    path: str
    features: int
    slices: int
    recipes: int
    deferred: tuple[Problem, ...] = ()
    targets: tuple[str, ...] = ()   # the targets checked (the spec's targets:, or the one asked for)

    def render(self) -> str:
        counts = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                           ((self.features, "feature"), (self.slices, "slice"), (self.recipes, "recipe")))
        if self.targets:
            counts += f"; target{'s' if len(self.targets) > 1 else ''} {', '.join(self.targets)}"
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
             registry: Registry | None = None, target: str | None = None) -> Validation:
    """Parse, resolve plugins, columns, types and the graph of each spec; touches no data.
    Without the source files (a fresh clone of a specs repository) everything else is checked
    and the checks that waited for the data are listed; `strict` makes them problems. A spec
    with `targets:` is checked for each of them (or for `target` only)."""
    paths = [specs] if isinstance(specs, (str, Path)) else list(specs)
    summaries: list[SpecSummary] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            targets = [target] if target is not None else target_names(load_document(Path(path)))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        found: dict[Problem, None] = {}  # a problem shared by several targets is reported once
        projects = []
        for name in targets or [None]:
            try:
                projects.append(load_spec(path, registry=registry, target=name))
            except SpecError as exc:
                found.update(dict.fromkeys(exc.problems))
        deferred = tuple(dict.fromkeys(p for project in projects for p in project.deferred))
        if strict:
            found.update(dict.fromkeys(deferred))
        if found:
            problems.extend(found)
            continue
        project = projects[0]
        summaries.append(SpecSummary(str(path), len(project.features), len(project.spec.slices),
                                     len(project.spec.recipes), deferred, tuple(targets)))
    return Validation(tuple(summaries), tuple(problems))
