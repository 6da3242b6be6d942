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
    """The rows an apply would append, and what it skipped and why.

    File columns (``source.files``) are not read here: `batches()` loads the bytes a chunk
    at a time while the engine writes, so memory holds one chunk of images, not the source.
    """

    new_rows: pa.Table | None
    signature: dict[str, Any]
    changed: bool
    already_present: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # binary column -> column of paths
    root: Path = Path(".")
    key: str = ""

    @property
    def count(self) -> int:
        return 0 if self.new_rows is None else self.new_rows.num_rows

    def issue_counts(self) -> dict[str, int]:
        return dict(Counter(i.message.split(":")[0] for i in self.issues))

    def schema(self) -> pa.Schema:
        schema = self.new_rows.schema
        for target in self.files:
            field_ = pa.field(target, pa.large_binary())
            i = schema.get_field_index(target)
            schema = schema.set(i, field_) if i >= 0 else schema.append(field_)
        return schema

    def batches(self, start: int = 0, stop: int | None = None, chunk_rows: int = 256):
        """New rows [start, stop) with file bytes loaded, chunk by chunk; unreadable files
        become issues."""
        schema = self.schema()
        rows = self.new_rows.slice(start, (stop if stop is not None else self.count) - start)
        if not self.files:
            yield from rows.cast(schema).to_batches()
            return
        for batch in rows.to_batches(max_chunksize=chunk_rows):
            table = pa.Table.from_batches([batch])
            for target, path_col in self.files.items():
                table = _load_files(table, target, path_col, self.root, self.key, self.issues)
            yield from table.cast(schema).to_batches()


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
    table = _drop_bad_keys(table, spec.key, issues)
    present = 0
    if dataset is not None and table.num_rows:
        existing = dataset.to_table(columns=[spec.key]).column(spec.key)
        mask = pc.is_in(table.column(spec.key), value_set=existing.cast(table.schema.field(spec.key).type))
        present = pc.sum(mask).as_py() or 0
        table = table.filter(pc.invert(mask))
    for path_col in spec.files.values():
        table = _drop_missing_files(table, path_col, project.root, spec.key, issues)
    return PreparedIngest(table if table.num_rows else None, signature, True, present, issues,
                          files=dict(spec.files), root=project.root, key=spec.key)


def _resolve(root: Path, rel: str) -> Path:
    return Path(rel) if Path(rel).is_absolute() else root / rel


def _drop_missing_files(table: pa.Table, path_col: str, root: Path, key: str, issues: list[RowIssue]) -> pa.Table:
    """A cheap check the plan can afford: the named file exists."""
    keep = []
    for k, rel in zip(table.column(key).to_pylist(), table.column(path_col).to_pylist()):
        ok = rel is None or _resolve(root, rel).is_file()
        if not ok:
            issues.append(RowIssue(f"key {k!r}", f"unreadable file: {_resolve(root, rel)}: not found"))
        keep.append(ok)
    return table if all(keep) else table.filter(pa.array(keep))


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
    for k in table.column(key).to_pylist():
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
        path = _resolve(root, rel)
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
