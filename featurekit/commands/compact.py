"""`featurekit compact`: merge small fragments, then delete old versions nobody pins.

Why: every apply adds Lance versions and appends add small fragments; old versions keep
every replaced data file on disk (a recomputed 1.6 MB-a-row hiddens column stays in full).
Compaction merges fragments smaller than ``table.fragment_rows`` (Lance rewrites them into
one data file holding every column; featurekit's per-feature DataReplacement works on such
a fragment as on any other: notes/lance-facts.md section 5). Values, states and
fingerprints are unchanged, so the next apply is a no-op.

Cleanup removes main's versions older than ``older_than``, except: the latest, tagged versions
(Lance's own protection), the version each branch starts from (its files are the branch's
too), and the versions a training run depends on, named by its run
manifest (``<recipe output>/*/manifest.json``: ``table.version`` and the loaders'
versions), and the version a recipe pins with ``table: {version: N}``. Those are protected by a
Lance tag (``featurekit-run-<recipe>-<run>``, ``featurekit-recipe-<recipe>-v<N>``) created
here (tags are what Lance's cleanup honours, and they show in ``ds.tags.list()``);
deleting the tag releases the version to the next compact. A version a live `DataLoader` or
`featurekit.read` holds (its reader lease, `table/readers.py`) is kept too, and the output says
which reader holds it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import TableNotFound, UsageError
from ..planning.project import project_of
from ..planning.resolve import Project
from ..plugins.registry import Registry
from ..table.handle import Table
from ..table.lock import table_lock
from ..table.readers import live_readers

TAG_PREFIX = "featurekit-run-"
RECIPE_TAG_PREFIX = "featurekit-recipe-"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'30s', '15m', '12h', '7d', '2w' -> timedelta."""
    m = _DURATION.match(text or "")
    if m is None:
        raise UsageError(f"--older-than {text!r}: give a number and a unit: 30s, 15m, 12h, 7d or 2w")
    return timedelta(seconds=float(m[1]) * _UNITS[m[2]])


@dataclass
class CompactResult:
    table: str
    dry_run: bool
    version_before: int
    version_after: int
    fragments_before: int
    fragments_after: int
    fragments_merged: int = 0
    versions_removed: list[int] = field(default_factory=list)
    versions_kept: dict[int, str] = field(default_factory=dict)   # old version -> why it stays
    bytes_freed: int = 0
    tags_created: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"compact {self.table}: version {self.version_before}"
                 + ("" if self.dry_run else f" -> {self.version_after}")]
        merged = f"{self.fragments_merged} small fragment(s) merged" if self.fragments_merged else "no small fragments"
        lines.append(f"  fragments: {self.fragments_before} -> {self.fragments_after} ({merged})")
        lines.append(f"  old versions {'to remove' if self.dry_run else 'removed'}: {len(self.versions_removed)}"
                     + (f" ({_ranges(self.versions_removed)})" if self.versions_removed else ""))
        for v, why in sorted(self.versions_kept.items()):
            lines.append(f"  kept version {v}: {why}")
        for tag in self.tags_created:
            lines.append(f"  tagged {tag}")
        lines.append(f"  {'would free' if self.dry_run else 'freed'} {_bytes(self.bytes_freed)}"
                     + (" (and the files compaction replaces)" if self.dry_run and self.fragments_merged else ""))
        return "\n".join(lines)


def compact(spec: str | Path | Project, *, older_than: str | timedelta = "7d", dry_run: bool = False,
            registry: Registry | None = None) -> CompactResult:
    """Merge small fragments and delete main's old versions (`older_than`: '30s', '12h', '7d',
    '2w' or a timedelta), except the latest, tagged ones, each branch's starting version and
    those a run manifest or a recipe pins (see the module docstring). Values are unchanged."""
    project = project_of(spec, registry)
    older_than = parse_duration(older_than) if isinstance(older_than, str) else older_than
    table = Table.of(project).main  # main's versions; a branch keeps the main version it starts from
    with table_lock(table.ref):  # no apply writes while files are rewritten and removed
        if not table.exists:
            raise TableNotFound(f"table {table.uri} does not exist yet; run 'featurekit apply'", table=table.uri)
        ds = table.dataset
        result = CompactResult(table.uri, dry_run, ds.version, ds.version, len(ds.get_fragments()), 0)
        pins = run_pins(project)
        ds = _compact_fragments(table, project.spec.table.fragment_rows, dry_run, result)
        result.fragments_after = len(ds.get_fragments()) if not dry_run else result.fragments_after
        readers = reader_pins(table)
        if table.lease is not None and not dry_run:  # a compact that lost its lease removes nothing
            table.lease.check()
        _cleanup(ds, pins, older_than, dry_run, result, local=not table.ref.remote, readers=readers)
        result.version_after = ds.version
        return result


