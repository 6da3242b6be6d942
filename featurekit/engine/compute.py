"""What a worker runs: an extractor on one batch of a feature's inputs, checked against its contract.

Nothing here touches Lance, so it runs in this process, a thread, a worker process or a
Geneva applier alike. A row the extractor reports as failed (`featurekit.RowErrors`) or
that raises is isolated: it costs no other row its value.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..lifetime import deadline
from ..plugins.extractor import Extractor, binary_view, type_matches
from ..plugins.rowerrors import RowErrors

MAX_ERROR_CHARS = 500


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
    timeout: float | None = None         # seconds an extractor call may take (resources.timeout)
    file_column: str | None = None       # the column naming the file an input was loaded from (reports)
    hash_column: str | None = None       # `_fkin_<feature>`: input keys stored (content-addressed compute)
    read_rows: int | None = None         # rows read together (a piece); None: batch_size. Pieces reach
                                         # the extractor in batches of batch_size either way

    @property
    def piece_rows(self) -> int:
        return max(self.read_rows or 0, self.batch_size)


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
                                   f"{error_message(exc)}") from exc
            _EXTRACTORS[cache_key] = ext
    return ext


def _as_array(value: Any, typ: pa.DataType, feature: str, what: str, n: int) -> pa.Array:
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, (str, bytes, int, float, bool, pa.Scalar)) or value is None or \
            getattr(value, "ndim", None) == 0:
        raise FeatureError(f"feature {feature!r}: {what} returned a single {type(value).__name__}, not one value "
                           f"per row: an extractor receives whole input columns ({n} rows in this call) and "
                           "returns an array of one value per row")
    if not isinstance(value, pa.Array):
        try:
            value = pa.array(value, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise FeatureError(f"feature {feature!r}: {what} returned values that are not {typ}: {exc}") from None
    if len(value) != n:
        raise FeatureError(f"feature {feature!r}: {what} returned {len(value)} values for the {n} rows it was given; "
                           "an extractor must return one value per row")
    if not value.type.equals(typ):
        if not type_matches(typ, value.type):
            raise FeatureError(f"feature {feature!r}: {what} returned {value.type}, but declares {typ}")
        try:
            value = value.cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FeatureError(f"feature {feature!r}: {what} returned {value.type}, "
                               f"which does not convert to the declared {typ}: {exc}") from None
    try:  # e.g. strings that are not UTF-8: written, they would make the column unreadable
        value.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise FeatureError(f"feature {feature!r}: {what} returned malformed {typ} values ({exc}); "
                           "nothing of this batch was written") from None
    return value


def binary_inputs(ext: Extractor, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Inputs declared binary receive bytes: an image column in Hugging Face's struct<bytes,
    path> form is handed over as its bytes."""
    expected = ext.input_types()
    arrays = [binary_view(batch.column(i)) if _wants_binary(expected.get(name)) else batch.column(i)
              for i, name in enumerate(batch.schema.names)]
    if all(a is batch.column(i) for i, a in enumerate(arrays)):
        return batch
    return pa.record_batch(arrays, names=batch.schema.names)


def _wants_binary(expected) -> bool:
    return expected == "binary" or (isinstance(expected, pa.DataType) and
                                    (pa.types.is_binary(expected) or pa.types.is_large_binary(expected)))


