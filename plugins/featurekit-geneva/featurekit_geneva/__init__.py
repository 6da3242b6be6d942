"""featurekit engine `geneva`: the plan's feature fills as Geneva backfills on Ray.

Importing this module imports neither geneva nor ray (they cost seconds): `engine.py`
imports them when a run needs them, so `featurekit validate` and `plan` stay fast.
"""
from __future__ import annotations

import featurekit

from .engine import GenevaEngine
from .options import GenevaOptions

__all__ = ["GenevaEngine", "GenevaOptions"]


@featurekit.hookimpl
def featurekit_register_engines():
    return [GenevaEngine]
