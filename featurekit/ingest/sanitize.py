"""Make rows read from a source safe to write: text is UTF-8, types agree, names are ours.

Why: Lance stores what it is given. One string that is not UTF-8 makes its column
unreadable for every reader, for good; a column whose type differs between files, or
from the table, ends an apply in a traceback halfway through. Everything here runs before
a byte is written, and turns each problem into per-row issues (the row is skipped and
reported with its file, line or row, and column) so the rest of the rows go in.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..plugins.source import RowIssue
from ..table.metadata import INPUTS_PREFIX, STATE_PREFIX

MAX_KEYS_SHOWN = 5


def reserved_columns(schema: pa.Schema) -> list[str]:
    """Source columns featurekit would mistake for its own (``_fk_*``)."""
    return [name for name in schema.names if name.startswith((STATE_PREFIX, INPUTS_PREFIX))]


def row_locator(path, lines: list[int] | None = None) -> Callable[[int], str]:
    """Where row `i` of a file's table came from: ``file:line`` when known."""
    if lines is not None:
        return lambda i: f"{path}:{lines[i]}"
    return lambda i: f"{path}: row {i + 1}"


def _keys_of(table: pa.Table, key: str | None, rows: np.ndarray) -> list:
    if key is None or key not in table.column_names or not len(rows):
        return [None] * len(rows)
    return table.column(key).take(pa.array(rows)).to_pylist()


# -- text ------------------------------------------------------------------------------

def _is_texty(t: pa.DataType) -> bool:
    """Whether a type holds strings anywhere inside it."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return True
    if pa.types.is_dictionary(t):
        return _is_texty(t.value_type)
    return any(_is_texty(t.field(i).type) for i in range(t.num_fields)) if t.num_fields else False


def drop_invalid_text(table: pa.Table, locate: Callable[[int], str], key: str | None):
    """Rows whose strings are not valid UTF-8 (anywhere, nested included) are dropped and
    reported; the fast path is Arrow's own full validation, one pass per column."""
    bad: dict[int, str] = {}
    for name in table.column_names:
        column = table.column(name)
        if not _is_texty(column.type):
            continue
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        for i in range(len(array)):
            try:
                array[i].as_py()
            except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
                bad.setdefault(i, f"column {name!r}: {_decode_detail(exc)}")
    if not bad:
        return table, []
    rows = np.array(sorted(bad), dtype=np.int64)
    keys = _keys_of(table, key, rows)
    issues = [RowIssue(locate(int(i)), f"not UTF-8 text: {bad[int(i)]}; fix the file's encoding", key=k)
              for i, k in zip(rows, keys)]
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows] = False
    return table.filter(pa.array(keep)), issues


def _decode_detail(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"byte 0x{exc.object[exc.start]:02x} at position {exc.start} is not UTF-8"
    return str(exc)


# -- types -----------------------------------------------------------------------------

def _kind(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list<" + _kind(t.value_type) + ">"
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    return str(t)


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether values may be converted without changing what they mean: the same kind
    (int32 -> int64, string -> large_string), ints to floats, or nulls to anything.
    Never text to numbers or scalars to lists."""
    s, t = _kind(source), _kind(target)
    if s == "null" or s == t:
        return True
    if s == "int" and t == "float":
        return True
    return s.startswith("list<") and t.startswith("list<") and castable(source.value_type, target.value_type)


def widen(current: pa.DataType, new: pa.DataType) -> pa.DataType | None:
    """The type both fit in (int + float -> float, null + x -> x), or None: a conflict."""
    if not (castable(new, current) or castable(current, new)):
        return None
    try:
        return pa.unify_schemas([pa.schema([pa.field("c", current)]), pa.schema([pa.field("c", new)])],
                                promote_options="permissive").field("c").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return current if castable(new, current) else None


def conform(table: pa.Table, targets: dict[str, tuple[pa.DataType, str]], file: str,
            locate: Callable[[int], str], key: str | None):
    """Cast each column to its target type; rows whose value cannot take it are dropped
    and reported. `targets`: column -> (type, where that type comes from)."""
    issues: list[RowIssue] = []
    keep = np.ones(table.num_rows, dtype=bool)
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name not in targets or column.type.equals(targets[name][0]):
            continue
        target, origin = targets[name]
        converted, failed = _cast_rows(column, target)
        if len(failed):
            keep[failed] = False
            keys = _keys_of(table, key, failed)
            shown = ", ".join(repr(k) if k is not None else locate(int(i)) for i, k in
                              list(zip(failed, keys))[:MAX_KEYS_SHOWN])
            more = f" and {len(failed) - MAX_KEYS_SHOWN} more" if len(failed) > MAX_KEYS_SHOWN else ""
            issues.append(RowIssue(file, f"type conflict: column {name!r} is {column.type} in {file} but "
                                         f"{target} in {origin}; {len(failed)} row(s) skipped ({shown}{more})",
                                   rows=len(failed)))
        columns[name] = converted
    for name, converted in columns.items():
        table = table.set_column(table.column_names.index(name), pa.field(name, converted.type), converted)
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table, issues


def _cast_rows(column: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """The column cast to `target` (nulls where a row cannot be), and those rows."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    present = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if not castable(array.type, target):
        return pa.nulls(len(array), target), np.flatnonzero(present)
    try:
        return pc.cast(array, target, safe=True), np.zeros(0, dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        pass
    values, failed = [], []
    for i in range(len(array)):
        try:
            values.append(pc.cast(array.slice(i, 1), target, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            values.append(pa.nulls(1, target))
            failed.append(i)
    return pa.concat_arrays(values), np.array(failed, dtype=np.int64)
