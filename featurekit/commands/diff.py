"""`featurekit diff` and `plan --against`: how a spec changed in git, without touching data.

The spec as committed at a git revision is resolved against the same table and compared with
the working copy (or another revision): features added, removed, or changed and exactly why;
slices whose membership would change; recipes affected.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

# -- spec at a git revision ---------------------------------------------------------------

def check_rev(rev: str) -> str:
    """A git revision as featurekit passes it to git: never an option (``--output=PATH`` would
    have git write PATH), never a path spec of its own."""
    if not isinstance(rev, str) or not rev or rev.startswith("-") or any(c in rev for c in ":\0\n\r"):
        raise UsageError(f"{rev!r} is not a git revision (a commit, branch or tag: HEAD~1, v1.0, main); "
                         "options are not passed to git")
    return rev


def spec_at(path: Path, rev: str) -> str:
    """The spec file's text as committed at `rev`."""
    check_rev(rev)
    path = Path(path).resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    rel = path.relative_to(Path(top).resolve()).as_posix()
    text = _git(path.parent, "show", "--end-of-options", f"{rev}:{rel}")
    return text + "\n"


def _git(cwd: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"git {' '.join(args)}: {exc}") from None
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout.rstrip("\n")


def load_at(path: Path, rev: str | None, registry=None):
    """The resolved project of the spec at `rev` (None: the working copy), against the same
    table, so column types and fingerprints compare."""
    from ..planning.project import load_spec, resolve_document
    from ..spec.document import load_document
    if rev is None:
        return load_spec(path, registry=registry)
    doc = load_document(Path(path), spec_at(path, rev))
    doc.file = f"{rev}:{Path(path).name}"
    return resolve_document(doc, Path(path), registry=registry)


# -- comparing two resolved specs ------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    kind: str          # feature | slice | recipe | source | table (name: the same word)
    name: str
    action: str        # added | removed | changed | stale (an upstream changed) | unchanged
    reasons: tuple[str, ...] = ()


@dataclass
class SpecDiff:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "changes": [asdict(c) for c in self.changes if c.action != "unchanged"]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        lines = [f"diff {self.old} -> {self.new}"]
        symbol = {"added": "+", "removed": "-", "changed": "~", "stale": "~"}
        shown = [c for c in self.changes if c.action != "unchanged"]
        for c in shown:
            what = c.kind if c.kind == c.name else f"{c.kind} {c.name}"
            lines.append(f"  {symbol[c.action]} {what}: {c.action}")
            lines.extend(f"      {r}" for r in c.reasons)
        if not shown:
            lines.append("  no change to features, slices, recipes, the source or the table")
        return "\n".join(lines)


def diff_projects(old, new, old_label: str, new_label: str) -> SpecDiff:
    from ..planning.planner import slice_stale_reasons, stale_reasons
    from ..table.metadata import StoredFeature, StoredSlice
    out = SpecDiff(old_label, new_label)
    changed: set[str] = set()
    for name, f in new.features.items():
        o = old.features.get(name)
        if o is None:
            out.changes.append(Change("feature", name, "added"))
            changed.add(name)
        elif o.fingerprint != f.fingerprint:
            # params as written (plus run-time facts), as the table records them: defaults are not changes
            stored = StoredFeature(name, tuple(o.columns), o.extractor_cls.name, str(o.extractor_cls.version),
                                   o.extractor_cls(o.params).fingerprint_params(), dict(o.inputs), o.fingerprint)
            reasons = stale_reasons(f, stored, changed)
            own = [r for r in reasons if not r.startswith(("upstream", "fingerprint"))]
            out.changes.append(Change("feature", name, "changed" if own else "stale", tuple(reasons)))
            changed.add(name)
        else:
            out.changes.append(Change("feature", name, "unchanged"))
    out.changes += [Change("feature", n, "removed") for n in old.features if n not in new.features]
    for name, sl in new.slices.items():
        o = old.slices.get(name)
        if o is None:
            out.changes.append(Change("slice", name, "added"))
            changed.add(name)
        elif o.fingerprint != sl.fingerprint:
            stored = StoredSlice(name, o.fingerprint, "", o.definition, {})
            reasons = [r for r in slice_stale_reasons(sl, stored, changed) if not r.startswith("slice semantics")]
            own = [r for r in reasons if not r.startswith(("upstream", "fingerprint"))]
            out.changes.append(Change("slice", name, "changed" if own else "stale",
                                      tuple(reasons) + ("membership would be recomputed",)))
            changed.add(name)
        else:
            out.changes.append(Change("slice", name, "unchanged"))
    out.changes += [Change("slice", n, "removed") for n in old.slices if n not in new.slices]
    for name, rs in new.spec.recipes.items():
        o = old.spec.recipes.get(name)
        if o is None:
            out.changes.append(Change("recipe", name, "added"))
            continue
        reasons = _changes(o.model_dump(mode="json", exclude_unset=True), rs.model_dump(mode="json", exclude_unset=True))
        ups = sorted(a.split(":", 1)[1] for a in new.graph.ancestors(f"recipe:{name}") if a.split(":", 1)[1] in changed)
        if ups:
            reasons.append("reads what changed: " + ", ".join(ups))
        out.changes.append(Change("recipe", name, "changed" if reasons else "unchanged", tuple(reasons)))
    out.changes += [Change("recipe", n, "removed") for n in old.spec.recipes if n not in new.spec.recipes]
    for kind, o, n in (("source", old.spec.source, new.spec.source), ("table", old.spec.table, new.spec.table)):
        dump = (lambda m: m.model_dump(mode="json", exclude_unset=True) if m is not None else {})  # noqa: E731
        reasons = _changes(dump(o), dump(n))
        if reasons:
            out.changes.append(Change(kind, kind, "changed", tuple(reasons)))
    return out


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key old -> new' for each key that differs; mappings are compared key by key."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, _UNSET), new.get(k, _UNSET)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k} changed: {_shown(a)} -> {_shown(b)}")
    return out


_UNSET = object()


def _shown(value) -> str:
    return "(not set)" if value is _UNSET else json.dumps(value, default=str)


def diff(path: str | Path, rev1: str, rev2: str | None = None, registry=None) -> SpecDiff:
    """The spec at `rev1` against `rev2` (None: the working copy)."""
    check_rev(rev1)
    if rev2 is not None:
        check_rev(rev2)
    old = load_at(Path(path), rev1, registry)
    new = load_at(Path(path), rev2, registry)
    return diff_projects(old, new, rev1, rev2 or "working copy")
