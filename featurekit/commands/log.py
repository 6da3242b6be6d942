"""`featurekit log`: the applies that changed the table, newest first (an `ApplyLog`).

Each apply records its Lance versions, the spec file's sha256, git commit and dirty flag,
the software and the user; versions no entry covers (compact, other tools, a SIGKILL) are
shown as such, so every version is accounted for.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..planning.planner import ingest_done
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table
from ..table.metadata import applies


@dataclass(frozen=True)
class ApplyLog:
    """The apply-log entries of a table, newest first, and its latest version."""

    entries: list[dict[str, Any]]
    latest: int | None

    def render(self) -> str:
        return render_log(self.entries, self.latest)

    def to_json(self) -> str:
        return json.dumps(self.entries, indent=2)


def log(spec: str | Path | Project, *, registry: Registry | None = None, branch: str | None = None) -> ApplyLog:
    """The applies that changed the table (its `branch`), newest first."""
    table = Table.of(project_of(spec, registry, branch))
    ds = table.dataset
    return ApplyLog(list(reversed(applies(ds.schema))) if ds is not None else [], table.version)


UNRECORDED = ("no apply recorded: another writer (featurekit compact, a tool outside featurekit), an apply "
              "killed before it finished, or an entry older than the log keeps")


def render_log(entries: list[dict[str, Any]], latest: int | None = None) -> str:
    """Entries newest first; `latest`: the table's version now. Versions no entry covers are
    shown as such, so every version is accounted for."""
    if not entries:
        return "no applies recorded yet" + (f"\nv1-v{latest}  {UNRECORDED}" if latest else "")
    lines = []
    newer_from = latest
    for e in entries:
        if newer_from is not None and newer_from > e["version_to"]:
            lines.append(f"v{e['version_to'] + 1}-v{newer_from}  {UNRECORDED}")
        newer_from = e.get("version_from")
        start = 1 if e.get("version_from") is None else e["version_from"] + 1
        spec = e.get("spec_file") or {}
        git = spec.get("git") or {}
        where = (f"{git['commit'][:10]}{' (modified)' if git.get('dirty') else ''}" if git
                 else spec.get("git_note", "no provenance recorded"))
        branch = f"  branch {e['branch']}" if e.get("branch") else ""
        stopped = f"  stopped early ({e['interrupted']}): finished work kept" if e.get("interrupted") else ""
        lines.append(f"v{start}-v{e['version_to']}  {e['at']}  {e.get('user') or '?'}  spec {where}{branch}{stopped}")
        lines.append("    " + ("; ".join(entry_summary(e)) or "metadata only"))
    if newer_from:
        lines.append(f"v1-v{newer_from}  {UNRECORDED}")
    return "\n".join(lines)


def entry_summary(entry: dict[str, Any]) -> list[str]:
    """What one apply did, short: ingest, each feature's rows computed (and failed), each slice's
    rows examined, columns dropped."""
    did = ingest_done(entry)
    did += [f"{n} {f['computed']} computed" + (f", {f['failed']} failed" if f["failed"] else "")
            for n, f in entry.get("features", {}).items()]
    did += [f"slice {n}: {r.get('examined', 0)} examined" for n, r in entry.get("slices", {}).items()]
    did += [f"dropped {c}" for c in entry.get("dropped", [])]
    return did
