"""One unit of work: compute a feature for the rows of one fragment that need it.

A `FragmentJob` reads the fragment and writes a new data file holding the feature's
columns and its state column for every physical row; computing a piece of it
(`compute.compute_piece`) needs only the extractor, so it can run in another process.
The engine commits the file (a Lance DataReplacement); until then nothing is visible.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..planning.inputkeys import HASH_TYPE, small_inputs
from ..plugins.extractor import Extractor
from ..table.datafiles import open_writer, row_offsets
from ..table.metadata import FAILED_SEP
from .compute import FeatureTask, binary_inputs, compute_piece_counted, upstream_missing

ERROR_SAMPLE = 5
PIECE_BYTES = 32 << 20   # about this much input a piece (rows read together), when it can be told
MAX_PIECE_ROWS = 32_768  # ... and never more rows: pieces are also the unit of progress and of a worker's task


@dataclass(frozen=True)
class FragmentTask:
    dataset: Any                      # the LanceDataset at the version the work was planned on
    fragment_id: int
    feature: FeatureTask
    full: bool                        # every row needs work: stream, no existing values to keep
    filter: str | None = None         # partial jobs: SQL selecting the rows that need work
    on_rows: Callable[[int], None] | None = None  # progress: rows done, after each piece
    reuse: Any = None                 # the feature run's shared values (`reuse.Reuse` or `shared.SharedValues`)
    scan: FullScan | None = None      # full jobs: one scan over several fragments, read in order


@dataclass
class FragmentResult:
    fragment_id: int
    path: str
    field_ids: list[int]
    computed: int = 0
    failed: int = 0
    errors: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0
    compute_seconds: float = 0.0      # of `seconds`, in the extractor (what worker processes could share)
    changed: bool = True              # False: every row got back the value and state it had
    passed: int = 0                   # rows passed to the extractor (halving passes rows again)


@dataclass
class Piece:
    """Rows of a fragment read together, and those of them the extractor must see."""

    offsets: Offsets                      # physical offsets of the rows read
    keys: RowKeys                           # row keys (or offsets) for error reports
    logical: pa.RecordBatch | None          # inputs by logical name of the rows to run; None: none
    run_idx: list[int] | None = None        # rows of the piece in `logical`; None: all of them
    blocked: list[str | None] | None = None  # per row: why it cannot run (an upstream failed)
    reuse: Any = None                       # the plan of the rows to run: computed, memo, table or shared


class FragmentJob:
    """Reads one fragment and writes its feature columns to a new data file.

    All Lance I/O happens here, in the process that runs the job; computing a piece
    (`compute_piece`) needs only the extractor, so it can run in another process.

    A full job (every row needs work) streams: read inputs, compute, write. A partial job
    (retries, new rows of an `only:` slice, an interrupted recompute) reads inputs only for
    the rows that need work (a Lance filter, so e.g. image bytes of other rows are never
    read) and merges the results, in physical order, with the values the other rows have.
    """

    def __init__(self, task: FragmentTask):
        self.task = task
        self.started = time.perf_counter()
        ft = task.feature
        ds = task.dataset
        self.fragment = ds.get_fragment(task.fragment_id)
        self.physical = self.fragment.physical_rows
        self.schema = pa.schema([pa.field(c, t) for c, t in ft.output_types.items()]
                                + [pa.field(ft.state_column, pa.string())]
                                + ([pa.field(ft.hash_column, HASH_TYPE)] if ft.hash_column else []))
        self.writer, out = open_writer(ds, task.fragment_id, self.schema)
        self.result = FragmentResult(task.fragment_id, out.name, out.field_ids,
                                     changed=task.full)  # partial jobs: found out in _merge
        self.cursor = 0      # next physical offset to write
        self.reported = 0
        self.pending: pa.Table | None = None  # partial jobs: computed rows not written yet, with "offset"
        self.existing = None if task.full else self.fragment.to_batches(
            columns=self.schema.names, with_row_address=True, batch_size=ft.batch_size)
        self.held: pa.RecordBatch | None = None  # an existing batch waiting for computed rows
        self._keys: dict[int, Any] | None = None  # offset -> key, read when a row fails (_key_reader)

    def _key_reader(self) -> dict[int, Any]:
        """Physical offset -> the row's key (and file) for error reports: read only when a row
        of this fragment fails (reading keys with every batch costs a third of a cheap feature)."""
        ft = self.task.feature
        if self._keys is None:
            columns = [c for c in (ft.key, ft.file_column) if c]
            self._keys = {}
            if columns:
                for batch in self.fragment.to_batches(columns=columns, with_row_address=True):
                    offsets = row_offsets(batch.column("_rowaddr")).to_pylist()
                    keys = batch.column(ft.key).to_pylist() if ft.key else offsets
                    files = batch.column(ft.file_column).to_pylist() if ft.file_column else [None] * len(offsets)
                    self._keys.update((o, f"{k} ({path})" if path else k) for o, k, path in zip(offsets, keys, files))
        return self._keys

    def pieces(self):
        ft = self.task.feature
        known = known_rows(self.task)
        if known is not None:  # every row's value is known by its inputs' group: nothing to read
            for at in range(0, len(known), ft.piece_rows):
                yield self._known_piece(known[at:at + ft.piece_rows])
            return
        if self.task.scan is not None and self.task.full:
            batches = self.task.scan.batches(self.task.fragment_id)
        else:
            batches = self.fragment.to_batches(columns=read_columns(ft), filter=None if self.task.full else
                                               self.task.filter, with_row_address=True, batch_size=ft.piece_rows)
        for batch in batches:
            if batch.num_rows:
                yield self._piece(batch)

    def _piece(self, batch: pa.RecordBatch) -> Piece:
        ft = self.task.feature
        offsets = Offsets(batch.column("_rowaddr"))
        keys = RowKeys(offsets, self._key_reader)
        blocked = upstream_missing(batch, ft) if ft.upstream_states else None
        if blocked is None or not any(blocked):
            piece = Piece(offsets, keys, _logical(batch, ft))
        else:
            run_idx = [i for i, b in enumerate(blocked) if b is None]
            logical = _logical(batch.take(pa.array(run_idx, pa.int64())), ft) if run_idx else None
            piece = Piece(offsets, keys, logical, run_idx, blocked)
        reuse = self.task.reuse
        if reuse is not None and piece.logical is not None:
            addrs = piece.offsets.array.to_numpy() + np.uint64(self.task.fragment_id << 32)
            if piece.run_idx is not None:
                addrs = addrs[np.asarray(piece.run_idx, dtype=np.int64)]
            piece.reuse = reuse.plan(piece.logical, ft.fingerprint, addrs)
            compute = piece.reuse.compute
            if len(compute) < piece.logical.num_rows:  # only the first row of each new input runs
                piece.logical = piece.logical.take(pa.array(compute, pa.int64())) if compute else None
        return piece

    def _known_piece(self, addrs: np.ndarray) -> Piece:
        """A piece of rows whose values the shared values hold (no inputs read, none to compute)."""
        offsets = Offsets(pa.array(addrs, pa.uint64()))
        piece = Piece(offsets, RowKeys(offsets, self._key_reader), None)
        piece.reuse = self.task.reuse.plan(None, self.task.feature.fingerprint, addrs)
        return piece

    def finish(self, piece: Piece, values: dict[str, pa.Array], errors: list[str | None] | None,
               passed: int = 0) -> None:
        """Take the computed values of a piece and write whatever is ready."""
        self.result.passed += passed
        if piece.reuse is not None:  # computed once per new input: now every row to run
            addrs = piece.offsets.array.to_numpy() + np.uint64(self.task.fragment_id << 32)
            if piece.run_idx is not None:
                addrs = addrs[np.asarray(piece.run_idx, dtype=np.int64)]
            values, errors = self.task.reuse.resolve(piece.reuse, values, errors, addrs)
        out = self._computed(piece, values, errors)
        if self.task.full:
            self._write(out, piece.offsets)
        else:
            out = out.append_column("offset", piece.offsets.array)
            self.pending = out if self.pending is None else pa.concat_tables([self.pending, out])
            self._drain(piece.offsets.last)
        done = self.result.computed + self.result.failed
        if self.task.on_rows is not None and done > self.reported:
            self.task.on_rows(done - self.reported)
            self.reported = done

    def _computed(self, piece: Piece, values: dict[str, pa.Array], errors: list[str | None] | None) -> pa.Table:
        """Values and state for every row of the piece."""
        ft = self.task.feature
        n = len(piece.offsets.array)
        hashes = self._hashes(piece, n)
        if piece.run_idx is None and errors is None:  # the common case, without per-row Python
            self.result.computed += n
            state = pa.array([ft.fingerprint], pa.string()).take(pa.array(np.zeros(n, np.int32)))
            return pa.table([values[c] for c in ft.output_types] + [state] + hashes, schema=self.schema)
        if piece.run_idx is None:
            messages = list(errors)
            columns = [values[c] for c in ft.output_types]
        else:
            messages = list(piece.blocked)
            for j, i in enumerate(piece.run_idx):
                messages[i] = errors[j] if errors is not None else None
            where = [None] * n
            for j, i in enumerate(piece.run_idx):
                where[i] = j
            index = pa.array(where, pa.int64())
            columns = [values[c].take(index) if c in values else pa.nulls(n, t) for c, t in ft.output_types.items()]
        state = []
        for i, message in enumerate(messages):
            if message is None:
                self.result.computed += 1
                state.append(ft.fingerprint)
            else:
                self.result.failed += 1
                state.append(ft.fingerprint + FAILED_SEP + message)
                if len(self.result.errors) < ERROR_SAMPLE:
                    self.result.errors.append((piece.keys[i], message))
        return pa.table(columns + [pa.array(state, pa.string())] + hashes, schema=self.schema)

    def _hashes(self, piece: Piece, n: int) -> list[pa.Array]:
        """The input-key column of the piece's rows (NULL where not run), when the feature keeps one."""
        if not self.task.feature.hash_column:
            return []
        if piece.reuse is None:
            return [pa.nulls(n, HASH_TYPE)]
        hashes = piece.reuse.hashes
        if piece.run_idx is None:
            return [hashes]
        where = [None] * n
        for j, i in enumerate(piece.run_idx):
            where[i] = j
        return [hashes.take(pa.array(where, pa.int64()))]

    def _write(self, table: pa.Table, offsets: Offsets) -> None:
        """Write rows at `offsets`, nulls where deleted rows leave gaps."""
        if offsets.first > self.cursor:
            self.writer.write_batch(_nulls(self.schema, offsets.first - self.cursor))
        for batch in _fill_gaps(table, offsets).to_batches():
            self.writer.write_batch(batch)
        self.cursor = offsets.last + 1

    def _drain(self, upto: int | None) -> None:
        """Partial jobs: write the existing rows up to offset `upto` (all when None), with the
        computed rows in place of theirs."""
        while True:
            if self.held is None:
                self.held = next(self.existing, None)
                if self.held is None:
                    return
                if not self.held.num_rows:
                    self.held = None
                    continue
            offsets = Offsets(self.held.column("_rowaddr"))
            if upto is not None and offsets.last > upto:
                return
            self._write(self._merge(self.held, offsets), offsets)
            self.held = None

    def _merge(self, existing: pa.RecordBatch, offsets: Offsets) -> pa.Table:
        table = pa.Table.from_batches([existing]).select(self.schema.names)
        if self.pending is None or self.pending.num_rows == 0:
            return table
        pending_offsets = self.pending.column("offset").to_numpy()
        k = int(np.searchsorted(pending_offsets, offsets.last, side="right"))
        if k == 0:
            return table
        computed, self.pending = self.pending.slice(0, k), self.pending.slice(k)
        rows = np.searchsorted(offsets.array.to_numpy(), pending_offsets[:k])
        if not self.result.changed:
            state = self.task.feature.state_column
            before = table.column(state).take(pa.array(rows))
            same = pc.fill_null(pc.equal(before, computed.column(state)), False)
            self.result.changed = not pc.all(same).as_py()
        index = np.arange(table.num_rows)
        index[rows] = table.num_rows + np.arange(k)
        both = pa.concat_tables([table, computed.select(self.schema.names).cast(self.schema)])
        return both.take(pa.array(index))

    def close(self) -> FragmentResult:
        if not self.task.full:
            self._drain(None)
        if self.physical > self.cursor:
            self.writer.write_batch(_nulls(self.schema, self.physical - self.cursor))
        self.writer.close()
        self.result.seconds = time.perf_counter() - self.started
        return self.result


