"""Run a slice step: read what curation compares, decide membership, write it, commit once.

A slice is stored as two columns: ``<slice>`` (the row's split, NULL outside the slice)
and the state column ``_fk_<slice>``, per row one of

    <fp>                                   kept: a member of the slice
    <fp>!from | <fp>!where                 removed by that step
    <fp>!duplicate:<split>:<keeper key>    removed as a duplicate of the row with that key (as text)
    <fp>!near_duplicate:<split>:<keeper key>
    <fp>!blocked:<why>                     an upstream value is missing: examined again next apply
    NULL                                   never examined

(`<split>` of a removed row is its split group's: a later row sharing its ``split.by``
value must land there too.) Only rows never examined, blocked,
or whose keeper is gone are examined; the rest stay as they are. Plain readers select a
split with ``WHERE <slice> = 'train'``. Any engine can run this: slices are cheap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..planning.resolve import Project, Slice
from ..spec.sql import all_of, any_of
from ..table.datafiles import file_version, fragment_ids, replacement, row_offsets, write_fragment_columns
from ..table.handle import Table
from ..table.metadata import FAILED_SEP, slice_fields, slice_todo_filter, sql_quote
from .examine import (
    BLOCKED,
    DUPLICATE,
    FROM,
    NEAR_DUPLICATE,
    WHERE,
    Examined,
    Rows,
    Rules,
    encode,
    examine,
    near_searcher,
)

ADDR = "_rowaddr"


@dataclass
class SliceRun:
    name: str
    examined: int = 0
    added: dict[str, int] = field(default_factory=dict)     # new members per split
    removed: dict[str, int] = field(default_factory=dict)   # rows examined and left out, per step
    blocked: int = 0
    leaks: list[dict] = field(default_factory=list)
    previous: dict | None = None   # a full recompute: how membership changed against the previous one
    full: bool = False
    seconds: float = 0.0
    versions: list[int] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict:
        out = {"examined": self.examined, "added": self.added, "removed": self.removed,
               "blocked": self.blocked, "leaks": self.leaks, "full": self.full}
        if self.previous is not None:
            out["previous"] = self.previous
        return out


def run_slice(project: Project, sl: Slice, full: bool, table: Table) -> SliceRun:
    """Examine the slice's rows that need it and commit their membership (one version)."""
    started = time.perf_counter()
    run = SliceRun(sl.name, full=full)
    _prepare_columns(table, sl)
    ds = table.dataset
    reader = _Reader(project, sl, ds, full)
    todo = reader.todo()
    again = None
    if not full and _has_deletions(ds):  # a keeper may be gone: its removed rows are examined again
        todo, again = _dangling(todo, reader.every_examined(), sl)
        reader.again = again
    old = reader.examined(todo)
    if old is not None and again is not None and len(again):  # examined again: new rows, not old ones
        old = old.filter(pc.invert(pc.is_in(old.column(ADDR), value_set=again)))
    if todo.num_rows:
        values, states = _decide(reader, todo, old, run)
        if full and sl.column in todo.column_names:
            run.previous = _against(todo.column(sl.column).to_pylist(), list(values), list(states))
        if full or not _unchanged(reader, todo.column(ADDR), values, states):
            run.versions.append(_write(table, sl, todo.column(ADDR), values, states, full))
    run.examined = todo.num_rows
    run.seconds = time.perf_counter() - started
    return run


def _unchanged(reader: _Reader, addrs: pa.ChunkedArray, values, states) -> bool:
    """Rows examined again (blocked ones) that come out exactly as stored: writing them would
    make a version (and an apply-log entry) identical to the last, every apply."""
    current = reader.ds.to_table(columns=[reader.sl.column, reader.sl.state_column], filter=reader.todo_filter(),
                                 with_row_address=True)
    if current.num_rows != len(addrs):
        return False
    stored = dict(zip(current.column(ADDR).to_pylist(),
                      zip(current.column(reader.sl.column).to_pylist(), current.column(reader.sl.state_column).to_pylist())))
    return all(stored.get(a) == (v, s) for a, v, s in zip(addrs.to_pylist(), list(values), list(states)))


def _against(before: list, values: list, states: list) -> dict | None:
    """How a recomputed membership differs from the one it replaces."""
    if all(v is None for v in before):
        return None
    left: dict[str, int] = {}
    stayed = joined = moved = 0
    for old, new, state in zip(before, values, states):
        if old is not None and new is not None:
            stayed += 1
            moved += old != new
        elif new is not None:
            joined += 1
        elif old is not None:
            step = state.split(FAILED_SEP, 1)[1].split(":", 1)[0]
            left[step] = left.get(step, 0) + 1
    return {"stayed": stayed, "joined": joined, "left": left, "moved": moved}


