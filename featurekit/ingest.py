"""Read the spec's source and work out which rows are new (keyed), with per-row issues.

`prepare_ingest` reads but never writes; the engine appends what it returns.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .source import RowIssue, file_signature
from .table import source_signature


@dataclass
class PreparedIngest:
    """The rows an apply would append, and what it skipped and why."""

    new_rows: pa.Table | None
    signature: dict[str, Any]
    changed: bool
    rows_read: int = 0
    already_present: int = 0
    issues: list[RowIssue] = field(default_factory=list)

    @property
    def count(self) -> int:
        return 0 if self.new_rows is None else self.new_rows.num_rows

    def issue_counts(self) -> dict[str, int]:
        return dict(Counter(i.message.split(":")[0] for i in self.issues))


def prepare_ingest(project, dataset) -> PreparedIngest | None:
    """None when the spec has no source."""
    spec = project.spec.source
    if spec is None:
        return None
    files = list(project.source_files)
    signature = {"files": file_signature(files, project.root), "key": spec.key, "files_map": spec.files}
    stored = source_signature(dataset.schema) if dataset is not None else None
    if stored == signature:
        return PreparedIngest(None, signature, changed=False)
    tables, issues = [], []
    for path in files:
        batch = project.source.read(path)
        issues.extend(batch.issues)
        if batch.table.num_rows:
            tables.append(batch.table)
    if not tables:
        return PreparedIngest(None, signature, True, issues=issues)
    table = pa.concat_tables(tables, promote_options="permissive")
    rows_read = table.num_rows + len(issues)
    table = _drop_bad_keys(table, spec.key, issues)
    present = 0
    if dataset is not None and table.num_rows:
        existing = dataset.to_table(columns=[spec.key]).column(spec.key)
        mask = pc.is_in(table.column(spec.key), value_set=existing.cast(table.schema.field(spec.key).type))
        present = pc.sum(mask).as_py() or 0
        table = table.filter(pc.invert(mask))
    for target, path_col in spec.files.items():
        table = _load_files(table, target, path_col, project.root, spec.key, issues)
    return PreparedIngest(table if table.num_rows else None, signature, True, rows_read, present, issues)


def _drop_bad_keys(table: pa.Table, key: str, issues: list[RowIssue]) -> pa.Table:
    if key not in table.column_names:
        issues.append(RowIssue("source", f"missing key: no column {key!r} in the source"))
        return table.slice(0, 0)
    keys = table.column(key)
    nulls = pc.is_null(keys)
    n_null = pc.sum(nulls).as_py() or 0
    if n_null:
        issues.extend(RowIssue(f"row {i}", f"missing key: {key!r} is null")
                      for i in pc.indices_nonzero(nulls).to_pylist())
        table = table.filter(pc.invert(nulls))
    if pc.count_distinct(table.column(key)).as_py() == table.num_rows:
        return table  # the common case, without a Python loop over every key
    seen: set = set()
    keep = []
    for i, k in enumerate(table.column(key).to_pylist()):
        if k in seen:
            issues.append(RowIssue(f"key {k!r}", "duplicate key: kept the first row with this key"))
            keep.append(False)
        else:
            seen.add(k)
            keep.append(True)
    return table if all(keep) else table.filter(pa.array(keep))


def _load_files(table: pa.Table, target: str, path_col: str, root: Path, key: str,
                issues: list[RowIssue]) -> pa.Table:
    blobs, keep = [], []
    for k, rel in zip(table.column(key).to_pylist(), table.column(path_col).to_pylist()):
        if rel is None:
            blobs.append(None)
            keep.append(True)
            continue
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        try:
            blobs.append(path.read_bytes())
            keep.append(True)
        except OSError as exc:
            issues.append(RowIssue(f"key {k!r}", f"unreadable file: {path}: {exc.strerror or exc}"))
            blobs.append(None)
            keep.append(False)
    column = pa.array(blobs, pa.large_binary())
    if target in table.column_names:
        table = table.set_column(table.column_names.index(target), target, column)
    else:
        table = table.append_column(target, column)
    return table if all(keep) else table.filter(pa.array(keep))
