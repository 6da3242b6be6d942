"""Which rows a slice and split select, as a Lance filter.

One function, so that how slices are stored can change without touching the loader: today
`featurekit apply` materializes a slice S as a string column S holding the row's split
("train", "val", ...; "all" when the slice has no split), NULL outside the slice.
"""
from __future__ import annotations

from ..errors import UsageError
from ..table.metadata import sql_quote


def check_split(spec, path, slice_name: str | None, split: str | None) -> None:
    """A UsageError unless `slice_name` is one of the spec's slices and `split` one of its splits."""
    if slice_name is not None:
        if slice_name not in spec.slices:
            raise UsageError(f"no slice {slice_name!r} in {path} (it has: {', '.join(spec.slices) or 'none'})")
        from ..planning.resolve import split_names
        names = split_names(spec, slice_name)  # its own, its `from:` slice's, or "all"
        if split is not None and split not in names:
            raise UsageError(f"slice {slice_name!r} has no split {split!r} (it has: {', '.join(names)})")
    elif split is not None:
        raise UsageError(f"split {split!r} needs a slice (or a recipe)")


def slice_filter(slice_name: str | None, split: str | None = None) -> str | None:
    """The filter for the rows of `slice_name` (and of its `split`), or None for all rows."""
    if slice_name is None:
        if split is not None:
            raise ValueError(f"split {split!r} needs a slice")
        return None
    column = f"`{slice_name}`"
    return f"{column} IS NOT NULL" if split is None else f"{column} = {sql_quote(split)}"
