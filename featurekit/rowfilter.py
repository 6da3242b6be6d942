"""Which rows a slice and split select, as a Lance filter.

One function, so that how slices are stored can change without touching the loader: today
`featurekit apply` materializes a slice S as a string column S holding the row's split
("train", "val", ...; "all" when the slice has no split), NULL outside the slice.
"""
from __future__ import annotations

from .table import sql_quote


def slice_filter(slice_name: str | None, split: str | None = None) -> str | None:
    """The filter for the rows of `slice_name` (and of its `split`), or None for all rows."""
    if slice_name is None:
        if split is not None:
            raise ValueError(f"split {split!r} needs a slice")
        return None
    column = f"`{slice_name}`"
    return f"{column} IS NOT NULL" if split is None else f"{column} = {sql_quote(split)}"
