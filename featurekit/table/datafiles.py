"""Column files for existing fragments, committed with Lance's DataReplacement.

This is the one place featurekit works below Lance's public write API: it writes a data
file holding some columns for every physical row of a fragment and commits it in place of
those columns' current file, so no other column (image bytes above all) is rewritten.
Every assumption about Lance internals (DataFile fields, row addresses) lives here.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

ROW_OFFSET_MASK = 0xFFFFFFFF  # a row address is fragment_id << 32 | offset within the fragment


def file_version(ds) -> str:
    """The Lance file format of the table's data files ("2.2"); new files must match it."""
    return ds.data_storage_version


def row_offsets(rowaddr: pa.Array) -> pa.Array:
    """Offsets within their fragment of row addresses (``_rowaddr``)."""
    return pc.bit_wise_and(rowaddr, pa.scalar(ROW_OFFSET_MASK, pa.uint64()))


def fragment_ids(rowaddr: pa.Array) -> pa.Array:
    return pc.shift_right(rowaddr, pa.scalar(32, pa.uint64()))


@dataclass
class ColumnFile:
    """A new data file for one fragment: `name` under data/, holding `field_ids` in order."""

    fragment_id: int
    name: str
    field_ids: list[int]


def data_path(ds, name: str) -> str:
    """Where a new data file of `ds` goes: ``<root>/data/<name>``. On a branch the root is
    ``<uri>/tree/<branch>`` (featurekit opens branches by that root, so ``ds.uri`` is it)."""
    return f"{ds.uri.rstrip('/')}/data/{name}" if "://" in ds.uri else os.path.join(ds.uri, "data", name)


def open_writer(ds, fragment_id: int, schema: pa.Schema):
    """A writer for a new data file of `fragment_id` holding `schema`'s columns, reaching the
    store with the options the dataset was opened with (an s3:// table needs them)."""
    from lance.file import LanceFileWriter
    name = f"{uuid.uuid4().hex}.lance"
    writer = LanceFileWriter(data_path(ds, name), schema, version=file_version(ds),
                             storage_options=ds.initial_storage_options)
    return writer, ColumnFile(fragment_id, name, file_fields(ds, schema.names))


def file_fields(ds, names: list[str]) -> list[int]:
    """The Lance field ids a data file holding top-level columns `names` lists, in file order.

    File format 2.1+ lists only leaf fields (a list's item, a struct's children; a
    fixed-size list of fixed-size lists is one leaf); format 2.0 lists every field, parents
    included, depth first. This is what ``DataFile.create`` reads back from a written file
    (checked for list, large list, struct, map and nested fixed-size lists: notes/lance-facts.md).
    """
    legacy = tuple(int(x) for x in file_version(ds).split(".")) < (2, 1)
    fields: list[int] = []

    def walk(field) -> None:
        children = field.children()
        if legacy or not children:
            fields.append(field.id())
        for child in children:
            walk(child)

    for name in names:
        walk(ds.lance_schema.field(name))
    return fields


def write_fragment_columns(ds, fragment_id: int, table: pa.Table) -> ColumnFile:
    """Write `table` (one row per physical row of the fragment) as a new column file."""
    writer, out = open_writer(ds, fragment_id, table.schema)
    for batch in table.to_batches():
        writer.write_batch(batch)
    writer.close()
    return out


def replacement(files: list[ColumnFile], file_format: str):
    """The Lance operation putting new column files in place of the old ones (one version when
    committed: `Table.commit`)."""
    import lance
    from lance.fragment import DataFile

    major, minor = (int(v) for v in file_format.split("."))
    groups = [lance.LanceOperation.DataReplacementGroup(
        f.fragment_id, DataFile(f.name, fields=f.field_ids, column_indices=list(range(len(f.field_ids))),
                                file_major_version=major, file_minor_version=minor))
        for f in files]
    return lance.LanceOperation.DataReplacement(groups)