def call_extractor(ext: Extractor, task: FeatureTask, batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """Output column -> values, checked against the declared types; rows the extractor
    reported as failed (`featurekit.RowErrors`) hold NULL (see `call_extractor_rows`)."""
    return call_extractor_rows(ext, task, batch)[0]


def call_extractor_rows(ext: Extractor, task: FeatureTask, batch: pa.RecordBatch):
    """(output column -> values, per-row error messages or None when no row failed)."""
    batch = binary_inputs(ext, batch)
    with deadline(task.timeout):
        out = ext(batch)
    n = batch.num_rows
    name = task.extractor_cls.name
    errors = None
    if isinstance(out, RowErrors):
        errors = _row_messages(out.errors, task, n)
        out = _blank_failed(out.values, errors)
    values = _outputs(out, task, name, n)
    if errors is not None and any(errors):
        keep = pa.array([i if e is None else None for i, e in enumerate(errors)], pa.int64())
        values = {c: v.take(keep) for c, v in values.items()}  # a failed row's value is NULL
    return values, (errors if errors is not None and any(errors) else None)


def _blank_failed(values: Any, errors: list[str | None]) -> Any:
    """Python lists of values get None at failed rows before conversion: whatever an extractor
    left there (a placeholder of another type) is never checked against the output type."""
    def blank(v):
        return [None if e is not None else x for x, e in zip(v, errors)] if isinstance(v, list) else v
    if isinstance(values, dict):
        return {k: blank(v) for k, v in values.items()}
    return blank(values)


def _row_messages(errors: list, task: FeatureTask, n: int) -> list[str | None]:
    if len(errors) != n:
        raise FeatureError(f"feature {task.feature!r}: {task.extractor_cls.name} returned RowErrors with "
                           f"{len(errors)} errors for {n} rows; give one entry per row (None for a good row)")
    out = []
    for e in errors:
        if e is None:
            out.append(None)
        elif isinstance(e, BaseException):
            out.append(error_message(e))
        else:
            out.append(str(e).replace("\n", " ")[:MAX_ERROR_CHARS] or "failed")
    return out


def _outputs(out: Any, task: FeatureTask, name: str, n: int) -> dict[str, pa.Array]:
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


def compute_rows(ext: Extractor, task: FeatureTask, batch: pa.RecordBatch, counter: list | None = None):
    """Values for every row of `batch`, and an error message (or None) per row, or None
    when no row failed. `counter[0]` grows by the rows passed to the extractor.

    An extractor that returns `featurekit.RowErrors` reports its failed rows itself: one
    call. A batch that raises is split in halves until the rows that raise are alone, so a
    bad row costs no other row its value; the price is the extra calls (counted).
    """
    if counter is not None:
        counter[0] += batch.num_rows
    try:
        return call_extractor_rows(ext, task, batch)
    except FeatureError:
        raise
    except Exception as exc:
        if batch.num_rows == 1:
            return {c: pa.nulls(1, t) for c, t in task.output_types.items()}, [error_message(exc)]
    mid = batch.num_rows // 2
    (left, left_err), (right, right_err) = (compute_rows(ext, task, batch.slice(0, mid), counter),
                                            compute_rows(ext, task, batch.slice(mid), counter))
    values = {c: pa.concat_arrays([left[c], right[c]]) for c in task.output_types}
    errors = (left_err or [None] * mid) + (right_err or [None] * (batch.num_rows - mid))
    return values, errors


OBJECT_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")


def error_message(exc: BaseException) -> str:
    """One line a person can read: no memory addresses (PIL names the input '<_io.BytesIO
    object at 0x7f...>', which says nothing about which row or file)."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    text = OBJECT_REPR.sub(lambda m: "the input bytes" if m.group(1) == "BytesIO" else f"a {m.group(1)}", text)
    return text[:MAX_ERROR_CHARS]


def upstream_missing(batch: pa.RecordBatch, task: FeatureTask) -> list[str | None]:
    missing: list[str | None] = [None] * batch.num_rows
    for col, fp in task.upstream_states.items():
        ok = pc.fill_null(pc.equal(batch.column(col), fp), False).to_pylist()
        upstream = col[len("_fk_"):]
        for i, good in enumerate(ok):
            if not good and missing[i] is None:
                missing[i] = f"upstream feature {upstream!r} has no value for this row"
    return missing


def compute_piece(ft: FeatureTask, logical: pa.RecordBatch):
    """What a worker process runs: the extractor on one batch (no Lance here); (values, errors)."""
    values, errors, _ = compute_piece_counted(ft, logical)
    return values, errors


def compute_piece_counted(ft: FeatureTask, logical: pa.RecordBatch):
    """`compute_piece`, plus the rows passed to the extractor (more than the batch when
    rows that raise are isolated by halving). A piece larger than the feature's batch size
    reaches the extractor in batches of that size."""
    counter = [0]
    ext = get_extractor(ft)
    if logical.num_rows <= ft.batch_size:
        values, errors = compute_rows(ext, ft, logical, counter)
        return values, errors, counter[0]
    parts = [compute_rows(ext, ft, logical.slice(start, ft.batch_size), counter)
             for start in range(0, logical.num_rows, ft.batch_size)]
    return (*joined(ft, parts), counter[0])


def joined(ft: FeatureTask, parts: list[tuple[dict[str, pa.Array], list[str | None] | None]]):
    """(values, errors) of consecutive computed parts as one: errors None when no row failed."""
    values = {c: pa.concat_arrays([p[0][c] for p in parts]) for c in ft.output_types}
    if all(p[1] is None for p in parts):
        return values, None
    return values, [e for p in parts for e in (p[1] if p[1] is not None else [None] * len(next(iter(p[0].values()))))]


def compute_batch(ft: FeatureTask, batch: pa.RecordBatch) -> tuple[dict[str, pa.Array], list[str | None]]:
    """The feature's values and a message per row (None: computed) for a batch holding its
    input columns and its upstream state columns: rows whose upstream value is missing are
    not passed to the extractor and fail with the reason."""
    n = batch.num_rows
    blocked = upstream_missing(batch, ft) if ft.upstream_states else None
    run_idx = None if blocked is None or not any(blocked) else [i for i, b in enumerate(blocked) if b is None]
    inputs = pa.record_batch([batch.column(c) for c in ft.inputs.values()], names=list(ft.inputs))
    values: dict[str, pa.Array] = {}
    errors = None
    if run_idx is None:
        values, errors = compute_piece(ft, inputs)
    elif run_idx:
        values, errors = compute_piece(ft, inputs.take(pa.array(run_idx, pa.int64())))
    messages: list[str | None] = list(errors) if errors is not None else [None] * n
    if run_idx is not None:  # spread the computed rows back; blocked rows keep their reason
        where: list[int | None] = [None] * n
        messages = list(blocked)
        for j, i in enumerate(run_idx):
            where[i] = j
            messages[i] = errors[j] if errors is not None else None
        index = pa.array(where, pa.int64())
        values = {c: values[c].take(index) if c in values else pa.nulls(n, t) for c, t in ft.output_types.items()}
    return values, messages