def _prepare_columns(table: Table, sl: Slice) -> None:
    """Add the slice's columns as nulls (metadata only) when they are missing (an apply has
    added them already; a slice run on its own has not)."""
    missing = [f for f in slice_fields(sl) if f.name not in table.schema.names]
    if missing:
        table.add_columns(missing)


class _Reader:
    """Reads what the slice compares, for the rows to examine and the rows examined before."""

    def __init__(self, project: Project, sl: Slice, ds, full: bool):
        self.project, self.sl, self.ds, self.full = project, sl, ds, full
        spec = sl.spec
        self.by = list(spec.dedupe.by) if spec.dedupe else []
        self.near = spec.dedupe.near.column if spec.dedupe and spec.dedupe.near else None
        self.on_vectors = bool(self.near) and spec.dedupe.near.on_vectors
        self.split_by = (spec.split.by or sl.key) if spec.split else None
        self.fp = sl.fingerprint
        self.key = sl.key if sl.key in ds.schema.names else None
        self.upstream = {project.features[f].state_column: project.features[f].fingerprint for f in sl.depends_on}
        self.parent = project.slices[sl.parent] if sl.parent else None
        self.again: pa.Array | None = None  # row addresses of removed rows whose keeper is gone

    def compared(self) -> list[str]:
        cols = [c for c in [self.key, *self.by, self.near, self.split_by] if c]
        if self.parent is not None:
            cols += [self.parent.column, self.parent.state_column]
        return list(dict.fromkeys(cols))

    def todo(self) -> pa.Table:
        cols = list(dict.fromkeys(self.compared() + list(self.upstream)))
        if self.full:
            cols.append(self.sl.column)  # to say how the new membership differs from the old
        where = None if self.full else self.todo_filter()
        return self.ds.to_table(columns=cols, filter=where, with_row_address=True)

    def todo_filter(self) -> str:
        """Rows to examine: never examined, examined by another definition, blocked; and for a
        `from:` slice, rows its parent left out before and keeps now (a keeper was deleted)."""
        where = slice_todo_filter(self.sl.state_column, self.fp)
        if self.parent is not None:
            again = sql_quote(self.fp + FAILED_SEP + "from")
            where = f"({where}) OR ({self.sl.state_column} = {again} AND {self.parent.column} IS NOT NULL)"
        return where

    def examined_filter(self) -> str:
        """Rows examined with this definition that passed `where`: members and removed duplicates."""
        return f"{self.sl.state_column} = {sql_quote(self.fp)} OR {self.removed_filter()}"

    def removed_filter(self) -> str:
        """Rows removed as (near) duplicates with this definition."""
        state, fp = self.sl.state_column, self.fp
        return " OR ".join(f"starts_with({state}, {sql_quote(fp + FAILED_SEP + step)})"
                           for step in ("duplicate:", "near_duplicate:"))

    def full_columns(self) -> list[str]:
        return list(dict.fromkeys(self.compared() + list(self.upstream) + [self.sl.column, self.sl.state_column]))

    def examined(self, todo: pa.Table) -> pa.Table | None:
        """The examined rows that can meet a row to examine: near its hash, equal on `by`, or
        sharing its split value; plus the keepers those name. Reading only what compares
        first keeps an append of 1% from costing a pass over the table's strings."""
        if self.full:
            return None
        probe = [c for c in [self.near, *([] if self.near else self.by), self.split_by] if c]
        base = self.ds.to_table(columns=probe, filter=self.examined_filter(), with_row_address=True)
        if not base.num_rows or not todo.num_rows:
            return self._rows_at(pa.array([], pa.uint64()))
        hit = np.zeros(base.num_rows, bool)
        if self.near:  # rows without a hash yet (blocked) probe nothing and are found by nothing
            probe_h, _ = _near_values(todo.column(self.near), self.on_vectors)
            base_h, where = _near_values(base.column(self.near), self.on_vectors)
            _, j = near_searcher(_rules(self))(probe_h, base_h)
            hit[where[j]] = True
        elif self.by:
            same = np.ones(base.num_rows, bool)
            for col in self.by:
                same &= _isin(base.column(col), todo.column(col))
            hit |= same
        if self.split_by:
            hit |= _isin(base.column(self.split_by), todo.column(self.split_by))
        rows = self._rows_at(base.column(ADDR).filter(pa.array(hit)))
        return self._with_keepers(rows)

    def _rows_at(self, addrs) -> pa.Table:
        """Full rows at these row addresses (in chunks: the filter is a literal list)."""
        addrs = addrs.combine_chunks() if isinstance(addrs, pa.ChunkedArray) else addrs
        parts = [self.ds.to_table(columns=self.full_columns(), with_row_address=True,
                                  filter=f"_rowaddr IN ({', '.join(map(str, addrs[k:k + 5000].to_pylist()))})")
                 for k in range(0, len(addrs), 5000)]
        if not parts:
            return self.ds.to_table(columns=self.full_columns(), with_row_address=True, limit=0)
        return pa.concat_tables(parts)

    def _with_keepers(self, rows: pa.Table) -> pa.Table:
        """Add the members that removed rows name as their keepers, when not there already."""
        if self.key is None or not rows.num_rows:
            return rows.sort_by(ADDR)
        named = _keeper_keys(rows.column(self.sl.state_column)).drop_null().unique()
        present = rows.column(self.key).cast(pa.string())
        missing = pc.filter(named, pc.invert(pc.is_in(named, value_set=present)))
        extra = []
        typ = self.ds.schema.field(self.key).type
        for k in range(0, len(missing), 5000):
            keys = missing[k:k + 5000].cast(typ).to_pylist()
            literal = ", ".join(sql_quote(v) if isinstance(v, str) else str(v) for v in keys)
            extra.append(self.ds.to_table(columns=self.full_columns(), with_row_address=True,
                                          filter=f"{self.key} IN ({literal}) AND {self.sl.column} IS NOT NULL"))
        return pa.concat_tables([rows, *extra]).sort_by(ADDR)

    def every_examined(self) -> pa.Table:
        return self.ds.to_table(columns=self.full_columns(), filter=self.examined_filter(), with_row_address=True)

    def passing(self, todo: pa.Table) -> np.ndarray:
        """Which rows to examine pass `where` (evaluated by Lance, never as Python)."""
        where = self.sl.spec.where
        if not where or not todo.num_rows:
            return np.ones(todo.num_rows, bool)
        scope = None if self.full else self.todo_filter()
        if scope and self.again is not None and len(self.again):  # removed rows examined again too
            scope = any_of(scope, self.removed_filter())
        expr = all_of(scope, where)  # parsed and combined as trees: `where` cannot reach into the scope
        passed = self.ds.to_table(columns=[], filter=expr, with_row_address=True).column(ADDR)
        return np.asarray(pc.is_in(todo.column(ADDR), value_set=passed).to_numpy(zero_copy_only=False), bool)


