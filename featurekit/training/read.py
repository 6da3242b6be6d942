"""`featurekit.read`: columns of a spec's table, selected like training selects them, as
Arrow, numpy or torch, with fixed-size lists shaped from their metadata (the hiddens as
[rows, 400, hidden]).

Rows outside an `only:` slice, or whose feature failed, are NULL in the table; numpy and
torch have no NULL for a fixed-size row, so by default such rows are left out (and counted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..curation.rowfilter import check_split, slice_filter
from ..errors import NotReady, UsageError


@dataclass
class ReadResult:
    """`data`: a pa.Table, or a dict column -> numpy array / torch tensor / list; `skipped`:
    rows left out because a column was NULL; `version`: the table version read."""

    data: Any
    skipped: int
    version: int

    def __getitem__(self, column: str):
        return self.data[column] if not isinstance(self.data, pa.Table) else self.data.column(column)


def read(spec: str | Path | Any, columns: list[str], *, where: str | None = None, slice: str | None = None,  # noqa: A002
         split: str | None = None, format: Literal["arrow", "numpy", "torch", "hf"] = "numpy",  # noqa: A002
         skip_null: bool = True, version: int | str | None = None, registry=None,
         branch: str | None = None, images: list[str] | None = None) -> ReadResult:
    """Read `columns` of the spec's table (its `branch`, at `version`: a number or a tag): rows
    matching `where` (Lance SQL) and the slice/split. `format="hf"` gives a `datasets.Dataset`
    (NULLs kept; `images`: columns shown as `datasets.Image()`, default the binary columns
    holding images)."""
    from ..planning.project import project_of
    from ..table.handle import require_dataset, table_ref
    from ..table.readers import pin_version
    columns = check_read_args(columns, format)
    project = project_of(spec, registry, branch)
    ds = require_dataset(table_ref(project), version)
    pin = pin_version(table_ref(project), ds.version, "featurekit.read")  # compact keeps what is read
    try:
        result = _read(project, ds, columns, where, slice, split, "arrow" if format == "hf" else format, skip_null)
    finally:
        if pin is not None:
            pin.close()
    if format == "hf":
        import hashlib
        import json

        from .hfdataset import to_dataset
        what = json.dumps([project.table_uri, branch, result.version, columns, where, slice, split, images])
        fingerprint = hashlib.blake2b(what.encode(), digest_size=8).hexdigest()  # the data read, named
        return ReadResult(to_dataset(result.data, images, fingerprint), result.skipped, result.version)
    return result


FORMATS = ("arrow", "numpy", "torch", "hf")


def check_read_args(columns, format: str) -> list[str]:  # noqa: A002
    """The columns as a list; no columns, a column that is not a name, or an unknown format
    is a usage error (exit 2), found before the table is opened."""
    if isinstance(columns, str):
        columns = [columns]
    if not isinstance(columns, (list, tuple)) or not columns:
        raise UsageError("read: name the columns to read, e.g. columns=['id', 'emb'] (got "
                         f"{columns!r})")
    bad = [c for c in columns if not isinstance(c, str) or not c]
    if bad:
        raise UsageError(f"read: columns must be column names, not {bad[0]!r}")
    if format not in FORMATS:
        raise UsageError(f"read: format {format!r} is not one of {', '.join(map(repr, FORMATS))}")
    return list(columns)


def _read(project, ds, columns, where, slice, split, format, skip_null) -> ReadResult:  # noqa: A002
    check_split(project.spec, project.path, slice, split)
    if slice is not None and slice not in ds.schema.names:
        raise NotReady(f"slice {slice!r} is not in the table yet; run 'featurekit apply'")
    missing = [c for c in columns if c not in ds.schema.names]
    if missing:
        raise UsageError(f"no column {', '.join(map(repr, missing))} in {project.table_uri}")
    filters = [f for f in (where, slice_filter(slice, split)) if f]
    table = ds.to_table(columns=list(columns), filter=" AND ".join(f"({f})" for f in filters) or None)
    skipped = 0
    if skip_null and format != "arrow" and table.num_rows:
        valid = pc.and_kleene(*[pc.is_valid(table.column(c)) for c in columns]) if len(columns) > 1 \
            else pc.is_valid(table.column(columns[0]))
        kept = table.filter(valid)
        skipped, table = table.num_rows - kept.num_rows, kept
    if format == "arrow":
        return ReadResult(table, skipped, ds.version)
    out = {c: to_numpy(table.column(c), shape_of(ds.schema.field(c))) for c in columns}
    if format == "torch":
        import torch
        # numpy views of Arrow buffers are read-only: torch gets writable copies of those
        out = {c: torch.from_numpy(v if v.flags.writeable else v.copy()) if hasattr(v, "dtype") and v.dtype != object
               else v for c, v in out.items()}
    return ReadResult(out, skipped, ds.version)


def shape_of(field: pa.Field) -> tuple[int, ...] | None:
    import numpy as np

    from ..table.metadata import stored_json
    shape = stored_json((field.metadata or {}).get(b"featurekit.output.shape"), list)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        return None  # missing, or edited into something featurekit never writes: the column's own size
    size = getattr(field.type, "list_size", None)
    return tuple(shape) if size is None or int(np.prod(shape)) == size else None


def to_numpy(col: pa.ChunkedArray, shape: tuple[int, ...] | None):
    """Fixed-size lists as one [rows, *shape] array (no per-row Python); numbers as arrays;
    anything else (strings, bytes, lists) as a list."""
    import numpy as np
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        size, inner = t.list_size, arr.values
        if arr.offset:
            inner = inner.slice(arr.offset * size, len(arr) * size)
        values = inner.to_numpy(zero_copy_only=False)
        if arr.null_count:  # only with skip_null=False: NULL rows become NaN (or 0 for integers)
            values = values.astype(np.float32 if values.dtype.kind != "f" else values.dtype, copy=True)
            mask = np.repeat(~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool), size)
            values[mask] = np.nan if values.dtype.kind == "f" else 0
        return values.reshape((len(arr), *(shape or (size,))))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return arr.to_numpy(zero_copy_only=False)
    return arr.to_pylist()
