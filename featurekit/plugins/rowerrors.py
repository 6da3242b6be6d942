"""`featurekit.RowErrors`: how an extractor reports rows it could not compute, and keeps the rest.

Why: an extractor that raises on one bad row makes featurekit find that row by halving the
batch and calling again (a GPU batch of 16 with one undecodable image costs ~8 more calls).
An extractor that knows which rows failed returns them instead, and every good row is
computed exactly once:

    def __call__(self, batch):
        return featurekit.RowErrors.map(self.one, batch.column("image").to_pylist(), pa.uint64())

or, for a batched model call that decodes first and runs the model on the good rows only:

    values, errors = ..., [None, "cannot decode image: ...", None]
    return featurekit.RowErrors(values, errors)

`values` has one entry per row (at a failed row: anything in a Python list, a value of the
output type in an array; it is stored as NULL) in any form `__call__` may return (an array, a list, a RecordBatch or a dict of arrays for several
outputs); `errors` has one entry per row: None for a row computed, or a message (a string
or an exception) for a row that failed. Failed rows are recorded in the state column as
any row error and retried by the next apply.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


class RowErrors:
    """Values for every row, and per row an error (str or exception) or None."""

    __slots__ = ("values", "errors")

    def __init__(self, values: Any, errors: Sequence[str | BaseException | None]):
        self.values = values
        self.errors = list(errors)

    @classmethod
    def map(cls, fn: Callable[[Any], Any], items: Iterable[Any], type=None) -> RowErrors:  # noqa: A002
        """Call `fn` on each item; an item that raises gets None as value and its exception
        as error. `type` (an Arrow type) makes the values an array of that type."""
        values, errors = [], []
        for item in items:
            try:
                values.append(fn(item))
                errors.append(None)
            except Exception as exc:  # the row's failure, reported instead of raised
                values.append(None)
                errors.append(exc)
        if type is not None:
            import pyarrow as pa
            values = pa.array(values, type)
        return cls(values, errors)

    @property
    def failed(self) -> int:
        return sum(e is not None for e in self.errors)

    def __repr__(self) -> str:
        return f"RowErrors({len(self.errors)} rows, {self.failed} failed)"
