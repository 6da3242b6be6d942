"""The built-in engines, registered like any plugin's."""
from __future__ import annotations

from ..engine.local import LocalEngine
from ..plugins.hookspecs import hookimpl


@hookimpl
def featurekit_register_engines():
    return [LocalEngine]
