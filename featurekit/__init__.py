"""featurekit: a YAML spec in, a Lance feature store for multimodal training out.

Public API: `hookimpl`, `Extractor`, `RowErrors`, `Trainer`, `Source`, `load_spec`, `plan`, `apply`, `status`, `slice`,
`dataloader`.
Nothing heavy is imported here: torch, transformers, geneva and ray belong to plugins.
"""
from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# Lance logs a warning on every DataReplacement commit (the way featurekit fills columns).
_os.environ.setdefault("LANCE_LOG", "error")

from .errors import ExitCode, FeaturekitError, PluginError, RunError, SpecError, UsageError  # noqa: E402
from .extractor import Extractor, Resources  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .rowerrors import RowErrors  # noqa: E402
from .source import Source  # noqa: E402
from .trainer import Trainer  # noqa: E402

_API = ("apply", "load_spec", "plan", "status", "slice")


def __getattr__(name: str):
    # The API pulls in YAML, the resolver and the planner: load it on first use, so that
    # plugins and worker processes importing featurekit stay light.
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "dataloader":  # torch is imported only when a loader is built
        from .dataloader import dataloader
        globals()["dataloader"] = dataloader  # the function, not the submodule of the same name
        return dataloader
    raise AttributeError(f"module 'featurekit' has no attribute {name!r}")


__all__ = ["hookimpl", "Extractor", "Resources", "RowErrors", "Source", "Trainer", "load_spec", "plan", "apply", "status", "slice",
           "dataloader",
           "ExitCode", "FeaturekitError", "PluginError", "RunError", "SpecError", "UsageError", "__version__"]