def _has_deletions(ds) -> bool:
    return any(f.count_rows() != f.physical_rows for f in ds.get_fragments())


def _isin(values, wanted) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.is_in(values, value_set=pc.unique(wanted.combine_chunks()
                                                                        if isinstance(wanted, pa.ChunkedArray)
                                                                        else wanted)), False)
                      .to_numpy(zero_copy_only=False), bool)


def _dangling(todo: pa.Table, old: pa.Table | None, sl: Slice):
    """Removed rows whose keeper is gone (deleted) are examined again: (the rows to examine
    with them, their row addresses or None)."""
    if old is None or not old.num_rows or sl.key is None:
        return todo, None
    member = pc.is_valid(old.column(sl.column))
    keepers = _keeper_keys(old.column(sl.state_column))
    member_keys = old.column(sl.key).cast(pa.string()).filter(member)
    gone = pc.and_(pc.invert(member), pc.invert(pc.fill_null(pc.is_in(keepers, value_set=member_keys), False)))
    if not pc.any(gone).as_py():
        return todo, None
    again = old.filter(gone).select(todo.column_names)
    todo = pa.concat_tables([todo, again.cast(todo.schema)]).sort_by(ADDR)
    return todo, again.column(ADDR).combine_chunks()


REMOVED_RE = r"^[^!]*!(?:near_)?duplicate:(?P<split>[^:]*):(?P<key>.*)$"


def _removed_parts(states) -> pa.StructArray:
    """(split, keeper key) from the states of removed duplicates; nulls for other rows."""
    arr = states.combine_chunks() if isinstance(states, pa.ChunkedArray) else states
    return pc.extract_regex(arr, REMOVED_RE)


def _keeper_keys(states) -> pa.Array:
    """The keeper keys (as text) named by states; null for members."""
    return pc.struct_field(_removed_parts(states), "key")


