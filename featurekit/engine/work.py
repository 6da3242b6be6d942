"""One unit of work: compute a feature for the rows of one fragment that need it.

A `FragmentJob` reads the fragment and writes a new data file holding the feature's
columns and its state column for every physical row; `compute_piece` runs the extractor
on one batch (in this process, a thread or a worker process) and isolates rows that
raise. The engine commits the file (a Lance DataReplacement); until then nothing is visible.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..extractor import Extractor, type_matches
from ..table import FAILED_SEP

MAX_ERROR_CHARS = 500
ERROR_SAMPLE = 5


class FeatureError(Exception):
    """The extractor broke its contract (wrong length or type): the whole feature fails."""


@dataclass(frozen=True)
class FeatureTask:
    """Everything a worker needs to compute one feature; picklable."""

    feature: str
    extractor_cls: type
    params: Any
    inputs: dict[str, str]               # logical -> column
    outputs: dict[str, str]              # extractor output -> column
    output_types: dict[str, pa.DataType]  # column -> type
    state_column: str
    fingerprint: str
    upstream_states: dict[str, str]      # upstream state column -> its fingerprint
    field_ids: dict[str, int]            # column -> Lance field id
    batch_size: int
    key: str | None


@dataclass(frozen=True)
class FragmentTask:
    dataset: Any                      # the LanceDataset at the version the work was planned on
    fragment_id: int
    feature: FeatureTask
    in_scope: tuple[int, ...] | None  # physical offsets allowed (the `only` slice), None: all
    full: bool                        # every row needs work: no existing values to keep
    on_rows: Callable[[int], None] | None = None  # progress: rows done, after each piece


@dataclass
class FragmentResult:
    fragment_id: int
    path: str
    field_ids: list[int]
    computed: int = 0
    failed: int = 0
    errors: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0


_LOCK = threading.Lock()
_EXTRACTORS: dict[tuple, Extractor] = {}


def _cache_key(task: FeatureTask) -> tuple:
    return (task.extractor_cls, task.params.model_dump_json())


def release_extractor(task: FeatureTask) -> None:
    """Forget this process's extractor for `task` (and the model it holds) once a feature is done."""
    with _LOCK:
        _EXTRACTORS.pop(_cache_key(task), None)


def get_extractor(task: FeatureTask) -> Extractor:
    """One extractor per worker process, set up once (threads share it)."""
    cache_key = _cache_key(task)
    with _LOCK:
        ext = _EXTRACTORS.get(cache_key)
        if ext is None:
            ext = task.extractor_cls(task.params)
            try:
                ext.setup()
            except Exception as exc:  # a missing model, no GPU, ...: this feature fails, not the run
                raise FeatureError(f"feature {task.feature!r}: {task.extractor_cls.name} setup failed: "
                                   f"{_message(exc)}") from exc
            _EXTRACTORS[cache_key] = ext
    return ext