def known_rows(task: FragmentTask) -> np.ndarray | None:
    """The addresses of the fragment's rows to compute when the feature's shared values know
    every one's value (values shared by input, no upstream feature whose state could block a
    row); None: the fragment's inputs are read."""
    reuse = task.reuse
    if reuse is None or task.feature.upstream_states:
        return None
    return reuse.known_rows(task.fragment_id)


def read_columns(ft: FeatureTask) -> list[str]:
    """The columns a piece reads: the inputs, and the upstream features' states."""
    return list(dict.fromkeys(list(ft.inputs.values()) + list(ft.upstream_states)))


class FullScan:
    """One scan over fragments whose rows all need work, handed out fragment by fragment in
    the order given (each fragment still gets its own file): a scan set up once, not per
    fragment, which a cheap feature over many fragments notices. Fragments must be read in
    that order, each to its end, as the engine's jobs do."""

    def __init__(self, ds, fragment_ids: list[int], ft: FeatureTask):
        self.order = list(fragment_ids)
        # (LanceDataset.to_batches drops `fragments=`: the scanner takes it)
        self.stream = iter(ds.scanner(columns=read_columns(ft), with_row_address=True, batch_size=ft.piece_rows,
                                      fragments=[ds.get_fragment(i) for i in self.order],
                                      scan_in_order=True).to_batches())
        self.held: pa.RecordBatch | None = None  # a batch of a later fragment, read ahead

    def batches(self, fragment_id: int):
        if not self.order or self.order[0] != fragment_id:
            raise RuntimeError(f"featurekit: fragment {fragment_id} read out of order from a shared scan")
        self.order.pop(0)
        while True:
            batch = self.held if self.held is not None else next(self.stream, None)
            self.held = None
            if batch is None:
                return
            owner = fragment_of(batch.column("_rowaddr"))
            mine = owner == fragment_id
            if mine.all():
                yield batch
                continue
            if mine.any():  # a batch across fragments: this fragment's rows come first
                k = int(mine.sum())
                yield batch.slice(0, k)
                batch = batch.slice(k)
            self.held = batch
            return