def _decide(reader: _Reader, todo: pa.Table, old: pa.Table | None, run: SliceRun):
    """Values and states (Arrow string arrays) for the rows to examine."""
    fp = reader.fp
    n = todo.num_rows
    blocked = _blocked(reader, todo)
    outside = _outside_parent(reader, todo)
    if outside is None:
        outside = np.zeros(n, bool)
    failing = ~reader.passing(todo)
    is_blocked = blocked != None  # noqa: E711 (elementwise on an object array)
    outside &= ~is_blocked
    failing &= ~is_blocked & ~outside
    candidates = ~(is_blocked | outside | failing)
    states = np.full(n, None, dtype=object)
    states[is_blocked] = [f"{fp}{FAILED_SEP}{BLOCKED}:{why}" for why in blocked[is_blocked]]
    states[outside] = f"{fp}{FAILED_SEP}{FROM}"
    states[failing] = f"{fp}{FAILED_SEP}{WHERE}"
    values = np.full(n, None, dtype=object)
    run.blocked = int(is_blocked.sum())
    run.removed = {k: int(v) for k, v in ((FROM, outside.sum()), (WHERE, failing.sum())) if v}
    idx = np.flatnonzero(candidates)
    if len(idx):
        rules = _rules(reader)
        new_rows, old_rows = _rows(reader, todo.take(pa.array(idx)), old, rules)
        out = examine(new_rows, old_rows, rules)
        run.leaks = out.leaks
        step = np.where(out.near, NEAR_DUPLICATE, DUPLICATE).astype(object)
        tail = pc.binary_join_element_wise(pa.array(step, pa.string()), pa.array(out.split, pa.string()),
                                           out.keeper, ":")
        removed = pc.binary_join_element_wise(pa.scalar(fp + FAILED_SEP), tail, "").to_numpy(zero_copy_only=False)
        states[idx] = np.where(out.kept, fp, removed)
        values[idx] = np.where(out.kept, out.split, None)
        for name, count in zip(*np.unique(step[~out.kept], return_counts=True)):
            run.removed[str(name)] = int(count)
        for name, count in zip(*np.unique(out.split[out.kept].astype(str), return_counts=True)):
            run.added[str(name)] = int(count)
    return values, states


def _rules(reader: _Reader) -> Rules:
    spec = reader.sl.spec
    split = spec.split
    return Rules(by=tuple(reader.by), near_distance=spec.dedupe.near.max_distance if reader.near else None,
                 near_cosine=spec.dedupe.near.max_cosine_distance if reader.near else None,
                 split_seed=split.seed if split else None, fractions=dict(split.fractions) if split else None,
                 default_split=reader.sl.splits[0])


def _blocked(reader: _Reader, todo: pa.Table) -> np.ndarray:
    """Per row, why it cannot be examined yet (an upstream value is missing), or None."""
    out = np.full(todo.num_rows, None, dtype=object)
    for col, fp in reader.upstream.items():
        ok = np.asarray(pc.fill_null(pc.equal(todo.column(col), fp), False).to_numpy(zero_copy_only=False), bool)
        out[~ok & (out == None)] = f"upstream feature {col[len('_fk_'):]!r} has no value for this row"  # noqa: E711
    parent = reader.parent
    if parent is not None:
        st = todo.column(parent.state_column)
        done = pc.fill_null(pc.and_(pc.starts_with(st, parent.fingerprint),
                                    pc.invert(pc.starts_with(st, parent.fingerprint + FAILED_SEP + BLOCKED))), False)
        done = np.asarray(done.to_numpy(zero_copy_only=False), bool)
        out[~done & (out == None)] = f"slice {parent.name!r} has not examined this row yet"  # noqa: E711
    return out


def _outside_parent(reader: _Reader, todo: pa.Table) -> np.ndarray | None:
    if reader.parent is None:
        return None
    return np.asarray(pc.is_null(todo.column(reader.parent.column)).to_numpy(zero_copy_only=False), bool)


