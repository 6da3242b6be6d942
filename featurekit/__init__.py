"""featurekit: a YAML spec in, a Lance feature store for multimodal training out.

The surface, and nothing else: what plugin authors subclass (`Extractor`, `Source`,
`Trainer`, `Engine`, `hookimpl`, `RowErrors`; `extractor`, the decorator making a plain
function of a spec's `plugins:` file an extractor), the errors and their exit codes, and one
function per command (`featurekit.api`: `validate`, `plan`, `apply`, `status`, `slice`,
`train`, `evaluate`, `log`, `diff`, `branches`, `bench`, `compact`, `graph`, `sample`, `check`,
`list_plugins`, `schema`, `search`, `docs`, `read`, `dataloader`, `load_spec`) with the values they return.
Everything else is internal. Nothing heavy is imported here: the API is loaded on first
use, and torch, transformers, geneva and ray belong to plugins.
"""
from __future__ import annotations

from ._version import __version__
from .errors import (
    CommitConflict,
    DiskFull,
    ExitCode,
    FeaturekitError,
    LockHeld,
    LockLost,
    NotReady,
    PluginError,
    RunError,
    SourceUnreadable,
    SpecError,
    TableError,
    TableNotFound,
    UsageError,
)
from .plugins.extractor import Extractor, Resources, runtime_field
from .plugins.function import extractor
from .plugins.hookspecs import hookimpl
from .plugins.rowerrors import RowErrors
from .plugins.source import RowIssue, Source, SourceBatch
from .plugins.trainer import Trainer

_API = frozenset(("ApplyLog", "ApplyResult", "Catalog", "docs", "BenchResult", "BranchReport", "CheckReport", "check", "CompactResult", "DataLoader", "EvalResult", "Graph",
                  "Plan", "PluginsReport", "Project", "ReadResult", "RunResult", "SampleReport", "SearchResult", "SliceReport", "SpecDiff", "Status",
                  "TrainResult", "Validation", "apply", "bench", "branches", "compact", "dataloader", "diff",
                  "evaluate", "graph", "list_plugins", "load_spec", "log", "plan", "read", "sample", "schema", "search", "slice",
                  "status", "train", "validate"))


def __getattr__(name: str):
    # The API pulls in the resolver, the planner and the engines: loaded on first use, so that
    # plugins and worker processes importing featurekit stay light.
    if name in ("Engine", "EngineOptions"):  # the engine contract, for engine plugins
        from . import engine
        return getattr(engine, name)
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'featurekit' has no attribute {name!r}")


__all__ = [
    "Catalog", "docs", "apply", "ApplyLog", "ApplyResult", "bench", "BenchResult", "branches", "BranchReport", "check", "CheckReport",
    "CommitConflict", "compact", "CompactResult", "dataloader", "DataLoader", "diff", "DiskFull", "Engine", "EngineOptions",
    "EvalResult", "evaluate", "ExitCode", "extractor", "Extractor", "FeaturekitError", "graph", "Graph", "hookimpl",
    "list_plugins", "load_spec", "LockHeld", "LockLost", "log", "NotReady", "plan", "Plan", "PluginError",
    "PluginsReport", "Project", "read", "ReadResult", "Resources", "RowErrors", "RowIssue", "RunError", "RunResult",
    "runtime_field", "sample", "SampleReport", "schema", "search", "SearchResult", "slice", "SliceReport", "Source", "SourceBatch", "SourceUnreadable",
    "SpecDiff", "SpecError", "status", "Status", "TableError", "TableNotFound", "train", "Trainer", "TrainResult",
    "UsageError", "validate", "Validation", "__version__",
]