def fragment_of(rowaddr: pa.Array) -> np.ndarray:
    """The fragment of each row address."""
    return rowaddr.to_numpy(zero_copy_only=False) >> np.uint64(32)


def piece_rows(ds, columns: list[str], batch_size: int) -> int | None:
    """Rows to read together for a feature whose inputs are `columns`: more than its batch
    size when they are small values (text, numbers) in a local table, so a cheap extractor
    does not pay a scan and a write per batch (the extractor still gets `batch_size` rows a
    call). Sized from the bytes Lance stores for the columns; None (the batch size) when
    that cannot be told cheaply, or for bulky inputs (images, vectors)."""
    if "://" in ds.uri or not small_inputs([ds.schema.field(c).type for c in columns]):
        return None
    try:
        ids = {f.name(): f.id() for f in ds.lance_schema.fields()}
        stored = {s.id: s.bytes_on_disk for s in ds.stats.data_stats().fields}
        rows = ds.count_rows()
        per_row = sum(stored.get(ids[c], 0) for c in columns) / max(1, rows)
    except Exception:  # noqa: BLE001  (statistics are an optimisation: without them, the batch size)
        return None
    # stored bytes are compressed: assume a row holds four times as much in memory
    return min(MAX_PIECE_ROWS, max(batch_size, int(PIECE_BYTES / max(1.0, 4 * per_row))))


