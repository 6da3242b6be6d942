"""`indexes:` and vector `near:` against the columns the spec resolved: a column exists, and its
type fits the index (vectors for IVF_*, text for FTS, ...) or the near-duplicate threshold."""
from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ..spec.document import Loc
from ..spec.models import IndexSpec, NearSpec

WHAT = {"IVF_PQ": "a vector column (a fixed-size list of float16/float32/float64)",
        "IVF_HNSW_SQ": "a vector column (a fixed-size list of float16/float32/float64)",
        "BTREE": "a number, string, date, timestamp or boolean column",
        "BITMAP": "an integer, string or boolean column with few distinct values",
        "FTS": "a string column"}


def is_vector(typ: pa.DataType) -> bool:
    """A fixed-size list of floats: what vector indexes and vector near-duplicates take."""
    return pa.types.is_fixed_size_list(typ) and pa.types.is_floating(typ.value_type) and typ.list_size > 0


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def index_fits(kind: str, typ: pa.DataType) -> bool:
    t = pa.types
    if kind in ("IVF_PQ", "IVF_HNSW_SQ"):
        return is_vector(typ)
    if kind == "FTS":
        return _is_text(typ)
    if kind == "BITMAP":
        return t.is_integer(typ) or _is_text(typ) or t.is_boolean(typ)
    return t.is_integer(typ) or t.is_floating(typ) or _is_text(typ) or t.is_boolean(typ) or t.is_date(typ) \
        or t.is_timestamp(typ)


def index_problems(indexes: dict[str, IndexSpec], types: dict[str, pa.DataType | None],
                   unknown_column) -> Iterator[tuple[Loc, str]]:
    """(place, message) for each index on a column that does not exist or cannot take it.
    `types`: column -> type (None: unknown, its producer had errors); `unknown_column(col)`:
    the message for a column nobody makes."""
    for col, ix in indexes.items():
        loc: Loc = ("indexes", col)
        if col not in types:
            yield loc, unknown_column(col)
            continue
        typ = types[col]
        if typ is None:
            continue
        if not index_fits(ix.type, typ):
            yield loc + ("type",), f"a {ix.type} index needs {WHAT[ix.type]}; column {col!r} is {typ}" + \
                (" (vector indexes: IVF_PQ or IVF_HNSW_SQ)" if is_vector(typ) else "")
            continue
        if ix.type == "IVF_PQ" and ix.num_sub_vectors and typ.list_size % ix.num_sub_vectors:
            yield loc + ("num_sub_vectors",), f"num_sub_vectors {ix.num_sub_vectors} must divide the vector's " \
                                              f"dimension {typ.list_size}"


def near_problem(near: NearSpec, typ: pa.DataType) -> str | None:
    """Why `near:` cannot compare this column with its threshold, or None."""
    hash_type = pa.types.is_int64(typ) or pa.types.is_uint64(typ)
    if near.on_vectors:
        if is_vector(typ):
            return None
        hint = "; for a 64-bit hash use max_distance (bits)" if hash_type else ""
        return (f"column {near.column!r} is {typ}; max_cosine_distance compares vectors (a fixed-size list of "
                f"floats, e.g. an embedding){hint}")
    if hash_type:
        return None
    hint = "; for a vector column use max_cosine_distance" if is_vector(typ) else ""
    return (f"column {near.column!r} is {typ}; near duplicates need a 64-bit integer hash "
            f"(uint64 or int64: image.dhash or image.phash give uint64){hint}")
