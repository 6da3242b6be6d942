"""`featurekit plugins`: the installed plugins, their versions, what they register, what failed."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plugins import registry as registries


@dataclass(frozen=True)
class PluginsReport:
    plugins: list[dict[str, Any]]                       # name, distribution, version, what it registers
    failed: list[dict[str, Any]] = field(default_factory=list)   # plugins that did not load, and why
    conflicts: list[str] = field(default_factory=list)  # two plugins claiming one name

    def to_dict(self) -> dict[str, Any]:
        return {"plugins": self.plugins, "failed": self.failed, "conflicts": self.conflicts}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        lines = []
        for row in self.plugins:
            lines.append(f"{row['name']} ({row['distribution'] or '?'} {row['version'] or ''})".replace(" )", ")"))
            for kind in ("extractors", "sources", "engines", "trainers"):
                if row.get(kind):
                    lines.append(f"  {kind}: {', '.join(row[kind])}")
        return "\n".join(lines)


def list_plugins(registry: registries.Registry | None = None, spec: str | Path | None = None) -> PluginsReport:
    """Every plugin the registry found (built-ins first, then the ``featurekit`` entry points),
    and with `spec`, the files its `plugins:` names (their functions' extractors)."""
    reg = registry or registries.default_registry()
    if spec is not None:
        from ..planning.project import with_spec_plugins
        from ..spec.document import load_document
        reg, _ = with_spec_plugins(load_document(Path(spec)), Path(spec), reg)
    rows = []
    for name, kinds in reg.by_plugin().items():
        origin = reg.origins.get(name)
        rows.append({"name": name, "distribution": origin.distribution if origin else None,
                     "version": origin.version if origin else None, **kinds})
    failures = [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in reg.failures]
    return PluginsReport(rows, failures, list(reg.conflicts))
