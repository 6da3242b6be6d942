"""How many distinct inputs a feature's rows to compute have: what `plan` shows beside the rows.

Why: with content-addressed compute (engine/reuse.py) the extractor runs once per distinct
input, so "406 rows, 40 distinct inputs" is the real cost of a step. Counting must stay
cheap, so image bytes are never read here: a binary column loaded from files is keyed by
the content hash ingest recorded in ``_fk_source`` (rows in the table) or by its path (rows
still in the source). Rows in the table and rows still to ingest are counted apart, so the
figure is exact for each and at most the sum when both have work. Returns None when it
cannot be known cheaply: an input is another feature computed in the same apply, or a
column of bytes or lists not loaded from files (image structs, hidden states).
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .inputkeys import distinct_count

SOURCE_COLUMN = "_fk_source"


def distinct_inputs(project, f, dataset, filters: list[str], incoming: pa.Table | None,
                    changing: set[str]) -> int | None:
    """Distinct input tuples among the feature's rows matching `filters` and `incoming` rows."""
    files = dict(project.spec.source.files) if project.spec.source is not None else {}
    if getattr(f.extractor_cls, "reuse_values", None) is False:
        return None
    for col in f.inputs.values():
        origin = project.columns[col].origin.split(":", 1)[-1] if col in project.columns else ""
        if origin in project.features and origin in changing:
            return None  # its values are computed in this apply
        typ = project.columns[col].type if col in project.columns else None
        if col not in files and typ is not None and _bulky(typ):
            return None  # bytes (or tensors) not loaded from files: counting would read them all
    total = 0
    if dataset is not None:
        keys = _table_keys(f, dataset, filters, files)
        if keys is None:
            return None
        total += keys
    if incoming is not None and incoming.num_rows:
        cols = {name: files.get(col, col) for name, col in f.inputs.items()}  # a file column: its path
        if any(c not in incoming.column_names for c in cols.values()):
            return None
        batch = pa.table({name: incoming.column(c) for name, c in cols.items()})
        total += distinct_count(batch)
    return total


def _bulky(typ: pa.DataType) -> bool:
    """Types whose values may be large: bytes (raw, or in a Hugging Face struct<bytes, path>)
    and vectors (embeddings, hidden states)."""
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_binary_view(typ):
        return True
    if pa.types.is_struct(typ):
        return any(_bulky(typ.field(i).type) for i in range(typ.num_fields))
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ) \
            or pa.types.is_list_view(typ):  # vectors of numbers, or lists of bulky items; not lists of words
        item = typ.value_type
        return pa.types.is_floating(item) or pa.types.is_integer(item) or _bulky(item)
    return False


def _table_keys(f, dataset, filters: list[str], files: dict[str, str]) -> int | None:
    names = dataset.schema.names
    needed = [c for c in f.inputs.values() if c not in files]
    if any(c not in names for c in needed) or (files and SOURCE_COLUMN not in names and
                                               any(c in files for c in f.inputs.values())):
        return None
    cols = list(dict.fromkeys(needed + ([SOURCE_COLUMN] if any(c in files for c in f.inputs.values()) else [])))
    where = " AND ".join(x for x in filters if x) or None
    try:
        table = dataset.to_table(columns=cols, filter=where)
    except (ValueError, OSError):
        return None
    if not table.num_rows:
        return 0
    order = sorted(files)
    logical = {}
    for name, col in f.inputs.items():
        if col in files:  # the content hash ingest recorded: ";size:mtime:digest" per file column
            n = order.index(col) + 1
            parts = pc.split_pattern(table.column(SOURCE_COLUMN), ";")
            part = pc.list_element(_padded(parts, n + 1), n)
            logical[name] = pc.replace_substring_regex(part, r"^.*:", "")  # the digest, not size or mtime
        else:
            logical[name] = table.column(col)
    return distinct_count(pa.table(logical))


def _padded(parts, size: int):
    """Lists shorter than `size` (rows ingested before a file column existed) padded with nulls."""
    short = pc.less(pc.list_value_length(parts), size)
    if not pc.any(short).as_py():
        return parts
    return pc.if_else(short, pa.scalar([None] * size, parts.type), parts)
