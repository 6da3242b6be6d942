"""Read the spec's source and compare it with the table, row by row (keyed).

`prepare_ingest` reads but never writes. It finds the rows that are new (keys the table
lacks), the rows that changed since they were ingested, the rows gone from the source and
the rows that cannot be ingested (with why, where, and their key). `write_changes` and the
engine's append write what it returns.

How a change is noticed: every row carries, in the reserved column ``_fk_source``, a hash
of its source values (`rowhash`) followed, per loaded file, by the file's size, mtime and
content hash: ``<values>;<size>:<mtime_ns>:<blake2b>``. A file whose size and mtime are
unchanged is not read again; one that was only touched is read, found equal, and leaves
the row alone.

When nothing needs reading: the table records the source files' sizes and mtimes (the
signature). If they are unchanged, no row was left behind last time, and every loaded
file still has the size and mtime recorded for its row, the source is not read at all.
A source that was read and found in sync writes no Lance version; the signature seen is
then kept in a small file beside the table (local tables), so the next apply can skip the
read again.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceUnreadable, SpecError
from ..plugins.source import RowIssue, file_signature
from ..table.metadata import applies, source_signature
from .files import FileProblem, FileRoot, content_hash
from .rowhash import row_hashes
from .sanitize import conform, drop_invalid_text, reserved_columns, row_locator, widen

SOURCE_COLUMN = "_fk_source"  # per row: the hash of what was ingested (see the module docstring)
MAX_KEYS_SHOWN = 10
ON_CHANGE = ("update", "ignore", "error")


@dataclass
class PreparedIngest:
    """What an apply would write from the source, and what it skipped and why.

    File columns (``source.files``) are not read here: `batches()` loads the bytes a chunk
    at a time while the engine writes, so memory holds one chunk of images, not the source.
    """

    new_rows: pa.Table | None
    signature: dict[str, Any]
    changed: bool                      # the source was read (its files or rows may differ)
    already_present: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # binary column -> column of paths
    root: FileRoot | None = None
    key: str = ""
    changed_rows: pa.Table | None = None  # new content of changed rows (written under on_change: update)
    changed_keys: list = field(default_factory=list)  # keys whose source row differs from the table's
    gone_keys: list = field(default_factory=list)     # keys in the table, no longer in the source
    delete_keys: list = field(default_factory=list)   # keys the engine deletes (changed; gone with --prune)
    on_change: str = "update"
    on_skip: str = "report"
    verified: dict[str, list] = field(default_factory=dict)  # touched files found unchanged
    prune_blocked: str | None = None  # why --prune deletes no gone row this time
    duplicate_keys: list = field(default_factory=list)  # keys the table holds more than once (refused)
    table_uri: str = ""

    @property
    def count(self) -> int:
        """Rows to write: new ones, and the new content of changed ones."""
        return _rows(self.new_rows) + _rows(self.changed_rows)

    @property
    def has_work(self) -> bool:
        return bool(self.count or self.delete_keys or (self.changed_keys and self.on_change == "error"))

    def issue_counts(self) -> dict[str, int]:
        counts: Counter = Counter()
        for issue in self.issues:
            counts[issue.category] += issue.rows
        return dict(counts)

    def skipped_examples(self, limit: int = 3) -> dict[str, list[str]]:
        """Per category, the first `limit` issues as "where: message" (file:line or key)."""
        out: dict[str, list[str]] = {}
        for issue in self.issues:
            shown = out.setdefault(issue.category, [])
            if len(shown) < limit:
                shown.append(f"{issue.where}: {issue.message}" if issue.where else issue.message)
        return out

    def skipped_keys(self) -> dict[str, list]:
        """Per category, the keys of the rows skipped (when known)."""
        out: dict[str, list] = {}
        for issue in self.issues:
            if issue.key is not None:
                out.setdefault(issue.category, []).append(issue.key)
        return out

    def check(self) -> None:
        """``source.on_change: error`` / ``on_skip: error``: refuse to write anything when rows
        changed, or when source rows cannot be ingested. A table that already holds a key
        twice (two writers raced before the lock was keyed by the table's real path) is
        refused whatever the spec says: every later ingest and computation would build on it."""
        if self.duplicate_keys:
            keys = self.duplicate_keys
            where = f" {self.table_uri}" if self.table_uri else ""
            listed = ", ".join(repr(k) for k in keys[:MAX_KEYS_SHOWN])
            raise SourceUnreadable(
                f"the table{where} holds {len(keys)} key(s) more than once ({show_keys(keys)}), which featurekit never "
                f"writes (two applies raced on it); nothing was written. Delete those rows, e.g. "
                f"lance.dataset(URI).delete(\"{self.key} IN ({listed}{', ...' if len(keys) > MAX_KEYS_SHOWN else ''})\"), "
                "then run apply again: it ingests them once from the source and computes their features")
        if self.issues and self.on_skip == "error":
            shown = "; ".join(f"{i.where}: {i.message}" if i.where else i.message for i in self.issues[:3])
            more = f" (and {len(self.issues) - 3} more)" if len(self.issues) > 3 else ""
            raise SourceUnreadable(f"{sum(i.rows for i in self.issues)} source row(s) cannot be ingested and "
                                   f"source.on_skip is 'error': {shown}{more}; fix them, or set on_skip: report")
        if self.changed_keys and self.on_change == "error":
            raise SourceUnreadable(f"{len(self.changed_keys)} source row(s) changed since they were ingested "
                                   f"(keys {show_keys(self.changed_keys)}) and source.on_change is 'error'; "
                                   "set it to 'update' to rewrite them, or 'ignore' to keep the table's values")

    def schema(self) -> pa.Schema:
        table = self.new_rows if self.new_rows is not None else self.changed_rows
        schema = table.schema
        for target in self.files:
            field_ = pa.field(target, pa.large_binary())
            i = schema.get_field_index(target)
            schema = schema.set(i, field_) if i >= 0 else schema.append(field_)
        return schema

    def batches(self, start: int = 0, stop: int | None = None, chunk_rows: int = 256):
        """New rows [start, stop) with file bytes loaded, chunk by chunk; rows whose file
        cannot be loaded become issues."""
        if self.new_rows is None:
            return
        stop = _rows(self.new_rows) if stop is None else stop
        yield from self._load(self.new_rows.slice(start, stop - start), chunk_rows)

    def changed_batches(self, chunk_rows: int = 256):
        if self.changed_rows is not None:
            yield from self._load(self.changed_rows, chunk_rows)

    def _load(self, rows: pa.Table, chunk_rows: int):
        schema = self.schema()
        if not self.files:
            yield from rows.cast(schema).to_batches()
            return
        for batch in rows.to_batches(max_chunksize=chunk_rows):
            table = _load_files(pa.Table.from_batches([batch]), self.files, self.root, self.key, self.issues)
            yield from table.cast(schema).to_batches()


def _rows(table: pa.Table | None) -> int:
    return 0 if table is None else table.num_rows


def show_keys(keys: list, limit: int = MAX_KEYS_SHOWN) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# -- prepare -------------------------------------------------------------------------------

def prepare_ingest(project, dataset, *, prune: bool = False) -> PreparedIngest | None:
    """None when the spec has no source. `prune`: rows gone from the source are deleted."""
    spec = project.spec.source
    if spec is None:
        return None
    root = FileRoot.for_source(project.root, spec)
    files = list(project.source_files)
    signature = {"files": file_signature(files, project.root), "key": spec.key, "files_map": spec.files,
                 "format": spec.format, "options": spec.options}
    on_change = getattr(spec, "on_change", "update")
    if dataset is not None and _in_sync(project, dataset, signature, root):
        # nothing to ingest; the keys were checked by the apply that left this version, unless
        # another writer (an earlier race, a tool outside featurekit) wrote since
        duplicates = [] if _last_recorded(dataset) == dataset.version else duplicate_keys(dataset, spec.key)
        return PreparedIngest(None, signature, changed=False, files=dict(spec.files), root=root, key=spec.key,
                              on_change=on_change, duplicate_keys=duplicates, table_uri=dataset.uri)
    duplicates = duplicate_keys(dataset, spec.key)
    table, issues = _read_source(project, files, dataset)
    table = _drop_bad_keys(table, spec.key, issues)
    prepared = PreparedIngest(None, signature, True, issues=issues, files=dict(spec.files), root=root,
                              key=spec.key, on_change=on_change, on_skip=getattr(spec, "on_skip", "report"),
                              duplicate_keys=duplicates, table_uri=dataset.uri if dataset is not None else "")
    if table.num_rows:
        table = table.append_column(SOURCE_COLUMN, pa.array(row_hashes(table), pa.string()))
    _compare(prepared, table, dataset, prune)
    pending = sum(i.rows for i in issues) + len(prepared.gone_keys) * (not prune or bool(prepared.prune_blocked)) \
        + len(prepared.changed_keys) * (on_change == "ignore")
    prepared.signature = {**signature, "pending": pending}
    return prepared


def _last_recorded(dataset) -> int | None:
    """The version the table's last recorded apply left (None: none recorded)."""
    log = applies(dataset.schema)
    return log[-1].get("version_to") if log else None


def duplicate_keys(dataset, key: str) -> list:
    """Keys the table holds more than once (none, normally: ingest is keyed)."""
    if dataset is None or key not in dataset.schema.names:
        return []
    keys = dataset.to_table(columns=[key]).column(key)
    if pc.count_distinct(keys, mode="all").as_py() == len(keys):
        return []
    counts = pc.value_counts(keys.combine_chunks())
    many = pc.greater(counts.field("counts"), 1)
    return sorted(counts.field("values").filter(many).to_pylist(), key=lambda k: (k is None, repr(k)))


def _read_source(project, files: list[Path], dataset) -> tuple[pa.Table, list[RowIssue]]:
    """Every file's rows, checked (text, types, reserved names) and concatenated."""
    spec = project.spec.source
    issues: list[RowIssue] = []
    targets: dict[str, tuple[pa.DataType, str]] = {}
    if dataset is not None:
        targets = {f.name: (f.type, "the table") for f in dataset.schema if f.name not in spec.files}
    tables = []
    for path in files:
        batch = project.source.read(path)
        issues.extend(batch.issues)
        table = batch.table
        reserved = reserved_columns(table.schema)
        if reserved:
            raise SpecError([project.doc.problem(("source", "path"), f"{path}: column {reserved[0]!r} starts with "
                                                 "'_fk_', which featurekit reserves for its own columns; rename it "
                                                 "in the source")])
        if not table.num_rows:
            continue
        # each row's number in the file rides along, so a row is located right after others are dropped
        line_of = row_locator(path, batch.lines)
        table = table.append_column(_ROW, pa.array(np.arange(table.num_rows), pa.int64()))
        table, bad = drop_invalid_text(table, _locator(table, line_of), spec.key)
        issues.extend(bad)
        _learn_types(targets, table.schema.remove(table.schema.get_field_index(_ROW)), path)
        table, bad = conform(table, targets, str(path), _locator(table, line_of), spec.key)
        issues.extend(bad)
        if spec.key in table.column_names and table.column(spec.key).null_count:
            nulls = pc.is_null(table.column(spec.key))
            at = _locator(table, line_of)
            issues.extend(RowIssue(at(i), f"missing key: {spec.key!r} is null")
                          for i in pc.indices_nonzero(nulls).to_pylist())
            table = table.filter(pc.invert(nulls))
        tables.append(table.drop_columns([_ROW]))
    if not tables:
        return pa.table({spec.key: pa.array([], targets.get(spec.key, (pa.null(),))[0])}), issues
    try:
        return pa.concat_tables(tables, promote_options="permissive"), issues
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # conform() should make this unreachable
        raise SourceUnreadable(f"the source files' columns do not agree: {exc}") from None


_ROW = "__featurekit_source_row"  # a source row's number in its file, while the file is read


def _locator(table: pa.Table, line_of):
    """Where row i of `table` came from: its file's row number (the `_ROW` column), located."""
    rows = table.column(_ROW).to_numpy()
    return lambda i: line_of(int(rows[i]))


def _learn_types(targets: dict[str, tuple[pa.DataType, str]], schema: pa.Schema, path: Path) -> None:
    """A column the table lacks takes the type of the first file that has it (widened by
    later files where no value changes meaning: int -> float)."""
    for f in schema:
        if f.name not in targets:
            targets[f.name] = (f.type, str(path))
            continue
        current, origin = targets[f.name]
        if origin == "the table":
            continue
        wider = widen(current, f.type)
        if wider is not None:
            targets[f.name] = (wider, origin)


def _drop_bad_keys(table: pa.Table, key: str, issues: list[RowIssue]) -> pa.Table:
    if key not in table.column_names:
        if table.num_rows:
            issues.append(RowIssue("source", f"missing key: no column {key!r} in the source", rows=table.num_rows))
        return table.slice(0, 0)
    if not table.num_rows:  # every row skipped: the key column may have no type yet (null)
        return table
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
            issues.append(RowIssue(f"key {k!r}", "duplicate key: kept the first row with this key", key=k))
            keep.append(False)
        else:
            seen.add(k)
            keep.append(True)
    return table if all(keep) else table.filter(pa.array(keep))


# -- compare with the table --------------------------------------------------------------

def _compare(prepared: PreparedIngest, table: pa.Table, dataset, prune: bool) -> None:
    """Sort the source rows into new, unchanged and changed; find the rows gone."""
    key = prepared.key
    new, existing = table, None
    if dataset is not None and key in dataset.schema.names:
        columns = [key] + ([SOURCE_COLUMN] if SOURCE_COLUMN in dataset.schema.names else [])
        existing = dataset.to_table(columns=columns)
    if existing is not None and table.num_rows:  # an emptied source: every row is gone (and not pruned)
        position = pc.index_in(table.column(key), value_set=existing.column(key).combine_chunks())
        is_new = pc.is_null(position)
        new = table.filter(is_new)
        present = position.filter(pc.invert(is_new))
        old = table.filter(pc.invert(is_new))
        prepared.already_present = old.num_rows
        if SOURCE_COLUMN in existing.column_names and old.num_rows:
            recorded = existing.column(SOURCE_COLUMN).take(present)
            changed = _changed_rows(old, recorded, prepared)
            prepared.changed_keys = old.column(key).filter(changed).to_pylist()
            if prepared.changed_keys and prepared.on_change == "update":
                prepared.changed_rows = _files_present(old.filter(changed), prepared)
                prepared.delete_keys = list(prepared.changed_keys)
    if existing is not None and existing.num_rows:
        prepared.gone_keys = _gone(existing.column(key), table.column(key), prepared.issues)
        prepared.prune_blocked = _prune_blocked(prepared, table)
        if prune and not prepared.prune_blocked:
            prepared.delete_keys += prepared.gone_keys
    new = _files_present(new, prepared)
    prepared.new_rows = new if new.num_rows else None


def _prune_blocked(prepared: PreparedIngest, table: pa.Table) -> str | None:
    """Deleting rows the source lacks is safe only when the source was read whole."""
    if not prepared.gone_keys:
        return None
    if not table.num_rows:
        return "the source has no readable rows"
    unknown = sum(i.rows for i in prepared.issues if i.key is None)
    if unknown:
        return f"{unknown} source row(s) could not be read and their keys are unknown; fix them first"
    return None


def _changed_rows(rows: pa.Table, recorded: pa.ChunkedArray, prepared: PreparedIngest) -> pa.Array:
    """Per row: its values differ from what was ingested, or one of its files does. The values
    are compared in Arrow; only rows whose values match and that have files are checked one by
    one (a stat each)."""
    now = rows.column(SOURCE_COLUMN).combine_chunks()
    then = recorded.combine_chunks()
    known = pc.is_valid(then)  # NULL: ingested before featurekit recorded hashes: unknown, keep it
    # the stored value hash, without the files' part (also when the spec no longer loads files)
    value_hash = pc.list_element(pc.split_pattern(then, ";", max_splits=1), 0)
    changed = pc.fill_null(pc.and_(known, pc.not_equal(value_hash, now)), False)
    if not prepared.files:
        return changed
    targets = sorted(prepared.files)
    check = np.flatnonzero(known.to_numpy(zero_copy_only=False) & ~changed.to_numpy(zero_copy_only=False))
    if not len(check):
        return changed
    index = pa.array(check, pa.int64())
    stored = then.take(index).to_pylist()
    paths = {t: rows.column(prepared.files[t]).take(index).to_pylist() for t in targets}
    keys = rows.column(prepared.key).take(index).to_pylist()
    out = changed.to_numpy(zero_copy_only=False).copy()
    for j, i in enumerate(check):
        parts = stored[j].split(";")[1:]
        out[i] = any(_file_changed(paths[t][j], part, prepared, keys[j]) for t, part in zip(targets, parts))
    return pa.array(out, pa.bool_())


def _file_changed(rel: str | None, recorded: str, prepared: PreparedIngest, key) -> bool:
    """Whether a row's file differs from the bytes ingested; a file that cannot be read
    now is reported and the row keeps what it has."""
    if rel is None:
        return recorded != "-"
    if recorded == "-":
        return True
    size, mtime, digest = recorded.split(":")
    try:
        info = prepared.root.check(rel)
        if [info.size, info.mtime_ns] == [int(size), int(mtime)] or \
                prepared.verified.get(rel) == [info.size, info.mtime_ns, digest]:
            return False
        data, info = prepared.root.read(rel)
    except FileProblem as exc:
        prepared.issues.append(RowIssue(f"key {key!r}", f"{exc} (the row keeps the file ingested before)", key=key))
        return False
    if content_hash(data) != digest:
        return True
    prepared.verified[rel] = [info.size, info.mtime_ns, digest]  # touched, not changed
    return False


def _gone(table_keys: pa.ChunkedArray, source_keys: pa.ChunkedArray, issues: list[RowIssue]) -> list:
    """Keys the table has and the source no longer does (rows skipped this time, whose key
    is known, are not gone: they are reported as skipped)."""
    missing = pc.invert(pc.is_in(table_keys, value_set=source_keys.combine_chunks().cast(table_keys.type)))
    gone = table_keys.filter(missing).to_pylist()
    skipped = {i.key for i in issues if i.key is not None}
    return [k for k in gone if k not in skipped]


def _files_present(table: pa.Table, prepared: PreparedIngest) -> pa.Table:
    """What the plan can afford: each named file is inside the files root, exists, is a
    regular file, and is not too large. Rows failing it are skipped and named."""
    if not prepared.files or not table.num_rows:
        return table
    keep = np.ones(table.num_rows, dtype=bool)
    keys = table.column(prepared.key).to_pylist()
    for path_col in prepared.files.values():
        for i, rel in enumerate(table.column(path_col).to_pylist()):
            if rel is None or not keep[i]:
                continue
            try:
                prepared.root.check(rel)
            except FileProblem as exc:
                prepared.issues.append(RowIssue(f"key {keys[i]!r}", str(exc), key=keys[i]))
                keep[i] = False
    return table if keep.all() else table.filter(pa.array(keep))


def _load_files(table: pa.Table, files: dict[str, str], root: FileRoot, key: str,
                issues: list[RowIssue]) -> pa.Table:
    """Load every row's files and complete its ``_fk_source`` with their stat and hash."""
    keys = table.column(key).to_pylist()
    hashes = table.column(SOURCE_COLUMN).to_pylist()
    keep = [True] * table.num_rows
    for target, path_col in sorted(files.items()):
        blobs = []
        for i, rel in enumerate(table.column(path_col).to_pylist()):
            if rel is None or not keep[i]:
                blobs.append(None)
                hashes[i] += ";-"
                continue
            try:
                data, info = root.read(rel)
            except FileProblem as exc:
                issues.append(RowIssue(f"key {keys[i]!r}", str(exc), key=keys[i]))
                blobs.append(None)
                keep[i] = False
                continue
            blobs.append(data)
            hashes[i] += f";{info.size}:{info.mtime_ns}:{content_hash(data)}"
        column = pa.array(blobs, pa.large_binary())
        if target in table.column_names:
            table = table.set_column(table.column_names.index(target), target, column)
        else:
            table = table.append_column(target, column)
    table = table.set_column(table.column_names.index(SOURCE_COLUMN), SOURCE_COLUMN, pa.array(hashes, pa.string()))
    return table if all(keep) else table.filter(pa.array(keep))


# -- skipping the read ---------------------------------------------------------------------

def _in_sync(project, dataset, signature: dict, root: FileRoot) -> bool:
    """Whether the source can be trusted unchanged without reading it."""
    stored = _recalled(project, dataset) or source_signature(dataset.schema)
    if stored is None or stored.get("pending"):
        return False
    stored = {k: v for k, v in stored.items() if k in signature}
    if stored != signature:
        return False
    return not project.spec.source.files or _files_unchanged(dataset, project.spec.source.files, root,
                                                              _recalled_verified(project, dataset))


def _files_unchanged(dataset, files: dict[str, str], root: FileRoot, verified: dict) -> bool:
    """Every loaded file still has the size and mtime recorded for its row (a stat each)."""
    if SOURCE_COLUMN not in dataset.schema.names or any(c not in dataset.schema.names for c in files.values()):
        return True  # a table ingested before hashes were recorded: nothing to compare with
    table = dataset.to_table(columns=[SOURCE_COLUMN, *files.values()])
    recorded = table.column(SOURCE_COLUMN).to_pylist()
    for n, path_col in enumerate((col for _, col in sorted(files.items())), start=1):
        for rel, stored in zip(table.column(path_col).to_pylist(), recorded):
            if stored is None or rel is None:
                continue
            part = stored.split(";")[n] if len(stored.split(";")) > n else "-"
            if part == "-":
                return False
            size, mtime, digest = part.split(":")
            try:
                info = root.check(rel)
            except FileProblem:
                return False
            if [info.size, info.mtime_ns] != [int(size), int(mtime)] and \
                    verified.get(rel) != [info.size, info.mtime_ns, digest]:
                return False
    return True


def _sidecar(project) -> Path | None:
    """Beside a local table; one per branch (a branch's version numbers are its own)."""
    from ..table.handle import table_ref
    ref = table_ref(project)
    if ref.remote:
        return None
    table = Path(ref.local_path)  # a file:// URI's plain path
    branch = f"@{ref.branch}" if ref.branch else ""
    return table.parent / f".{table.name}{branch}.featurekit-source"


def _recalled_state(project, dataset) -> dict | None:
    path = _sidecar(project)
    if path is None:
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("version") == dataset.version else None


def _recalled(project, dataset) -> dict | None:
    state = _recalled_state(project, dataset)
    return state.get("signature") if state else None


def _recalled_verified(project, dataset) -> dict:
    state = _recalled_state(project, dataset)
    return (state or {}).get("verified") or {}


def remember_in_sync(project, dataset, prepared: PreparedIngest | None) -> None:
    """The source was read, found in sync, and nothing will be written: keep what was seen
    beside the table (no Lance version), valid for this table version only."""
    path = _sidecar(project)
    if path is None or dataset is None or prepared is None or not prepared.changed or prepared.has_work:
        return
    if prepared.signature.get("pending"):
        return
    state = {"version": dataset.version, "signature": prepared.signature, "verified": prepared.verified}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a cache: failing to write it costs a read next time, nothing else
        try:
            tmp.unlink()
        except OSError:
            pass