def _rows(reader: _Reader, new: pa.Table, old: pa.Table | None, rules: Rules) -> tuple[Rows, Examined]:
    """Both sides as `curation` wants them; codes are computed over both at once so they agree."""
    n_new = new.num_rows
    cols = reader.compared() + [ADDR]
    new = new.select(cols)
    both = new if old is None or not old.num_rows else pa.concat_tables([old.select(cols).cast(new.schema), new])
    n_old = both.num_rows - n_new
    keys = both.column(reader.key) if reader.key else both.column(ADDR)
    keys = keys.combine_chunks().cast(pa.string())  # keeper references are the key as text

    def part(arr, lo, hi):
        return None if arr is None else arr[lo:hi]

    exact = encode([both.column(c) for c in reader.by]) if reader.by else None
    hashes = _hashes(both.column(reader.near)) if reader.near and not reader.on_vectors else None
    vectors = vector_rows(both.column(reader.near)) if reader.on_vectors else None  # NULL: zeros, near nothing
    hash_valid = None
    if reader.near and not reader.on_vectors and both.column(reader.near).null_count:
        hash_valid = np.asarray(pc.is_valid(both.column(reader.near)).to_numpy(zero_copy_only=False), bool)
    split_codes = split_values = None
    if reader.split_by:
        split_col = both.column(reader.split_by)
        split_codes = encode([split_col])
        split_values = split_col.slice(n_old).to_pylist()
    parent_split = None
    if reader.parent is not None:
        parent_split = both.column(reader.parent.column).slice(n_old).to_pylist()
    new_rows = Rows(keys.slice(n_old), part(exact, n_old, None), part(hashes, n_old, None),
                    part(split_codes, n_old, None), split_values, parent_split,
                    hash_valid=part(hash_valid, n_old, None), vectors=part(vectors, n_old, None))
    if not n_old:
        return new_rows, Examined(keys.slice(0, 0))
    removed = _removed_parts(old.column(reader.sl.state_column))
    value = old.column(reader.sl.column).combine_chunks()
    member = pc.is_valid(value)
    old_keys = keys.slice(0, n_old)
    keeper = pc.if_else(member, old_keys, pc.struct_field(removed, "key"))
    split = pc.if_else(member, value, pc.struct_field(removed, "split"))
    old_rows = Examined(old_keys, part(exact, 0, n_old), part(hashes, 0, n_old), part(split_codes, 0, n_old),
                        hash_valid=part(hash_valid, 0, n_old), vectors=part(vectors, 0, n_old), split=np.asarray(split.to_numpy(zero_copy_only=False), dtype=object), keeper=keeper,
                        member=np.asarray(member.to_numpy(zero_copy_only=False), bool))
    return new_rows, old_rows


def _hashes(col) -> np.ndarray:
    """64-bit hashes as uint64, exactly (never through float64: to_numpy of an integer array
    with a null gives float64, which keeps 53 bits). A NULL becomes 0; callers examine only
    rows whose hash exists."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = arr.cast(pa.uint64(), safe=False)
    if arr.null_count:
        arr = arr.fill_null(0)
    return arr.to_numpy(zero_copy_only=False).astype(np.uint64)


def _near_values(col, on_vectors: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the hashes or vectors of rows that have one, their positions in `col`)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    where = np.flatnonzero(np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool))
    taken = arr.take(pa.array(where, pa.int64()))
    return (vector_rows(taken) if on_vectors else _hashes(taken)), where


def vector_rows(col) -> np.ndarray:
    """A fixed-size-list column as a (rows, dim) array of its stored float type; a NULL row is zeros
    (and so near nothing, as a zero vector is)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    dim = arr.type.list_size
    values = arr.values.slice(arr.offset * dim, len(arr) * dim)
    out = values.to_numpy(zero_copy_only=False).reshape(len(arr), dim)
    if arr.null_count:
        out = out.copy()
        out[~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)] = 0
    return out


def _write(table: Table, sl: Slice, addrs: pa.ChunkedArray, values: list, states: list, full: bool) -> int:
    """One new column file per fragment touched, committed together; returns the version."""
    ds = table.dataset
    addrs = addrs.combine_chunks()
    frag_of = fragment_ids(addrs).to_numpy()
    offsets = row_offsets(addrs).to_numpy()
    values_arr = np.asarray(values, dtype=object)
    states_arr = np.asarray(states, dtype=object)
    schema = pa.schema([pa.field(sl.column, pa.string()), pa.field(sl.state_column, pa.string())])
    files = []
    for frag_id in np.unique(frag_of):
        mask = frag_of == frag_id
        fragment = ds.get_fragment(int(frag_id))
        physical = fragment.physical_rows
        col_v = np.full(physical, None, dtype=object)
        col_s = np.full(physical, None, dtype=object)
        if not full and mask.sum() < fragment.count_rows():
            current = fragment.to_table(columns=[sl.column, sl.state_column], with_row_address=True)
            at = row_offsets(current.column(ADDR).combine_chunks()).to_numpy()
            col_v[at] = np.array(current.column(sl.column).to_pylist(), dtype=object)
            col_s[at] = np.array(current.column(sl.state_column).to_pylist(), dtype=object)
        col_v[offsets[mask]] = values_arr[mask]
        col_s[offsets[mask]] = states_arr[mask]
        columns = pa.table([pa.array(col_v, pa.string()), pa.array(col_s, pa.string())], schema=schema)
        files.append(write_fragment_columns(ds, int(frag_id), columns))
    return table.commit(replacement(files, file_version(ds)), ds.version, what=f"slice {sl.name!r}")
