"""Nearest rows on a vector column, by cosine distance, through Lance.

A vector index is used only when the query's metric is the index's (Lance otherwise scans
and logs "falling back to brute-force search"), so an index is queried in its own metric
with `NPROBES` partitions and `REFINE_FACTOR` x k candidates re-ranked on their full vectors;
whether Lance's plan goes through it is read from the plan, not assumed. The distances of
the rows found are then computed exactly (cosine) from their stored vectors and re-sorted.
Without an index (or `use_index=False`) Lance's flat scan is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import RunError

REFINE_FACTOR = 10  # an index search re-ranks k x this many candidates on their full vectors (4: recall 0.63)
NPROBES = 20       # IVF partitions an index search visits at least (LanceDB's default)


@dataclass(frozen=True)
class SearchHit:
    key: Any
    distance: float            # cosine distance to the query: 1 - cos
    values: dict[str, Any]     # the shown columns (never image bytes)


def is_vector(typ: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(typ) and pa.types.is_floating(typ.value_type)


def vector_index(ds, column: str) -> tuple[str, str, str] | None:
    """(name, type, metric) of the vector index on `column`, or None."""
    for desc in ds.describe_indices():  # (index_stats would load the centroids: a quarter second on 1M rows)
        if list(desc.field_names) == [column] and "Vector" in desc.type_url:
            details = getattr(desc, "details", None) or {}
            return desc.name, str(desc.index_type), str(details.get("metric_type", "l2")).lower()
    return None


def nearest(ds, column: str, query, k: int, where: str | None, columns: list[str], index,
            nprobes: int = NPROBES) -> tuple[pa.Table, bool]:
    """The k nearest rows, and whether Lance's plan goes through the index."""
    nearest = {"column": column, "q": query, "k": k, "use_index": index is not None,
               "metric": index[2] if index else "cosine"}
    if index:  # the index's own metric, or Lance would scan; candidates re-ranked on full vectors
        nearest.update(refine_factor=REFINE_FACTOR, nprobes=nprobes)
    try:
        scanner = ds.scanner(columns=list(dict.fromkeys([*columns, column])), nearest=nearest, filter=where,
                             prefilter=True, disable_scoring_autoprojection=True)
        used = index is not None and "ANNSubIndex" in scanner.explain_plan()  # what Lance will do, not hope
        return scanner.to_table(), used
    except (ValueError, OSError) as exc:
        raise RunError(f"search on {column}: Lance refused the query: {exc}") from None


def distances(table: pa.Table, column: str, query) -> list[float]:
    import numpy as np
    vectors = np.asarray(table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False),
                         dtype=np.float64).reshape(table.num_rows, -1)
    q = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(q)
    with np.errstate(invalid="ignore", divide="ignore"):  # rounding may put a copy a hair below 0
        return list(np.clip(1.0 - vectors @ q / norms, 0.0, 2.0))


def ranked(table: pa.Table, column: str, query, key: str | None, shown: list[str]):
    """The hits nearest first, and the order of `table`'s rows they are in."""
    found = distances(table, column, query)
    rows = table.select(list(dict.fromkeys([c for c in [key, *shown] if c]))).to_pylist()
    order = sorted(range(len(rows)), key=lambda i: found[i])  # stable: Lance's order among ties
    return tuple(SearchHit(rows[i].get(key) if key else None, float(found[i]),
                           {c: rows[i][c] for c in shown}) for i in order), order
