"""Find plugins: built-ins first, then the ``featurekit`` entry-point group.

A plugin that fails to import is recorded, not raised, so ``featurekit --help`` and
specs that don't use it keep working. Set ``FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD=1`` to
skip entry points (tests do), and ``FEATUREKIT_PLUGINS=mod1,mod2`` to load extra modules.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "featurekit"
BUILTIN_PLUGINS = (
    "featurekit.builtin.text",
    "featurekit.builtin.sql",
    "featurekit.builtin.sources",
    "featurekit.builtin.hf",
    "featurekit.builtin.engines",
    "featurekit.builtin.trainers",
)


@dataclass(frozen=True)
class PluginFailure:
    name: str
    distribution: str | None
    error: str


@dataclass(frozen=True)
class PluginOrigin:
    name: str
    distribution: str | None
    version: str | None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what we learned while loading."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.origins: dict[str, PluginOrigin] = {}

    def register_module(self, module: ModuleType | str, name: str | None = None,
                        distribution: str | None = None, version: str | None = None) -> None:
        if isinstance(module, str):
            module = importlib.import_module(module)
        name = name or module.__name__
        if self.get_plugin(name) is not None:
            return
        self.register(module, name=name)
        self.origins[name] = PluginOrigin(name, distribution, version)


def _load_entrypoints(pm: PluginManager) -> None:
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break featurekit
            pm.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        pm.register_module(module, name=ep.name, distribution=dist, version=version)


def make_plugin_manager(load_entrypoints: bool | None = None, plugins: Iterable[ModuleType | str] = ()) -> PluginManager:
    """A plugin manager with the built-ins, the installed entry points and `plugins`."""
    pm = PluginManager()
    from .._version import __version__
    for name in BUILTIN_PLUGINS:
        pm.register_module(name, name=name, distribution="featurekit", version=__version__)
    if load_entrypoints is None:
        load_entrypoints = os.environ.get("FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if load_entrypoints:
        _load_entrypoints(pm)
    extra = [p for p in os.environ.get("FEATUREKIT_PLUGINS", "").split(",") if p.strip()]
    for plugin in [*extra, *plugins]:
        try:
            pm.register_module(plugin.strip() if isinstance(plugin, str) else plugin)
        except Exception as exc:
            pm.failures.append(PluginFailure(str(plugin), None, f"{type(exc).__name__}: {exc}"))
    return pm
