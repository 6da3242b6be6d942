"""featurekit engine `geneva`: the plan's feature fills as Geneva backfills on Ray.

Importing this package imports neither geneva nor ray (they cost seconds), nor the engine:
`GenevaEngine` and `GenevaOptions` load on first use, so `featurekit validate` and `plan` stay
fast, and a Ray worker's start-up hook (`boot.worker_setup`) costs no more than `import featurekit`.
"""
from __future__ import annotations

import featurekit

__all__ = ["GenevaEngine", "GenevaOptions"]


def __getattr__(name: str):
    if name == "GenevaEngine":
        from .engine import GenevaEngine
        return GenevaEngine
    if name == "GenevaOptions":
        from .options import GenevaOptions
        return GenevaOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@featurekit.hookimpl
def featurekit_register_engines():
    from .engine import GenevaEngine
    return [GenevaEngine]
