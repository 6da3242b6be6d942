"""The plugin contract: every hook a featurekit plugin can implement.

A plugin is a module in the ``featurekit`` entry-point group whose functions carry
``@featurekit.hookimpl`` and have one of the names below. Each hook returns a list of
classes; featurekit collects them from every plugin, built-ins included, into a
registry keyed by each class's ``name``. Two plugins registering one name is an error.
"""
from __future__ import annotations

import pluggy

PROJECT = "featurekit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def featurekit_register_extractors() -> list[type]:
    """Return `featurekit.Extractor` subclasses. Specs use them by ``name``
    (``plugin.thing``) after ``extractor:``.

    ``__call__(batch)`` returns one value per row, or ``featurekit.RowErrors(values,
    errors)`` to report rows it could not compute (errors: one message, exception or None
    per row): those rows are recorded as failed and retried next apply, the others keep their
    values, and no row is passed twice. Rows with equal inputs share one call where it pays
    (``reuse_values``: None lets featurekit measure, True always shares, False never)."""


@hookspec
def featurekit_register_sources() -> list[type]:
    """Return `featurekit.Source` subclasses: readers for ``source.format`` (built-in:
    jsonl, parquet, csv, lance)."""


@hookspec
def featurekit_register_trainers() -> list[type]:
    """Return trainer classes used by ``recipes.<name>.trainer``."""


@hookspec
def featurekit_register_engines() -> list[type]:
    """Return `featurekit.Engine` subclasses, chosen by ``engine:`` in the spec
    or ``apply --engine`` (built-in: local)."""
