"""What a stored slice holds: rows per split, rows removed by each step, duplicate groups.

Read from the slice's two columns, so any table featurekit wrote can be reported on
without recomputing anything; the change since the previous apply and the leaks come
from the apply log.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..table.metadata import FAILED_SEP, applies, sql_quote, stored_slices

STEP_RE = r"^[0-9a-f]+!(?P<step>[a-z_]+)"
REMOVED_RE = r"^[^!]*!(?P<step>(?:near_)?duplicate):(?P<split>[^:]*):(?P<key>.*)$"


@dataclass(frozen=True)
class SliceReport:
    """The value `featurekit slice --json` prints."""

    slice: str
    table_version: int
    fresh: bool
    reasons: tuple[str, ...]
    rows: int                                 # rows in the table
    splits: dict[str, int]                    # members per split
    removed: dict[str, int]                   # rows left out, per step (from, where, duplicate, ...)
    waiting: int                              # rows waiting for an upstream value
    unexamined: int                           # rows not examined yet (apply has not run since)
    leaks: int
    leak_groups: list[dict] = field(default_factory=list)
    # duplicate groups, largest first: {keeper, removed: [keys], size, exact, near}, keys in the key column's type
    groups: list[dict] = field(default_factory=list)
    change: dict[str, Any] = field(default_factory=dict)  # what the last apply that ran the slice did
    key: str | None = None
    uri: Any = ""                  # the TableRef it was read from (reopened by keys())
    gallery: Path | None = None    # the gallery page written, when one was asked for

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("uri")
        out.pop("gallery")
        return out

    def keys(self, split: str) -> list:
        """The row keys of a split, in storage order."""
        from ..table.handle import open_dataset
        if split not in self.splits:
            raise KeyError(f"slice {self.slice!r} has no split {split!r}; its splits: {', '.join(self.splits)}")
        ds = open_dataset(self.uri, self.table_version)
        col = self.key or "_rowid"
        tbl = ds.to_table(columns=[self.key] if self.key else [], filter=f"{self.slice} = {sql_quote(split)}",
                          with_row_id=self.key is None)
        return tbl.column(col).to_pylist()


def slice_counts(ds, name: str) -> tuple[dict[str, int], dict[str, int], int, int]:
    """(members per split, removed per step, waiting rows, rows never examined)."""
    tbl = ds.to_table(columns=[name, f"_fk_{name}"])
    splits = {k: v for k, v in _counts(tbl.column(name)).items() if k is not None}
    state = tbl.column(f"_fk_{name}")
    steps = _counts(pc.struct_field(pc.extract_regex(state, STEP_RE), "step")) if len(state) else {}
    waiting = steps.pop("blocked", 0)
    steps.pop(None, None)
    unexamined = state.null_count
    return splits, dict(sorted(steps.items())), waiting, unexamined


def _counts(arr) -> dict:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return {row["values"]: row["counts"] for row in pc.value_counts(arr).to_pylist()}


def duplicate_groups(ds, name: str, key: str | None, limit: int = 20) -> list[dict]:
    """Keepers with the rows removed as their duplicates, largest groups first."""
    state = f"_fk_{name}"
    cols = [state] + ([key] if key else [])
    tbl = ds.to_table(columns=cols, filter=f"{state} LIKE '%{FAILED_SEP}%duplicate:%'")
    parts = pc.extract_regex(tbl.column(state).combine_chunks(), REMOVED_RE)
    keepers = _as_key_type(parts.field("key"), ds.schema.field(key).type if key else None)
    kinds = parts.field("step").to_pylist()
    removed = tbl.column(key).to_pylist() if key else [None] * tbl.num_rows
    groups: dict[str, dict] = {}
    for keeper, kind, row in zip(keepers, kinds, removed):
        g = groups.setdefault(keeper, {"keeper": keeper, "removed": [], "near": 0, "exact": 0})
        g["removed"].append(row)
        g["near" if kind == "near_duplicate" else "exact"] += 1
    ordered = sorted(groups.values(), key=lambda g: (-len(g["removed"]), str(g["keeper"])))
    for g in ordered:
        g["size"] = len(g["removed"]) + 1
    return ordered[:limit]


def _as_key_type(keepers: pa.Array, key_type: pa.DataType | None) -> list:
    """Keepers as values of the key column (the state column holds them as text), so a group's
    keeper and removed rows have one type; text when they do not parse as that type."""
    if key_type is None or pa.types.is_string(key_type) or pa.types.is_large_string(key_type):
        return keepers.to_pylist()
    try:
        return keepers.cast(key_type).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return keepers.to_pylist()


def last_run(schema, name: str) -> tuple[dict[str, Any], list[dict]]:
    """What the latest apply that ran the slice did, and every leak recorded since the slice
    was last computed from scratch."""
    change: dict[str, Any] = {}
    leaks: list[dict] = []
    for entry in applies(schema):
        run = entry.get("slices", {}).get(name)
        if run is None:
            continue
        if run.get("full"):
            leaks = []
        leaks += run.get("leaks", [])
        change = {"at": entry.get("at"), "version": entry.get("version_to"), **run}
    return change, leaks


def build_report(project, name: str, ds) -> SliceReport:
    from ..planning.planner import build_plan
    from ..table.handle import table_ref
    sl = project.slices[name]
    stored = stored_slices(ds.schema).get(name)
    if stored is None or sl.state_column not in ds.schema.names:
        from ..errors import NotReady
        raise NotReady(f"slice {name!r} is not in the table yet; run 'featurekit apply' to compute it")
    step = build_plan(project, ds, None).slice_step(name)
    splits, removed, waiting, unexamined = slice_counts(ds, name)
    splits = {s: splits.get(s, 0) for s in sl.splits} | {s: n for s, n in splits.items() if s not in sl.splits}
    change, leaks = last_run(ds.schema, name)
    key = sl.key if sl.key in ds.schema.names else None
    fresh = step.action == "none"
    return SliceReport(slice=name, table_version=ds.version, fresh=fresh,
                       reasons=tuple(step.reasons) if step.action == "recompute" else (),
                       rows=ds.count_rows(), splits=splits, removed=removed, waiting=waiting,
                       unexamined=unexamined, leaks=len(leaks), leak_groups=leaks,
                       groups=duplicate_groups(ds, name, key), change=change, key=key,
                       uri=table_ref(project))


def render(report: SliceReport, groups: int = 5) -> str:
    total = sum(report.splits.values())
    head = f"slice {report.slice}: {total} of {report.rows} rows (table version {report.table_version})"
    lines = [head]
    if not report.fresh:
        lines.append("  stale: " + ("; ".join(report.reasons) or "rows not examined yet")
                     + " (run featurekit apply)")
    width = max([len(s) for s in report.splits] + [5])
    for split, n in report.splits.items():
        share = f"{n / total:.1%}" if total else "-"
        lines.append(f"  {split:<{width}}  {n:>8}  {share:>6}")
    if report.removed:
        lines.append("removed: " + ", ".join(f"{step} {n}" for step, n in report.removed.items()))
    if report.waiting:
        lines.append(f"waiting for an upstream value: {report.waiting} row(s) (examined by the next apply)")
    if report.unexamined:
        lines.append(f"not examined yet: {report.unexamined} row(s)")
    ch = report.change
    if ch:
        added = ", ".join(f"{s} +{n}" for s, n in ch.get("added", {}).items()) or "none"
        gone = ", ".join(f"{s} {n}" for s, n in ch.get("removed", {}).items()) or "none"
        how = "from scratch" if ch.get("full") else "incrementally"
        lines.append(f"last apply ({ch.get('at')}, version {ch.get('version')}): examined {ch.get('examined', 0)} "
                     f"row(s) {how}; kept {added}; left out {gone}")
        if ch.get("full") and "previous" in ch:
            p = ch["previous"]
            moved = ", ".join(f"{k} {v}" for k, v in p.get("left", {}).items()) or "none"
            lines.append(f"  against the previous membership: {p.get('stayed', 0)} stayed, {p.get('joined', 0)} "
                         f"joined, left: {moved}, {p.get('moved', 0)} changed split")
    lines.append(f"leaks across splits: {report.leaks}")
    for leak in report.leak_groups[:groups]:
        lines.append(f"  rows {', '.join(map(str, leak['keys']))} joined groups in {' and '.join(leak['splits'])}")
    if report.groups:
        lines.append("largest duplicate groups (keeper: removed rows):")
        for g in report.groups[:groups]:
            shown = ", ".join(map(str, g["removed"][:8])) + (" ..." if len(g["removed"]) > 8 else "")
            kinds = ", ".join(f"{g[k]} {k}" for k in ("exact", "near") if g.get(k))
            lines.append(f"  {g['keeper']} ({g['size']} rows: {kinds}): {shown}")
    return "\n".join(lines)

