"""The Geneva UDF of one feature: featurekit's own per-batch function, values and state in one struct.

Geneva calls it on its applier actors with the rows its `where` selected (featurekit's todo
filter). It runs exactly what a local-engine worker runs, `compute.compute_batch` (a failing
row is isolated by halving, the extractor is built and set up once per actor on first use,
since Geneva 0.17 never calls `setup()`), and returns a struct of the feature's columns plus
its state column (`<fp>` or `<fp>!<error>`), which Geneva unpacks into those sibling columns
and writes as one data file per fragment (see `columns.py`). A feature that shares values by
input also returns each row's input key (`_fkin_<feature>`, in the same file): rows with equal
inputs are computed once (`sharing.ActorValues`).

No `from __future__ import annotations` here: Geneva reads `__call__`'s annotations to
recognise an Array UDF (`*columns: pa.Array -> pa.Array`).
"""
import dataclasses

import pyarrow as pa

from featurekit.engine.compute import FeatureTask, compute_batch
from featurekit.planning.inputkeys import HASH_TYPE
from featurekit.table.metadata import FAILED_SEP


def udf_inputs(task: FeatureTask) -> list[str]:
    """Columns Geneva reads and hands to the UDF, in order.

    The state column is among them although the UDF does not need its values: Geneva keys a
    checkpoint by the data files of the UDF's inputs, so a committed fragment (whose state
    file is new) is computed afresh by the next apply (a failed row is retried), while an
    interrupted one reuses its checkpoints."""
    return list(dict.fromkeys([*task.inputs.values(), *task.upstream_states, task.state_column]))


def output_columns(task: FeatureTask) -> list[str]:
    """The columns the UDF fills: the feature's, its state column, its input-key column if any."""
    return [*task.output_types, task.state_column] + ([task.hash_column] if task.hash_column else [])


def struct_type(task: FeatureTask) -> pa.StructType:
    """The UDF's output: the feature's columns, its state column, then its input keys (the layout
    of the local engine's files, so either engine can replace the other's)."""
    return pa.struct([pa.field(c, t) for c, t in task.output_types.items()]
                     + [pa.field(task.state_column, pa.string())]
                     + ([pa.field(task.hash_column, HASH_TYPE)] if task.hash_column else []))


class FeatureUDF:
    """Picklable callable: the FeatureTask travels by value, the extractor class by reference."""

    def __init__(self, task: FeatureTask, ref=None):
        self.task = task
        # the table's TableRef, where committed values are read back: a fresh copy, so that it holds the
        # storage options as the spec writes them (${VAR}, expanded on the applier), never a copy the
        # driver expanded (Geneva stores the pickled UDF in the table's `_udfs/` folder)
        self.ref = None if ref is None else dataclasses.replace(ref)
        self.columns = udf_inputs(task)
        self.type = struct_type(task)

    def __setstate__(self, state: dict) -> None:
        # unpickled in a Geneva job's processes (its driver task, each applier): carry the fix for its
        # per-row selected-rows path, and keep a branch's new files under the branch's root
        self.__dict__.update(state)
        from .upstream import arrow_selected_rows, own_root_placement
        arrow_selected_rows()
        own_root_placement()

    def __call__(self, *columns: pa.Array) -> pa.Array:
        ft = self.task
        batch = pa.record_batch([_array(c) for c in columns], names=self.columns)
        keys = []
        if ft.hash_column:
            from .sharing import actor_values
            values, messages, key = actor_values(ft, self.ref).compute(batch)
            keys = [key]
        else:
            values, messages = compute_batch(ft, batch)
        state = pa.array([ft.fingerprint if m is None else ft.fingerprint + FAILED_SEP + m for m in messages], pa.string())
        return pa.StructArray.from_arrays([values[c] for c in ft.output_types] + [state] + keys, fields=list(self.type))


def _array(column) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