def _logical(batch: pa.RecordBatch, ft: FeatureTask) -> pa.RecordBatch:
    """The inputs by logical name, as the extractor receives them (an image struct reduced to
    its bytes for a binary input): input keys are taken over exactly what it computes from."""
    logical = pa.record_batch([batch.column(col) for col in ft.inputs.values()], names=list(ft.inputs))
    return binary_inputs(_shape_of(ft), logical)


_SHAPE: list = [None, None]  # [the FeatureTask, its extractor instance]: one feature at a time


def _shape_of(ft: FeatureTask) -> Extractor:
    """An extractor instance that is never set up: only its declared input types are asked."""
    if _SHAPE[0] is not ft:
        _SHAPE[:] = [ft, ft.extractor_cls(ft.params)]
    return _SHAPE[1]


def compute_fragment(task: FragmentTask) -> FragmentResult:
    """Read, compute and write one fragment in this process."""
    job = FragmentJob(task)
    spent = 0.0
    for piece in job.pieces():
        if piece.logical is None:
            job.finish(piece, {}, None)
        else:
            t0 = time.perf_counter()
            computed = compute_piece_counted(task.feature, piece.logical)
            spent += time.perf_counter() - t0
            job.finish(piece, *computed)
    result = job.close()
    result.compute_seconds = spent
    return result


def discard(ds, result: FragmentResult) -> None:
    """Remove a data file that will not be committed (it changed nothing): no version,
    and no unreferenced file left behind. Object stores keep it (cleanup removes it)."""
    path = os.path.join(ds.uri, "data", result.path)
    if "://" not in path:
        try:
            os.remove(path)
        except OSError:
            pass


def _nulls(schema: pa.Schema, n: int) -> pa.RecordBatch:
    return pa.record_batch([pa.nulls(n, f.type) for f in schema], schema=schema)


class RowKeys:
    """The key of each row of a piece (its offset when the table has no key column), looked up
    only for the rows an error report names; a row error names the file its input came from
    beside the key."""

    def __init__(self, offsets: Offsets, reader):
        self.offsets, self.reader = offsets, reader

    def __getitem__(self, i: int):
        offset = self.offsets.array[i].as_py()
        return self.reader().get(offset, offset)


class Offsets:
    """Physical row offsets of a batch within its fragment (from ``_rowaddr``)."""

    def __init__(self, rowaddr: pa.Array):
        self.array = row_offsets(rowaddr)
        self.first = self.array[0].as_py()
        self.last = self.array[-1].as_py()
        self.contiguous = self.last - self.first + 1 == len(self.array)

    @property
    def values(self) -> list[int]:
        return self.array.to_pylist()


def _fill_gaps(table: pa.Table, offsets: Offsets) -> pa.Table:
    """Deleted rows inside a batch leave gaps in the offsets: the file needs a null there."""
    if offsets.contiguous:
        return table
    start = offsets.first
    index = [None] * (offsets.last - start + 1)
    for j, o in enumerate(offsets.values):
        index[o - start] = j
    return table.take(pa.array(index, pa.int64()))