def _as_array(value: Any, typ: pa.DataType, feature: str, what: str, n: int) -> pa.Array:
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        try:
            value = pa.array(value, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise FeatureError(f"feature {feature!r}: {what} returned values that are not {typ}: {exc}") from None
    if len(value) != n:
        raise FeatureError(f"feature {feature!r}: {what} returned {len(value)} values for {n} rows; "
                           "an extractor must return one value per row")
    if not value.type.equals(typ):
        if not type_matches(typ, value.type):
            raise FeatureError(f"feature {feature!r}: {what} returned {value.type}, but declares {typ}")
        try:
            value = value.cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FeatureError(f"feature {feature!r}: {what} returned {value.type}, "
                               f"which does not convert to the declared {typ}: {exc}") from None
    return value


def call_extractor(ext: Extractor, task: FeatureTask, batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """Output column -> values, checked against the declared types."""
    out = ext(batch)
    n = batch.num_rows
    name = task.extractor_cls.name
    if "" in task.outputs:
        col = task.outputs[""]
        return {col: _as_array(out, task.output_types[col], task.feature, name, n)}
    if isinstance(out, pa.RecordBatch) or isinstance(out, pa.Table):
        out = {c: out.column(c) for c in out.column_names}
    if not isinstance(out, dict):
        raise FeatureError(f"feature {task.feature!r}: {name} declares several outputs and must return a "
                           f"RecordBatch or a dict of arrays, not {type(out).__name__}")
    result = {}
    for output, col in task.outputs.items():
        if output not in out:
            raise FeatureError(f"feature {task.feature!r}: {name} did not return output {output!r}")
        result[col] = _as_array(out[output], task.output_types[col], task.feature, f"{name} output {output!r}", n)
    return result


def compute_rows(ext: Extractor, task: FeatureTask, batch: pa.RecordBatch):
    """Values for every row of `batch`, and an error message (or None) per row, or None
    when no row failed.

    A batch that raises is split in halves until the rows that raise are alone, so a bad
    row costs no other row its value and a GPU batch is not redone one row at a time.
    """
    try:
        return call_extractor(ext, task, batch), None  # None: no row failed
    except FeatureError:
        raise
    except Exception as exc:
        if batch.num_rows == 1:
            return {c: pa.nulls(1, t) for c, t in task.output_types.items()}, [_message(exc)]
    mid = batch.num_rows // 2
    (left, left_err), (right, right_err) = (compute_rows(ext, task, batch.slice(0, mid)),
                                            compute_rows(ext, task, batch.slice(mid)))
    values = {c: pa.concat_arrays([left[c], right[c]]) for c in task.output_types}
    errors = (left_err or [None] * mid) + (right_err or [None] * (batch.num_rows - mid))
    return values, errors


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:MAX_ERROR_CHARS]


def _upstream_missing(batch: pa.RecordBatch, task: FeatureTask) -> list[str | None]:
    missing: list[str | None] = [None] * batch.num_rows
    for col, fp in task.upstream_states.items():
        ok = pc.fill_null(pc.equal(batch.column(col), fp), False).to_pylist()
        upstream = col[len("_fk_"):]
        for i, good in enumerate(ok):
            if not good and missing[i] is None:
                missing[i] = f"upstream feature {upstream!r} has no value for this row"
    return missing


@dataclass
class Piece:
    """One batch of a fragment as read, and the rows of it the extractor must see."""

    batch: pa.RecordBatch            # inputs, state and (for partial fragments) existing values
    offsets: "Offsets"
    logical: pa.RecordBatch | None   # input columns by logical name, rows to compute; None: none
    run_idx: list[int] | None = None  # rows of `batch` in `logical`; None: all of them (fast path)
    todo: list[bool] | None = None
    blocked: list[str | None] | None = None


class FragmentJob:
    """Reads one fragment and writes its feature columns to a new data file.

    All Lance I/O happens here, in the process that runs the job; computing a piece
    (`compute_piece`) needs only the extractor, so it can run in another process.
    """

    def __init__(self, task: FragmentTask):
        from lance.file import LanceFileWriter

        self.task = task
        self.started = time.perf_counter()
        ft = task.feature
        ds = task.dataset
        self.fragment = ds.get_fragment(task.fragment_id)
        self.physical = self.fragment.physical_rows
        value_cols = list(ft.output_types)
        self.read_cols = list(dict.fromkeys(list(ft.inputs.values()) + list(ft.upstream_states) + [ft.state_column]
                                            + ([] if task.full else value_cols) + ([ft.key] if ft.key else [])))
        self.schema = pa.schema([pa.field(c, ft.output_types[c]) for c in value_cols]
                                + [pa.field(ft.state_column, pa.string())])
        name = f"{uuid.uuid4().hex}.lance"
        self.writer = LanceFileWriter(os.path.join(ds.uri, "data", name), self.schema, version=_file_version(ds))
        self.scope = set(task.in_scope) if task.in_scope is not None else None
        self.result = FragmentResult(task.fragment_id, name, [ft.field_ids[c] for c in self.schema.names])
        self.cursor = 0
        self.reported = 0

    def pieces(self):
        ft = self.task.feature
        for batch in self.fragment.to_batches(columns=self.read_cols, with_row_address=True,
                                              batch_size=ft.batch_size):
            if batch.num_rows:
                yield self._piece(batch, Offsets(batch.column("_rowaddr")))

    def _piece(self, batch: pa.RecordBatch, offsets: "Offsets") -> Piece:
        ft = self.task.feature
        todo_arr = pc.fill_null(pc.not_equal(batch.column(ft.state_column), ft.fingerprint), True)
        if self.scope is None and not ft.upstream_states and pc.all(todo_arr).as_py():
            return Piece(batch, offsets, _logical(batch, ft))  # every row runs: no per-row Python
        n = batch.num_rows
        todo = todo_arr.to_pylist()
        if self.scope is not None:
            todo = [t and (o in self.scope) for t, o in zip(todo, offsets.values)]
        blocked = _upstream_missing(batch, ft) if ft.upstream_states else [None] * n
        run_idx = [i for i in range(n) if todo[i] and blocked[i] is None]
        logical = _logical(batch.take(pa.array(run_idx, pa.int64())), ft) if run_idx else None
        return Piece(batch, offsets, logical, run_idx, todo, blocked)

    def finish(self, piece: Piece, values: dict[str, pa.Array], errors: list[str | None] | None) -> None:
        """Write the piece: computed rows from `values`, the others as the fragment had them."""
        if piece.offsets.first > self.cursor:  # deleted rows before this batch
            self.writer.write_batch(_nulls(self.schema, piece.offsets.first - self.cursor))
        self.cursor = piece.offsets.last + 1
        n = piece.batch.num_rows
        if piece.run_idx is None and errors is None:
            out = self._all_computed(piece, values)
        elif piece.run_idx is None:
            out = _assemble(self.task, piece.batch, list(range(n)), [True] * n, [None] * n, values, errors,
                            piece.offsets.values, self.result)
        else:
            errors = errors if errors is not None else [None] * len(piece.run_idx)
            out = _assemble(self.task, piece.batch, piece.run_idx, piece.todo, piece.blocked, values, errors,
                            piece.offsets.values, self.result)
        self.writer.write_batch(_fill_gaps(out, piece.offsets))
        done = self.result.computed + self.result.failed
        if self.task.on_rows is not None and done > self.reported:
            self.task.on_rows(done - self.reported)
            self.reported = done

    def _all_computed(self, piece: Piece, values: dict[str, pa.Array]) -> pa.RecordBatch:
        ft = self.task.feature
        n = piece.batch.num_rows
        self.result.computed += n
        state = pa.array([ft.fingerprint], pa.string()).take(pa.array([0] * n, pa.int32()))
        return pa.record_batch([values[c] for c in ft.output_types] + [state],
                               names=list(ft.output_types) + [ft.state_column])

    def close(self) -> FragmentResult:
        if self.physical > self.cursor:
            self.writer.write_batch(_nulls(self.schema, self.physical - self.cursor))
        self.writer.close()
        self.result.seconds = time.perf_counter() - self.started
        return self.result


def _logical(batch: pa.RecordBatch, ft: FeatureTask) -> pa.RecordBatch:
    return pa.record_batch([batch.column(col) for col in ft.inputs.values()], names=list(ft.inputs))


def compute_piece(ft: FeatureTask, logical: pa.RecordBatch):
    """What a worker process runs: the extractor on one batch (no Lance here)."""
    return compute_rows(get_extractor(ft), ft, logical)


def compute_fragment(task: FragmentTask) -> FragmentResult:
    """Read, compute and write one fragment in this process."""
    job = FragmentJob(task)
    for piece in job.pieces():
        if piece.logical is None:
            job.finish(piece, {}, None)
        else:
            job.finish(piece, *compute_piece(task.feature, piece.logical))
    return job.close()


def _file_version(ds) -> str:
    version = ds.data_storage_version
    return version if version not in ("stable", "legacy") else "2.0"


def _nulls(schema: pa.Schema, n: int) -> pa.RecordBatch:
    return pa.record_batch([pa.nulls(n, f.type) for f in schema], schema=schema)


class Offsets:
    """Physical row offsets of a batch within its fragment (from ``_rowaddr``)."""

    def __init__(self, rowaddr: pa.Array):
        self.array = pc.bit_wise_and(rowaddr, pa.scalar(0xFFFFFFFF, pa.uint64()))
        self.first = self.array[0].as_py()
        self.last = self.array[-1].as_py()
        self.contiguous = self.last - self.first + 1 == len(self.array)

    @property
    def values(self) -> list[int]:
        return self.array.to_pylist()


def _assemble(task: FragmentTask, batch: pa.RecordBatch, run_idx: list[int], todo: list[bool],
              blocked: list[str | None], values: dict[str, pa.Array], errors: list[str | None],
              offsets: list[int] | None, result: FragmentResult) -> pa.RecordBatch:
    ft = task.feature
    n = batch.num_rows
    state = batch.column(ft.state_column)
    position = {i: j for j, i in enumerate(run_idx)}
    keys = batch.column(ft.key).to_pylist() if ft.key else (offsets or list(range(n)))
    new_state: list[str | None] = []
    for i in range(n):
        if i in position:
            err = errors[position[i]]
        elif todo[i]:
            err = blocked[i]
        else:
            new_state.append(state[i].as_py())
            continue
        if err is None:
            result.computed += 1
            new_state.append(ft.fingerprint)
        else:
            result.failed += 1
            new_state.append(ft.fingerprint + FAILED_SEP + err)
            if len(result.errors) < ERROR_SAMPLE:
                result.errors.append((keys[i], err))
    columns = []
    for col, typ in ft.output_types.items():
        columns.append(_merge(batch.column(col) if col in batch.column_names else pa.nulls(n, typ),
                              values.get(col), run_idx, todo, n, typ))
    columns.append(pa.array(new_state, pa.string()))
    return pa.record_batch(columns, names=list(ft.output_types) + [ft.state_column])


def _merge(existing: pa.Array, computed: pa.Array | None, run_idx: list[int], todo: list[bool], n: int,
           typ: pa.DataType) -> pa.Array:
    """Row i: computed value if it ran, null if it needed work but could not run, else existing."""
    if computed is None and not any(todo):
        return existing
    if len(run_idx) == n:
        return computed
    combined = pa.concat_arrays([existing.cast(typ) if not existing.type.equals(typ) else existing,
                                 computed if computed is not None else pa.nulls(0, typ)])
    where = {i: n + j for j, i in enumerate(run_idx)}
    index = [where.get(i, None if todo[i] else i) for i in range(n)]
    return combined.take(pa.array(index, pa.int64()))


def _fill_gaps(batch: pa.RecordBatch, offsets: Offsets) -> pa.RecordBatch:
    """Deleted rows inside a batch leave gaps in the offsets: the file needs a null there."""
    if offsets.contiguous:
        return batch
    start = offsets.first
    index = [None] * (offsets.last - start + 1)
    for j, o in enumerate(offsets.values):
        index[o - start] = j
    return batch.take(pa.array(index, pa.int64()))