def run_pins(project) -> dict[int, list[str]]:
    """Table versions named by run manifests, or by a recipe's ``table: {version: N}`` (on main):
    version -> tag names that protect it."""
    pins: dict[int, list[str]] = {}
    for name, recipe in project.spec.recipes.items():
        pinned = recipe.table.version if recipe.table is not None else None
        if pinned is not None and project.spec.table.branch is None:
            pins.setdefault(pinned, []).append(f"{RECIPE_TAG_PREFIX}{_tag_safe(name)}-v{pinned}")
        for manifest in sorted((project.root / recipe.output).glob("*/manifest.json")):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            table = data.get("table") or {}
            if table.get("branch"):
                continue  # a run on a branch: main's cleanup never removes a branch's versions
            if table.get("uri") not in (None, project.table_uri) and \
                    Path(str(table.get("uri"))).resolve() != Path(project.table_uri).resolve():
                continue  # a run of another table
            versions = {table.get("version")} | {ld.get("version") for ld in data.get("loader") or []
                                                 if isinstance(ld, dict)}
            run = _tag_safe(f"{name}-{manifest.parent.name}")
            for v in versions:
                if isinstance(v, int):
                    pins.setdefault(v, []).append(f"{TAG_PREFIX}{run}" + ("" if v == table.get("version") else f"-v{v}"))
    return pins


def reader_pins(table: Table) -> dict[int, list[str]]:
    """Versions live readers hold: version -> who ("DataLoader, user@host pid 12, heartbeat 3s ago")."""
    out: dict[int, list[str]] = {}
    for r in live_readers(table.ref):
        out.setdefault(r["version"], []).append(f"{r['what']}, {r['holder']}, heartbeat {r['age']:.0f}s ago")
    return out


def _tag_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _compact_fragments(table: Table, target: int, dry_run: bool, result: CompactResult):
    from lance.optimize import Compaction
    ds = table.dataset
    options = {"target_rows_per_fragment": target}
    plan = Compaction.plan(ds, options)
    result.fragments_merged = sum(len(t.fragments) for t in plan.tasks)
    if dry_run or not plan.num_tasks():
        result.fragments_after = result.fragments_before - result.fragments_merged + plan.num_tasks()
        return ds
    from ..lifetime import critical
    if table.lease is not None:  # compact_files takes no commit_lock: the lease is checked just before
        table.lease.check()
    with critical():
        ds.optimize.compact_files(**options)
    return table.refresh()


def _cleanup(ds, pins: dict[int, list[str]], older_than: timedelta, dry_run: bool, result: CompactResult,
             local: bool, readers: dict[int, list[str]] | None = None) -> None:
    readers = readers or {}
    tagged = {}
    for name, tag in ds.tags.list().items():
        if tag.get("branch") is None:
            tagged.setdefault(tag["version"], []).append(name)
    bases = {}
    for name, branch in ds.branches.list().items():
        if branch.get("parent_branch") is None:  # a branch's files start as this main version's
            bases.setdefault(branch["parent_version"], []).append(name)
    cutoff = datetime.now(timezone.utc) - older_than
    removable = []
    for v in ds.versions():
        number = v["version"]
        if number == ds.version:
            continue
        if number in tagged:
            result.versions_kept[number] = "tagged " + ", ".join(sorted(tagged[number]))
        elif number in bases:
            result.versions_kept[number] = "branch " + ", ".join(sorted(bases[number])) + " starts here"
        elif number in pins:
            result.versions_kept[number] = "named by a run manifest or a recipe's table.version; tagged " \
                + ", ".join(pins[number])
        elif number in readers:
            result.versions_kept[number] = "read by a live reader (" + "; ".join(readers[number]) + ")"
        elif _when(v["timestamp"]) <= cutoff:
            removable.append(number)
    if not dry_run:
        existing = ds.tags.list()
        for number, tags in sorted(pins.items()):
            if number in tagged or number not in {v["version"] for v in ds.versions()}:
                continue
            tag = tags[0]
            if tag in existing:  # a name another pin took (names are sanitized): make it unique
                tag = f"{tag}-v{number}"
                if tag in existing:
                    continue
            ds.tags.create(tag, number)
            existing[tag] = {"version": number}
            result.tags_created.append(tag)
    result.versions_removed = removable
    if not removable:
        return
    # with the table lock held no apply has files in flight, so unreferenced files may go (local only)
    kwargs = dict(versions=removable, error_if_tagged_old_versions=False, delete_unverified=local)
    if dry_run:
        stats = ds.explain_cleanup_old_versions(**kwargs).stats
    else:
        stats = ds.cleanup_old_versions(**kwargs)
    result.bytes_freed = stats.bytes_removed


def _when(stamp) -> datetime:
    if isinstance(stamp, datetime):
        return stamp.astimezone(timezone.utc)  # pylance gives local time without a zone
    return datetime.fromtimestamp(stamp, timezone.utc)


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _ranges(versions: list[int]) -> str:
    out, start, prev = [], None, None
    for v in sorted(versions):
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)
