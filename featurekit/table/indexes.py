"""The table's indexes as featurekit keeps them: declared in the spec's `indexes:`, made by apply.

featurekit names its indexes ``fk_<column>_<8 hex>``, the hex a hash of what Lance was asked
to build (type, metric, partitions, sub-vectors). So the name alone says whether an index is
featurekit's, which column it covers and whether it still matches the spec: a changed
definition is a new name (the old index is dropped, the new one built), an index named
for a column the spec no longer declares is an orphan (`apply --prune` drops it). Indexes
someone made by hand (any other name) are never touched.

An index covers the fragments it was built or last optimized on. Rows appended later, and
fragments whose column file a fill or a slice replaced (Lance takes a replaced fragment out of
the index), are unindexed until `optimize_indices` adds them: apply does that at its end.

IVF training needs rows: with fewer than `ROWS_PER_PARTITION` rows per declared partition,
the index is built with fewer partitions (a power of two), and rebuilt with the declared
number once the table has grown enough (the effective definition, so the name, changes).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..spec.models import IndexSpec

PREFIX = "fk_"
ROWS_PER_PARTITION = 32
LANCE_TYPES = {"FTS": "INVERTED"}  # featurekit's name -> Lance's index type


@dataclass(frozen=True)
class StoredIndex:
    """An index of the table: its name, the column, Lance's type and the fragments it covers."""

    name: str
    column: str
    type: str
    fragments: frozenset[int]

    @property
    def ours(self) -> bool:
        return self.name.startswith(PREFIX)


def stored_indexes(ds) -> list[StoredIndex]:
    """Every index on one column of `ds` (none: an empty list)."""
    if ds is None:
        return []
    out = []
    for ix in ds.describe_indices():
        if len(ix.field_names) != 1:
            continue
        fragments = frozenset(f for seg in ix.segments for f in seg.fragment_ids)
        out.append(StoredIndex(ix.name, ix.field_names[0], ix.index_type, fragments))
    return out


def build_params(ix: IndexSpec, rows: int) -> dict:
    """What Lance is asked to build for `ix` on a table of `rows` rows (partitions capped while
    the table is too small to train them)."""
    params: dict = {"type": LANCE_TYPES.get(ix.type, ix.type)}
    if not ix.is_vector:
        return params
    params["metric"] = ix.metric
    if ix.num_partitions is not None:
        params["num_partitions"] = partitions_for(ix.num_partitions, rows)
    if ix.num_sub_vectors is not None:
        params["num_sub_vectors"] = ix.num_sub_vectors
    return params


def partitions_for(declared: int, rows: int) -> int:
    """`declared`, or the largest power of two leaving `ROWS_PER_PARTITION` rows to each."""
    if rows >= declared * ROWS_PER_PARTITION:
        return declared
    most = max(rows // ROWS_PER_PARTITION, 1)
    return min(declared, 1 << (most.bit_length() - 1))


def index_name(column: str, params: dict) -> str:
    digest = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=4).hexdigest()
    return f"{PREFIX}{column}_{digest}"


def unindexed_rows(ds, index: StoredIndex) -> int:
    """Rows in fragments the index does not cover."""
    return sum(f.count_rows() for f in ds.get_fragments() if f.fragment_id not in index.fragments)


def valued_rows(ds, column: str) -> int:
    """Rows with a value in `column` (an index over no value cannot be trained)."""
    return ds.count_rows(filter=f"{quote_column(column)} IS NOT NULL")


def quote_column(column: str) -> str:
    return column if column.isidentifier() else "`" + column.replace("`", "``") + "`"


def create(ds, column: str, name: str, params: dict) -> None:
    """Build the index `name` on `column` with `build_params`' params (a new version)."""
    kind = params["type"]
    if kind in ("IVF_PQ", "IVF_HNSW_SQ"):
        extra = {k: v for k, v in params.items() if k in ("num_partitions", "num_sub_vectors")}
        ds.create_index(column, kind, name=name, metric=params["metric"], replace=True, **extra)
    else:
        ds.create_scalar_index(column, kind, name=name, replace=True)
