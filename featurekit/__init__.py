"""featurekit: a YAML spec in, a Lance feature store for multimodal training out.

Public API: `hookimpl`, `Extractor`, `RowErrors`, `Trainer`, `Source`, `load_spec`, `plan`, `apply`, `status`, `slice`,
`dataloader`, `read`.
Nothing heavy is imported here: torch, transformers, geneva and ray belong to plugins.
"""
from __future__ import annotations

from ._version import __version__
from .errors import ExitCode, FeaturekitError, PluginError, RunError, SpecError, UsageError
from .plugins.extractor import Extractor, Resources, runtime_field
from .plugins.hookspecs import hookimpl
from .plugins.rowerrors import RowErrors
from .plugins.source import Source
from .plugins.trainer import Trainer

_API = ("apply", "load_spec", "plan", "status", "slice")


def __getattr__(name: str):
    # The API pulls in YAML, the resolver and the planner: load it on first use, so that
    # plugins and worker processes importing featurekit stay light.
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "read":
        from .training.read import read
        return read
    if name == "dataloader":  # torch is imported only when a loader is built
        from .training.dataloader import dataloader
        globals()["dataloader"] = dataloader  # the function, not the submodule of the same name
        return dataloader
    raise AttributeError(f"module 'featurekit' has no attribute {name!r}")


__all__ = ["hookimpl", "Extractor", "Resources", "RowErrors", "runtime_field", "Source", "Trainer", "load_spec", "plan", "apply",
           "status", "slice", "dataloader", "read",
           "ExitCode", "FeaturekitError", "PluginError", "RunError", "SpecError", "UsageError", "__version__"]
