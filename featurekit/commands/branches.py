"""`featurekit branches`: a table's Lance branches and what each holds differently from main.

A branch is where a spec variant is tried (`apply --branch NAME`): it starts as main's
version at the time (its base) and is written only where the variant differs. What differs
is read from the column metadata both sides carry, so this touches no row: a feature or a
slice differs when its fingerprint does (and then the report says which part: extractor
version, which params keys, inputs, upstream), or when it exists on one side only.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table, open_dataset, visible_tags
from ..table.metadata import StoredFeature, StoredSlice, stored_features, stored_slices
from ..table.ref import table_ref


@dataclass(frozen=True)
class BranchInfo:
    name: str
    parent: str | None          # the branch it was made from (None: main)
    base_version: int           # the parent's version it started from
    version: int | None         # its latest version
    created: str | None
    rows: int | None
    differs: dict[str, str] = field(default_factory=dict)  # "feature x" / "slice y" -> how


@dataclass(frozen=True)
class BranchReport:
    table: str
    main_version: int
    branches: tuple[BranchInfo, ...]
    tags: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"table {self.table}: main at version {self.main_version}"]
        if not self.branches:
            lines.append("no branches (make one with: featurekit apply SPEC --branch NAME)")
        for b in self.branches:
            parent = f"{b.parent} " if b.parent else "main "
            lines.append(f"branch {b.name}: from {parent}version {b.base_version}, now version {b.version}, "
                         f"{b.rows} rows" + (f", created {b.created}" if b.created else ""))
            if not b.differs:
                lines.append("  no feature or slice differs from main")
            for what, how in b.differs.items():
                lines.append(f"  {what}: {how}")
        if self.tags:
            lines.append("tags:")
            for t in self.tags:
                lines.append(f"  {t['name']}: {'branch ' + t['branch'] + ' ' if t['branch'] else ''}version {t['version']}")
        return "\n".join(lines)


def branches(spec: str | Path | Project, *, registry: Registry | None = None) -> BranchReport:
    """The table's Lance branches: base version, latest version, rows, and the features and
    slices whose fingerprints differ from main's; then the table's tags."""
    ref = table_ref(project_of(spec, registry)).main
    main = Table(ref).require()
    infos = []
    for name, rec in sorted(main.branches.list().items()):
        ds = open_dataset(ref.on(name))
        created = rec.get("create_at")
        infos.append(BranchInfo(
            name=name, parent=rec.get("parent_branch"), base_version=int(rec.get("parent_version") or 0),
            version=ds.version if ds is not None else None,
            created=_dt.datetime.fromtimestamp(created, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if isinstance(created, (int, float)) else None,
            rows=ds.count_rows() if ds is not None else None,
            differs=differences(main.schema, ds.schema) if ds is not None else {}))
    tags = tuple({"name": n, "branch": t.get("branch"), "version": t.get("version")}
                 for n, t in sorted(visible_tags(main).items()))
    return BranchReport(ref.uri, main.version, tuple(infos), tags)


def differences(main_schema, branch_schema) -> dict[str, str]:
    """Features and slices whose fingerprints differ between main and a branch, and how."""
    out: dict[str, str] = {}
    for kind, stored, change in (("feature", stored_features, _feature_change), ("slice", stored_slices, _slice_change)):
        on_main, on_branch = stored(main_schema), stored(branch_schema)
        for name in sorted(set(on_main) | set(on_branch)):
            if name not in on_main:
                out[f"{kind} {name}"] = "only on the branch"
            elif name not in on_branch:
                out[f"{kind} {name}"] = "only on main"
            elif on_main[name].fingerprint != on_branch[name].fingerprint:
                out[f"{kind} {name}"] = "fingerprint differs: " + change(on_main[name], on_branch[name])
    return out


def _feature_change(main: StoredFeature, branch: StoredFeature) -> str:
    parts = []
    if main.extractor != branch.extractor:
        parts.append(f"extractor {main.extractor} -> {branch.extractor}")
    if main.version != branch.version:
        parts.append(f"extractor version {main.version} -> {branch.version}")
    parts += _dict_change("params", main.params, branch.params)
    if main.inputs != branch.inputs:
        parts.append(f"inputs {json.dumps(main.inputs, sort_keys=True)} -> {json.dumps(branch.inputs, sort_keys=True)}")
    elif main.input_fingerprints != branch.input_fingerprints:
        changed = sorted(k for k in set(main.input_fingerprints) | set(branch.input_fingerprints)
                         if main.input_fingerprints.get(k) != branch.input_fingerprints.get(k))
        parts.append(f"upstream {', '.join(changed)} changed")
    return "; ".join(parts) or "metadata differs"


def _slice_change(main: StoredSlice, branch: StoredSlice) -> str:
    parts = _dict_change("definition", main.definition, branch.definition)
    if not parts and main.inputs == branch.inputs:
        parts.append("an input's fingerprint changed")
    return "; ".join(parts) or "metadata differs"


def _dict_change(label: str, old: dict, new: dict) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{label}.{key} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    return out
