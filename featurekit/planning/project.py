"""From a spec file to a `Project`: read the YAML, peek at the table's columns, resolve.

Every command starts here (`project_of`): it takes a path or a project already loaded, and
the Lance branch to read and write.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import FeaturekitError, SpecError
from ..plugins import registry as registries
from ..plugins.local import LOCAL_MODULES, load_spec_plugins
from ..spec.document import Document, load_document
from ..spec.names import check_ref_name, table_name_problem
from ..spec.targets import select_target
from ..table.handle import TableRef, open_dataset
from .resolve import Project, resolve, table_uri


def load_spec(path: str | Path, *, registry: registries.Registry | None = None,
              branch: str | None = None, target: str | None = None) -> Project:
    """Parse, validate and resolve a spec; raises `SpecError` listing every problem.
    `branch`: read and apply onto that Lance branch of the table (overrides `table.branch`).
    `target`: one of the spec's `targets:` (default: FEATUREKIT_TARGET, else the first)."""
    path = Path(path)
    doc = load_document(path)
    return resolve_document(doc, path, registry=registry, branch=branch, target=target)


def resolve_document(doc: Document, path: Path, *, registry: registries.Registry | None = None,
                     branch: str | None = None, target: str | None = None) -> Project:
    """Resolve a loaded document (e.g. a spec as committed at a git revision) against the table."""
    doc = select_target(doc, target)
    registry, problems = with_spec_plugins(doc, path, registry or registries.default_registry())
    try:
        project = resolve(doc, registry, path, table_schema(doc, path, branch))
    except SpecError as exc:
        raise SpecError([*problems, *exc.problems]) from None
    if problems:
        raise SpecError(problems)
    return with_branch(project, branch)


def with_spec_plugins(doc: Document, path: Path, registry: registries.Registry) -> tuple[registries.Registry, list]:
    """`registry` plus the extractors of the spec's `plugins:` files, and the problems loading them."""
    data = doc.data if isinstance(doc.data, dict) else {}
    written = data.get("plugins")
    if not isinstance(written, list) or not written:
        return registry, []

    def taken(name: str) -> str | None:
        entry = registry.get("extractor", name)
        return None if entry is None or entry.cls.__module__.startswith(LOCAL_MODULES) else f"plugin {entry.plugin!r}"

    loaded = load_spec_plugins(written, path.parent, doc.problem, taken)
    merged = registry.with_plugins(loaded.origins())
    merged.failures.extend(loaded.failures)
    return merged, list(loaded.problems)


def project_of(spec: str | Path | Project, registry: registries.Registry | None = None,
               branch: str | None = None, target: str | None = None) -> Project:
    """The project of `spec` (a path, or a project already loaded), on `branch` when given."""
    if isinstance(spec, Project):
        return with_branch(spec, branch)
    return load_spec(spec, registry=registry, branch=branch, target=target)


def with_branch(project: Project, branch: str | None) -> Project:
    """`project` reading and writing Lance branch `branch` (the CLI's ``--branch``)."""
    if branch is None or branch == project.spec.table.branch:
        return project
    check_ref_name(branch, "branch")
    table = project.spec.table.model_copy(update={"branch": branch})
    return dataclasses.replace(project, spec=project.spec.model_copy(update={"table": table}))


def table_schema(doc: Document, path: Path, branch: str | None = None) -> Any:
    """The table's schema (columns the spec may name), before the spec is validated: a
    spec that does not say where its table is, or cannot reach it yet, resolves without."""
    data = doc.data if isinstance(doc.data, dict) else {}
    table = data.get("table")
    if not (isinstance(table, dict) and isinstance(table.get("db"), str) and isinstance(table.get("name"), str)):
        return None
    if table_name_problem(table["name"]) or not table["db"].strip() or table["db"].lower().startswith("memory:") \
            or "\0" in table["db"]:
        return None  # refused by the spec's model: never looked for (``../../x`` would be outside db)
    from ..spec.models import Spec, TableSpec
    uri = table_uri(Spec.model_construct(table=TableSpec.model_construct(db=table["db"], name=table["name"])), path.parent)
    options = table.get("storage_options")
    options = tuple(sorted((str(k), str(v)) for k, v in options.items())) if isinstance(options, dict) else ()
    branch = branch or (table.get("branch") if isinstance(table.get("branch"), str) else None)
    ref = TableRef(uri, options, None)
    try:
        ds = open_dataset(ref.on(branch)) if branch else None
        ds = open_dataset(ref) if ds is None else ds
    except FeaturekitError:  # e.g. an unset environment variable: reported when the table is used
        return None
    return ds.schema if ds is not None else None
