"""`featurekit.read(..., format="hf")`: Arrow columns read from the table handed to Hugging Face
`datasets` as a `datasets.Dataset`, built on the Arrow table itself (no row goes through Python).

Image columns (the binary columns `files:` or an `hf` source's `Image` features filled) become
`datasets.Image()` features again: `struct<bytes, path>` built from the bytes buffer, the path
NULL, so `dataset[i]["image"]` is a PIL image as in the dataset that was ingested.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..curation.gallery import MAGIC
from ..errors import UsageError

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image()'s storage


def to_dataset(table: pa.Table, images: list[str] | None = None, fingerprint: str | None = None):
    """A `datasets.Dataset` of `table`; `images`: columns to present as `datasets.Image()`
    (None: the binary columns whose first value is a PNG, JPEG, GIF, WebP or BMP image);
    `fingerprint`: what `datasets` names this data by (without one it hashes every byte of the
    table: a second per 100 MB of images)."""
    try:
        import datasets
        from datasets.table import InMemoryTable
    except ImportError:
        raise UsageError("read(format='hf') needs the datasets package: pip install 'featurekit[hf]'") from None
    chosen = image_columns(table) if images is None else list(images)
    bad = [c for c in chosen if c not in table.column_names or not _is_binary(table.column(c).type)]
    if bad:
        raise UsageError(f"read: images={chosen!r}: {bad[0]!r} is not a binary column read")
    columns = [_as_image(table.column(n)) if n in chosen else table.column(n) for n in table.column_names]
    table = pa.table(columns, names=table.column_names)
    features = datasets.Features.from_arrow_schema(table.schema)
    for name in chosen:
        features[name] = datasets.Image()
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features),
                            fingerprint=fingerprint)


def image_columns(table: pa.Table) -> list[str]:
    """Binary columns whose first non-NULL value starts like an image file."""
    out = []
    for name in table.column_names:
        column = table.column(name)
        if not _is_binary(column.type):
            continue
        valid = pc.indices_nonzero(pc.is_valid(column))
        if len(valid):
            head = column[valid[0].as_py()].as_py()[:8]
            if any(head.startswith(magic) for magic, _ in MAGIC):
                out.append(name)
    return out


def _is_binary(typ: pa.DataType) -> bool:
    return pa.types.is_binary(typ) or pa.types.is_large_binary(typ)


def _as_image(column: pa.ChunkedArray) -> pa.ChunkedArray:
    chunks = []
    for chunk in column.chunks:
        data = chunk.cast(pa.binary())
        chunks.append(pa.StructArray.from_arrays([data, pa.nulls(len(chunk), pa.string())], fields=list(IMAGE_TYPE),
                                                 mask=chunk.is_null()))
    return pa.chunked_array(chunks, IMAGE_TYPE)
