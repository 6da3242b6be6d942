"""Write what the source brought: changed rows replaced, pruned rows deleted, new rows appended.

Ingest is keyed: a row whose key is in the table is never appended again, so a crash
between two commits costs at most one group of rows, which the next apply reads again.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CommitConflict, SourceUnreadable
from ..lifetime import critical
from ..table.handle import Table, open_dataset
from .prepare import PreparedIngest


def ingest(table: Table, prepared: PreparedIngest, *, fragment_rows: int, commit_rows: int) -> int:
    """Replace changed rows and delete pruned ones (one commit), then append the new rows,
    streaming file bytes chunk by chunk, `commit_rows` a commit. Returns the rows written.
    The source signature is recorded by the apply's last commit (`metadata.record_apply`):
    reading a source that changed nothing writes no version."""
    written = 0
    schema = None
    if prepared.count or prepared.delete_keys:
        check_no_other_writer(table, prepared)
    if prepared.count:
        schema = prepared.schema()
        if table.exists:
            new_cols = [f for f in schema if f.name not in table.schema.names]
            if new_cols:
                table.add_columns(new_cols)
            schema = pa.schema([table.schema.field(f.name).remove_metadata() for f in schema])
    if table.exists and (prepared.changed_rows is not None or prepared.delete_keys):
        with critical():
            written += write_changes(table, prepared, schema, fragment_rows)
    if prepared.new_rows is not None:
        def counted(start: int, stop: int):
            nonlocal written
            for batch in prepared.batches(start, stop):
                written += batch.num_rows
                yield checked_batch(batch.cast(schema))

        # One commit per group of fragments: a crash loses at most one group, and the
        # next apply skips the keys already in (ingest is keyed).
        for start in range(0, prepared.new_rows.num_rows, commit_rows):
            reader = pa.RecordBatchReader.from_batches(schema, counted(start, start + commit_rows))
            with critical():
                table.write(reader, max_rows_per_file=fragment_rows)
    return written


def check_no_other_writer(table: Table, prepared: PreparedIngest) -> None:
    """The last guard against a duplicate key: the table is where this apply read it (a writer
    outside the lock, or one whose lease ran out, may have written since). When it moved, the
    new keys are looked up in its latest version, and any found refuses the ingest whole."""
    if table.exists:
        if table.dataset.latest_version == table.version:  # the common case: no second open
            return
        latest = table.dataset.checkout_version(table.dataset.latest_version)
    else:
        latest = open_dataset(table.ref)
        if latest is None:
            return
    found: list = []
    if prepared.new_rows is not None and prepared.key in latest.schema.names:
        have = latest.to_table(columns=[prepared.key]).column(prepared.key).combine_chunks()
        mine = prepared.new_rows.column(prepared.key)
        found = mine.filter(pc.is_in(mine, value_set=have.cast(mine.type))).to_pylist()
    moved = f"version {table.version} -> {latest.version}" if table.exists else f"created at version {latest.version}"
    what = (f"it now holds {len(found)} of the keys this apply would append ({', '.join(map(repr, found[:10]))}"
            f"{' ...' if len(found) > 10 else ''})") if found else "what this apply compared the source with is stale"
    raise CommitConflict(f"another writer changed {table.uri} while this apply prepared its ingest ({moved}): {what}; "
                         "nothing was ingested; run apply again", table=table.uri)


def checked_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The last guard before Lance: a batch that is not valid Arrow (strings that are not
    UTF-8 above all) would leave its column unreadable for good, so it is never written."""
    try:
        batch.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise SourceUnreadable(f"refusing to write malformed source rows ({exc}); nothing of this batch was written") from None
    return batch


def write_changes(table: Table, prepared: PreparedIngest, schema: pa.Schema, fragment_rows: int) -> int:
    """Replace changed rows and delete pruned ones in one Lance commit (an Update): the old
    rows get deletion vectors, the new content goes into new fragments; no other data
    file is touched, and a reader sees either the old rows or the new ones. Returns the
    rows written."""
    import lance
    from lance.fragment import write_fragments
    if not prepared.delete_keys and prepared.changed_rows is None:
        return 0
    ds = table.require()
    replaced: list = []
    new_fragments = []
    if prepared.changed_rows is not None:
        def counted():
            for batch in prepared.changed_batches():
                batch = checked_batch(batch.cast(schema))
                replaced.extend(batch.column(prepared.key).to_pylist())
                yield batch
        reader = pa.RecordBatchReader.from_batches(schema, counted())
        new_fragments = write_fragments(reader, ds, schema=schema, max_rows_per_file=fragment_rows,
                                        data_storage_version=ds.data_storage_version)
    # a changed row whose new file could not be loaded after all keeps its old version
    unwritten = set(prepared.changed_keys) - set(replaced)
    doomed = [k for k in prepared.delete_keys if k not in unwritten]
    if not doomed and not new_fragments:
        return 0
    removed, updated = _delete_rows(ds, prepared.key, doomed)
    table.commit(lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated,
                                             new_fragments=new_fragments), ds.version, what="the changed source rows")
    return len(replaced)


def _delete_rows(ds, key: str, keys: list) -> tuple[list[int], list]:
    """Deletion vectors for the rows with these keys, per fragment (not committed)."""
    if not keys:
        return [], []
    table = ds.to_table(columns=[key], with_row_address=True)
    hit = pc.is_in(table.column(key), value_set=pa.array(keys, table.schema.field(key).type))
    addresses = np.asarray(table.column("_rowaddr").filter(hit).to_numpy(), dtype=np.uint64)
    removed, updated = [], []
    for frag_id in sorted(set((addresses >> np.uint64(32)).tolist())):
        mine = addresses[(addresses >> np.uint64(32)) == frag_id].tolist()
        meta = ds.get_fragment(int(frag_id)).delete(f"_rowaddr IN ({', '.join(map(str, mine))})")
        if meta is None:
            removed.append(int(frag_id))
        else:
            updated.append(meta)
    return removed, updated
