"""Shared values by input inside the Geneva UDF: rows with equal inputs computed once.

The local engine keys rows in the driver (`featurekit.engine.reuse`); on Geneva the rows
reach an applier actor batch by batch, so the keying happens there, with the same keys
(`planning.inputkeys.input_hashes`, salted with the fingerprint) written to the same column
(`_fkin_<feature>`, in the feature's own data file): either engine reuses the other's values.

Per batch, each distinct key is looked up once:
- seen earlier by this actor (this backfill): its value or row error from the actor's memo
  (least recently used out past `budget_bytes`);
- held by a committed row with the feature's fingerprint (an earlier apply, either engine):
  read back from the table (`Reuse.read_back`: the 16-byte key index, then only those rows);
- else computed, once, with the row isolation of `compute_batch`.
Actors of one backfill do not share their memos: with N appliers an input can be computed
up to N times in one backfill (the default on a small machine is one applier).
"""
from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.engine.compute import FeatureTask, binary_inputs, compute_batch
from featurekit.engine.reuse import Reuse
from featurekit.planning.inputkeys import input_hashes

BUDGET = 1 << 30


_CURRENT: list = [None, None]  # [(feature, fingerprint, table), its ActorValues]: one feature an actor at a time


def actor_values(task: FeatureTask, ref) -> ActorValues:
    """This process's values for the feature, kept across the batches and fragments it runs
    (Geneva hands an applier a fresh copy of the UDF with each task)."""
    key = (task.feature, task.fingerprint, str(ref))
    if _CURRENT[0] != key:
        _CURRENT[:] = [key, ActorValues(task, ref)]
    return _CURRENT[1]


class ActorValues:
    """One actor's view of a feature's values by input key (built on the actor, never pickled)."""

    def __init__(self, task: FeatureTask, ref, budget_bytes: int = BUDGET):
        self.task, self.ref = task, ref  # a featurekit TableRef: options as the spec writes them (${VAR})
        self.budget = budget_bytes
        self.memo: OrderedDict[bytes, tuple[dict[str, pa.Array], str | None]] = OrderedDict()
        self.memo_bytes = 0
        self._committed: Reuse | None = None
        self._shape = task.extractor_cls(task.params)  # never set up: only its input types are asked
        self.computed = self.reused = 0

    def committed(self) -> Reuse:
        """The table's committed keys (read once per actor, at the version it first looks)."""
        if self._committed is None:
            import lance
            ds = lance.dataset(self.ref.root, storage_options=self.ref.storage_options)
            t = self.task
            self._committed = Reuse(SimpleNamespace(dataset=ds, uri=str(self.ref)), t.state_column, t.fingerprint,
                                    t.hash_column, dict(t.output_types), 0)
        return self._committed

    def keys(self, batch: pa.RecordBatch) -> pa.Array:
        t = self.task
        logical = pa.record_batch([batch.column(c) for c in t.inputs.values()], names=list(t.inputs))
        return input_hashes(binary_inputs(self._shape, logical), t.fingerprint)

    def compute(self, batch: pa.RecordBatch) -> tuple[dict[str, pa.Array], list[str | None], pa.Array]:
        """(values, message per row, key per row) for a batch of the UDF's input columns."""
        t = self.task
        keys = self.keys(batch)
        encoded = pc.dictionary_encode(keys)
        inverse = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        distinct = encoded.dictionary.to_pylist()
        first = np.empty(len(distinct), dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(inverse) - 1, -1, -1)

        sources: list[tuple[dict[str, pa.Array], int]] = [None] * len(distinct)  # per key: (arrays, row)
        errors: list[str | None] = [None] * len(distinct)
        look = []
        for d, key in enumerate(distinct):
            hit = self.memo.get(key)
            if hit is not None:
                self.memo.move_to_end(key)
                sources[d], errors[d] = (hit[0], 0), hit[1]
            else:
                look.append(d)
        found, values = self.committed().read_back([distinct[d] for d in look]) if look else ([], {})
        for j, i in enumerate(found):
            sources[look[i]] = (values, j)
        known = set(found)
        new = [d for i, d in enumerate(look) if i not in known]
        if new:
            computed, messages = compute_batch(t, batch.take(pa.array(first[new], pa.int64())))
            for j, d in enumerate(new):
                sources[d], errors[d] = (computed, j), messages[j]
                self._remember(distinct[d], {c: computed[c].slice(j, 1) for c in t.output_types}, messages[j])
        self.computed += len(new)
        self.reused += len(inverse) - len(new)
        for i, d in enumerate(found):
            self._remember(distinct[look[d]], {c: values[c].slice(i, 1) for c in t.output_types}, None)
        out = {c: _gather([sources[d] for d in inverse.tolist()], c, typ) for c, typ in t.output_types.items()}
        return out, [errors[d] for d in inverse.tolist()], keys

    def _remember(self, key: bytes, values: dict[str, pa.Array], error: str | None) -> None:
        copy = {c: pa.concat_arrays([v]) for c, v in values.items()}  # a one-row copy, not a view of the batch
        self.memo[key] = (copy, error)
        self.memo_bytes += sum(v.nbytes for v in copy.values())
        while self.memo_bytes > self.budget and len(self.memo) > 1:
            _, (old, _) = self.memo.popitem(last=False)
            self.memo_bytes -= sum(v.nbytes for v in old.values())


def _gather(rows: list[tuple[dict[str, pa.Array], int]], column: str, typ: pa.DataType) -> pa.Array:
    """One array from (arrays, row) pairs: one take over the distinct source arrays."""
    arrays: list[pa.Array] = []
    offset: dict[int, int] = {}
    index = np.empty(len(rows), dtype=np.int64)
    start = 0
    for i, (source, row) in enumerate(rows):
        arr = source[column]
        at = offset.get(id(arr))
        if at is None:
            at = offset[id(arr)] = start
            arrays.append(arr.cast(typ) if not arr.type.equals(typ) else arr)
            start += len(arr)
        index[i] = at + row
    if not arrays:
        return pa.nulls(0, typ)
    return pa.concat_arrays(arrays).take(pa.array(index, pa.int64()))


def todo_rows(ds, where: str) -> pa.Array:
    """Row addresses of the rows a backfill is about to compute (DataReplacement keeps them)."""
    return ds.to_table(columns=[], filter=where, with_row_address=True).column("_rowaddr").combine_chunks()


def shared_counts(ds, task: FeatureTask, todo: pa.Array) -> tuple[int, int]:
    """(distinct, reused) of a finished backfill, as the local engine counts them, read back from
    the keys it committed: `todo` the rows it was to compute; distinct = their distinct input
    keys; reused = those rows minus the keys computed, a key being computed unless a row outside
    `todo` already held it with the feature's fingerprint (an earlier apply, either engine)."""
    table = ds.to_table(columns=[task.hash_column, task.state_column], with_row_address=True)
    mine = pc.is_in(table.column("_rowaddr"), value_set=todo)
    keys = table.column(task.hash_column)
    ours = pc.drop_null(keys.filter(mine))
    distinct = pc.unique(ours)
    held = pc.and_(pc.invert(mine), pc.equal(table.column(task.state_column), task.fingerprint))
    known = pc.unique(pc.drop_null(keys.filter(pc.fill_null(held, False))))
    computed = len(distinct) - pc.sum(pc.is_in(distinct, value_set=known)).as_py() if len(known) else len(distinct)
    return len(distinct), len(ours) - computed
