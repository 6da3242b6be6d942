"""Name -> class for everything plugins register, with who registered it."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ..errors import PluginError
from .discovery import PluginFailure, PluginManager, PluginOrigin, make_plugin_manager

KINDS = {
    "extractor": "featurekit_register_extractors",
    "source": "featurekit_register_sources",
    "trainer": "featurekit_register_trainers",
    "engine": "featurekit_register_engines",
}


@dataclass(frozen=True)
class Registered:
    name: str
    cls: type
    plugin: str


@dataclass
class Registry:
    """What the installed plugins provide, by kind and name."""

    entries: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: list[str] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    origins: dict[str, PluginOrigin] = field(default_factory=dict)

    @classmethod
    def from_plugin_manager(cls, pm: PluginManager) -> Registry:
        reg = cls(failures=list(pm.failures), origins=dict(pm.origins))
        for kind, hook_name in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
                try:
                    classes = impl.function() or []
                except Exception as exc:
                    reg.failures.append(PluginFailure(impl.plugin_name, None,
                                                      f"{hook_name} raised {type(exc).__name__}: {exc}"))
                    continue
                for klass in classes:
                    reg._add(kind, klass, impl.plugin_name)
        return reg

    def _add(self, kind: str, klass: type, plugin: str) -> None:
        name = getattr(klass, "name", "") or ""
        if not name:
            self.failures.append(PluginFailure(plugin, None, f"{kind} class {klass.__qualname__} has no name"))
            return
        table = self.entries[kind]
        if name in table and table[name].cls is not klass:
            self.conflicts.append(f"{kind} {name!r} is registered by two plugins: "
                                  f"{table[name].plugin!r} and {plugin!r}; uninstall or rename one")
            return
        table[name] = Registered(name, klass, plugin)

    def with_plugins(self, plugins: list[tuple[str, Any, PluginOrigin]]) -> Registry:
        """This registry plus `plugins` (name, an object implementing hooks, origin), e.g. a spec's
        local files, collected through the same hooks as the installed plugins."""
        pm = PluginManager()
        for name, plugin, origin in plugins:
            pm.register_module(plugin, name=name, distribution=origin.distribution, version=origin.version)
        extra = Registry.from_plugin_manager(pm)
        merged = Registry({kind: dict(table) for kind, table in self.entries.items()}, list(self.conflicts),
                          self.failures + extra.failures, {**self.origins, **extra.origins})
        for kind, table in extra.entries.items():
            for entry in table.values():
                merged._add(kind, entry.cls, entry.plugin)
        return merged

    def check(self) -> None:
        if self.conflicts:
            raise PluginError("\n".join(self.conflicts))

    def get(self, kind: str, name: str) -> Registered | None:
        return self.entries[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def unknown(self, kind: str, name: str) -> str:
        """The message for an unknown name: the closest names and where to look."""
        names = self.names(kind)
        # a name without its prefix ('vowels' for a local file's 'features.vowels') first
        close = [n for n in names if n.rsplit(".", 1)[-1] == name and n != name][:3]
        close += [c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.7) if c not in close][:3 - len(close)]
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        prefix = name.split(".", 1)[0]
        broken = [f for f in self.failures if f.name == prefix or (f.distribution or "").endswith(prefix)]
        if broken:
            msg += f" (plugin {broken[0].name!r} failed to load: {broken[0].error})"
        elif not close:
            msg += f"; run 'featurekit plugins' to list the installed {kind}s"
        return msg

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        out: dict[str, dict[str, list[str]]] = {name: {} for name in self.origins}
        for kind, table in self.entries.items():
            for entry in table.values():
                out.setdefault(entry.plugin, {}).setdefault(kind + "s", []).append(entry.name)
        return {p: {k: sorted(v) for k, v in kinds.items()} for p, kinds in out.items()}


def default_registry(plugins: tuple[Any, ...] = ()) -> Registry:
    return Registry.from_plugin_manager(make_plugin_manager(plugins=plugins))
