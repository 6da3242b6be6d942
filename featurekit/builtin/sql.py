"""``sql``: a feature defined by a Lance/DataFusion SQL expression over the row's columns.

    word_len:
      extractor: sql
      params: {expr: "length(question) + 1", type: int32}

The columns the expression names are its inputs (no ``inputs:`` needed). Lance evaluates
the expression, never Python; `validate` plans it against the input columns' types, and the
fingerprint covers the expression, so editing it recomputes the column.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from pydantic import Field, field_validator

from ..plugins.extractor import Extractor, Resources
from ..plugins.hookspecs import hookimpl
from ..spec.sql import parse, runtime_message, sample_tables, sql_columns, syntax_problem

TYPES = {
    "bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(), "string": pa.string(), "binary": pa.binary(),
    "date32": pa.date32(), "timestamp": pa.timestamp("us"),
}
_NAMES = itertools.count()


class SqlExpression(Extractor):
    """A column computed by a SQL expression over the row's columns, evaluated by Lance."""

    name = "sql"
    reuse_values = False  # evaluated by Lance/DataFusion: cheaper than hashing its inputs
    version = "1"
    inputs_from_params = True
    resources = Resources(batch_size=65536, threads=2)

    class Params(Extractor.Params):
        expr: str = Field(description="a Lance/DataFusion SQL expression, e.g. length(question) + 1")
        type: str = Field(description="the output's Arrow type: " + ", ".join(TYPES))

        @field_validator("type")
        @classmethod
        def _known(cls, value: str) -> str:
            if value not in TYPES:
                raise ValueError(f"unknown type {value!r}; one of: {', '.join(TYPES)}")
            return value

        @field_validator("expr")
        @classmethod
        def _one(cls, value: str) -> str:
            error = syntax_problem(value, "expression")
            if error:
                raise ValueError(error)
            return value

    def input_types(self) -> Mapping[str, Any]:
        return {col: "any" for col in sql_columns(self.params.expr)}

    def output_type(self) -> pa.DataType:
        return TYPES[self.params.type]

    def check_inputs(self, types: Mapping[str, pa.DataType]) -> str | None:
        empty = pa.schema([pa.field(n, pa.string() if pa.types.is_null(t) else t) for n, t in types.items()]).empty_table()
        try:
            out = self._evaluate(empty)
        except (ValueError, OSError) as exc:
            from ..spec.sql import lance_message
            return lance_message(str(exc)).replace("invalid SQL filter", "invalid SQL expression")
        if not _converts(out.type, self.output_type()):
            return f"the expression gives {out.type}, which does not convert to {self.params.type}"
        failures = []
        for table in sample_tables(dict(types)):  # a few rows of ordinary values: fails on all -> every apply fails
            try:
                self._evaluate(table)
                return None
            except (ValueError, OSError) as exc:
                failures.append(exc)
        if failures:
            return (f"invalid SQL expression: {self.params.expr} fails when evaluated on rows of ordinary values of "
                    f"its columns' types, so it would fail every apply: {runtime_message(str(failures[0]))}")
        return None

    def _evaluate(self, table: pa.Table) -> pa.Array:
        import lance
        if not table.num_columns:  # an expression over no column: one value per row still
            table = pa.table({"__rows": pa.nulls(table.num_rows, pa.int8())})
        ds = lance.write_dataset(table, f"memory://featurekit-sql-{next(_NAMES)}")
        return ds.to_table(columns={"value": parse(self.params.expr).sql}).column("value").combine_chunks()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return self._evaluate(pa.Table.from_batches([batch])).cast(self.output_type())


def _converts(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether values of `source` convert to `target` without parsing text or losing kind."""
    t = pa.types
    if source.equals(target) or t.is_null(source):
        return True
    numeric = (t.is_integer, t.is_floating, t.is_boolean)
    if any(f(source) for f in numeric) and any(f(target) for f in numeric):
        return True
    for kind in ((t.is_string, t.is_large_string), (t.is_binary, t.is_large_binary, t.is_string),
                 (t.is_date, t.is_timestamp)):
        if any(f(target) for f in kind) and any(f(source) for f in kind):
            return True
    return False


@hookimpl
def featurekit_register_extractors():
    return [SqlExpression]
