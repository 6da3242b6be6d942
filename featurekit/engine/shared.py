"""Shared values by input, decided per feature and done by columns: which of the ways to
give rows with equal inputs one value pays for this feature.

- Inputs of small values (text, numbers): the inputs of every row to compute are read once,
  grouped by exact equality in Arrow (`inputkeys.distinct_rows`), and each distinct input is
  computed once (or read back from a row an earlier apply computed with the same
  fingerprint); fragments then take their rows' values by group, with no work per row in
  Python (`SharedValues`). Whether that pays is measured: the extractor's time per row on a
  sample of the distinct inputs against the cost of keying them. When the extractor is
  cheap, keying costs more than it saves and the feature is computed row by row, without
  input keys (`decide` then returns only the sampled rows' values, `shares` False).
- Inputs of bulky values (image bytes, vectors): never read up front; keyed piece by piece
  with the memo of `reuse.Reuse` (worth it: such extractors cost milliseconds a row).
An extractor's `reuse_values = True` forces sharing, `False` forbids it.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..planning.inputkeys import HASH_TYPE, distinct_rows, input_hashes, key_seconds
from ..table.metadata import sql_quote
from .compute import FeatureTask, binary_inputs, compute_piece_counted, get_extractor, joined

SAMPLE_ROWS = 1024        # distinct inputs timed to decide
TIMED_PARTS = 4           # ... in this many parts (of at least TIMED_ROWS rows), the fastest part's time a row taken
TIMED_ROWS = 256
PAYS = 0.95               # share when grouping, keying and computing once per distinct input costs below
                          # this share of computing every row (the rest: what the estimate may miss)
ESTIMATE_ROWS = 2048      # random rows that estimate how often inputs repeat ...
GATED_ROWS = 65_536       # ... before this many rows to compute or more are read and grouped
GROUP_SECONDS = 5e-7      # ... reading and grouping a row costs about this (1M short strings: ~0.35 s here;
                          # timing the 2,048 sampled rows measured call overheads, not rows: up to 10x this)
CHEAP = 2.0               # never share when a row computes in less than this many times its keying


@dataclass
class SharedPlan:
    """A piece's rows to run: those whose value is known (by group) and those to compute."""

    groups: np.ndarray            # per row to run: its group, -1 where the value is not known yet
    hashes: pa.Array              # per row to run: its input key (NULL when values are not shared)
    compute: list[int] = field(default_factory=list)  # rows the extractor computes


class SharedValues:
    """Values known before the fragments are written, by row address: every row to compute
    when values are shared (`shares`), or only the rows sampled to decide (their values are
    not computed twice); the other rows are computed as usual."""

    def __init__(self, addrs: np.ndarray, groups: np.ndarray, keys: pa.Array | None, values: dict[str, pa.Array],
                 errors: list[str | None] | None, computed: int, passed: int):
        order = np.argsort(addrs, kind="stable")
        self.addrs, self.groups = addrs[order], groups[order]
        self.keys, self.values, self.errors = keys, values, errors
        self.shares = keys is not None
        self.seen = range(len(next(iter(values.values()))) if values else 0)  # distinct inputs
        self.computes = computed         # distinct inputs the extractor computed (the rest read back)
        self.passed = passed             # rows passed to the extractor (halving a raising batch passes rows again)
        self.rows = 0
        self.lock = threading.Lock()     # fragments may be planned from several threads

    def covers(self, fragment_id: int) -> bool:
        """Whether rows of this fragment take values from here (all do when values are shared;
        else only a sampled fragment's): the other fragments compute as if nothing were shared."""
        return self.shares or bool(np.any((self.addrs >> np.uint64(32)) == np.uint64(fragment_id)))

    def known_rows(self, fragment_id: int) -> np.ndarray | None:
        """When values are shared, the row addresses of this fragment's rows to compute (every
        one's value is known here, so the fragment needs no read of its inputs); else None."""
        if not self.shares:
            return None
        lo, hi = np.searchsorted(self.addrs, [np.uint64(fragment_id) << np.uint64(32),
                                              np.uint64(fragment_id + 1) << np.uint64(32)])
        return self.addrs[lo:hi]

    def committed(self, fragment_ids) -> None:
        """Nothing to learn from a commit: what is known here was known before the fragments."""

    def plan(self, logical: pa.RecordBatch, fingerprint: str, addrs: np.ndarray) -> SharedPlan:
        at = np.minimum(np.searchsorted(self.addrs, addrs), max(0, len(self.addrs) - 1))
        known = self.addrs[at] == addrs if len(self.addrs) else np.zeros(len(addrs), bool)
        groups = np.where(known, self.groups[at] if len(self.addrs) else 0, -1)
        with self.lock:
            self.rows += int(known.sum())
        if self.shares:
            if not known.all():
                raise RuntimeError("featurekit: a row to compute was not among the rows read to share values; "
                                   "run apply again")
            hashes = self.keys.take(pa.array(groups, pa.int64()))
        else:
            hashes = pa.nulls(len(addrs), HASH_TYPE)
        return SharedPlan(groups, hashes, np.flatnonzero(~known).tolist())

    def resolve(self, plan: SharedPlan, values, errors, addrs) -> tuple[dict[str, pa.Array], list[str | None] | None]:
        """Every row to run: known values by group, computed ones (`values`, `errors`) in between."""
        n, k = len(plan.groups), len(plan.compute)
        known = len(next(iter(self.values.values()))) if self.values else 0
        position = np.where(plan.groups >= 0, plan.groups, 0)
        if k:
            position[np.asarray(plan.compute, dtype=np.int64)] = known + np.arange(k)
        take = pa.array(position, pa.int64())
        out = {}
        for c, v in self.values.items():
            parts = [v] + ([values[c].cast(v.type)] if k else [])
            out[c] = pa.concat_arrays(parts).take(take) if n else v.slice(0, 0)
        if self.errors is None and errors is None:
            return out, None
        mine = self.errors or [None] * known
        theirs = errors or [None] * k
        per_row = [mine[g] if g >= 0 else None for g in plan.groups.tolist()]
        for j, i in enumerate(plan.compute):
            per_row[i] = theirs[j]
        return out, (per_row if any(e is not None for e in per_row) else None)


def decide(task: FeatureTask, ds, where: str, forced: bool, read_back, first_fragment: int | None, *,
           compute, holds_none) -> tuple[SharedValues | None, str]:
    """How rows with equal inputs get one value. Auto (not `forced`): the first rows to compute
    are grouped and their distinct inputs computed, timing the extractor against keying; when a
    row computes in less than `CHEAP` times its keying, only those rows' values are kept
    (computed once, not shared further; the sample is the first fragment's rows to compute, at
    most `SAMPLE_ROWS`, so work is committed as often as without it). On a large table the share
    of distinct inputs is then estimated from random rows (`_estimated_share`), and when even
    that share would not pay, the rows compute as usual without reading them all. Else every
    row to compute is read and grouped; when so few inputs repeat that grouping and keying them costs more
    than computing every row would (`PAYS`), the rows compute as usual (sampled rows kept);
    else each distinct input is computed once (or read back). `read_back`:
    keys -> (positions of the keys some committed row holds with this fingerprint, their values).
    `compute`: pieces of distinct inputs -> their results in order (`Engine.compute_pieces`).
    `holds_none`: () -> whether no committed row holds a value with
    this fingerprint; then nothing can be read back, and the distinct inputs are keyed while
    their values compute (in worker processes, the keying overlaps them)."""
    columns = list(dict.fromkeys(task.inputs.values()))
    upstream = " AND ".join(f"{c} = {sql_quote(fp)}" for c, fp in task.upstream_states.items())
    filters = " AND ".join(f"({x})" for x in (where, upstream) if x) or None
    seed, per_row, per_key = None, None, 0.0
    if not forced:  # a first look at a few rows: an extractor as cheap as keying never shares
        scan = ds.get_fragment(first_fragment) if first_fragment is not None else ds
        head = scan.to_table(columns=columns, filter=filters, limit=SAMPLE_ROWS, with_row_address=True)
        seed, per_row, per_key = _sample(task, head)
        if per_row is not None and per_row < CHEAP * per_key:
            return seed, (f"a row computes in {per_row * 1e6:.1f} us, keying it costs {per_key * 1e6:.1f} us: "
                          "sharing values cannot pay")
        share = _estimated_share(task, ds, columns, filters) if per_row is not None else None
        if share is not None and GROUP_SECONDS + share * (per_key + per_row) > PAYS * per_row:
            return seed, (f"about {share:.0%} of the inputs distinct (estimated on {ESTIMATE_ROWS:,} random rows), a "
                          f"row computes in {per_row * 1e6:.1f} us and keying costs {per_key * 1e6:.1f} us: "
                          "sharing values would not pay")
    t0 = time.perf_counter()
    table = ds.to_table(columns=columns, filter=filters, with_row_address=True)
    grouped = _grouped(task, table)
    if grouped is None:
        return seed, "inputs that cannot be grouped by value"
    first, groups, distinct = grouped
    if per_row is not None and table.num_rows:
        # now that the distinct inputs are known: computing each once (and keying it) against every row
        per_group = (time.perf_counter() - t0) / table.num_rows
        share = len(first) / table.num_rows
        if per_group + share * (per_key + per_row) > PAYS * per_row:
            return seed, (f"{len(first):,} distinct inputs in {table.num_rows:,} rows, a row computes in "
                          f"{per_row * 1e6:.1f} us and keying costs {per_key * 1e6:.1f} us: sharing values would not pay")
    addrs = table.column("_rowaddr").to_numpy()
    values = _Values(task, distinct, read_back, compute)
    fresh = holds_none()
    if not fresh:
        values.key(0, len(first))
    if seed is not None:  # the sampled rows' values: not computed again
        order = np.argsort(addrs, kind="stable")
        values.seed(seed, groups[order[np.searchsorted(addrs[order], seed.addrs)]])
    values.fill(0, len(first), key_while_computing=fresh)
    out, errors = values.result()
    return SharedValues(addrs, groups, values.keys(), out, errors, values.computed, values.passed), ""


def _sample(task: FeatureTask, head: pa.Table) -> tuple[SharedValues | None, float | None, float]:
    """The sampled rows' values (their distinct inputs computed once), and the seconds a row
    takes to compute and to key."""
    if not head.num_rows:
        return None, None, 0.0
    grouped = _grouped(task, head)
    if grouped is None:  # not groupable by value: every sampled row is its own input
        every = np.arange(head.num_rows)
        grouped = every, every, pa.table({name: head.column(col) for name, col in task.inputs.items()})
    first, groups, distinct = grouped
    per_key = key_seconds(distinct, task.fingerprint)
    batch = binary_inputs(get_extractor(task), pa.record_batch([c.combine_chunks() for c in distinct.columns],
                                                               names=distinct.column_names))
    # timed in a few parts, the fastest taken (as for keying): a busy machine only ever adds time,
    # and one pause must not decide against sharing (or for it)
    step = max(TIMED_ROWS, -(-batch.num_rows // TIMED_PARTS))
    parts, per_row, passed = [], None, 0
    for at in range(0, batch.num_rows, step):
        part = batch.slice(at, step)
        t0 = time.perf_counter()
        values, errors, n = compute_piece_counted(task, part)
        seconds = (time.perf_counter() - t0) / part.num_rows
        per_row = seconds if per_row is None else min(per_row, seconds)
        parts.append((values, errors))
        passed += n
    values, errors = joined(task, parts)
    seed = SharedValues(head.column("_rowaddr").to_numpy(), groups, None, values, errors, len(first), passed)
    return seed, per_row, per_key


def _estimated_share(task: FeatureTask, ds, columns: list[str], filters: str | None) -> float | None:
    """Before reading and grouping every row to compute (a third of a microsecond a row, which a
    cheap extractor over inputs that barely repeat never earns back): the share of distinct
    inputs estimated from random rows of the table, by the pairs of equal inputs among them
    (with each input in r rows, a pair of random rows is equal with probability (r-1)/(N-1));
    None for a table small enough to group outright (reading and grouping a row is priced at
    `GROUP_SECONDS`). An estimate from the whole table, not only the rows to compute: those are most
    of it whenever there are enough of them to estimate."""
    n = ds.count_rows()
    if n < GATED_ROWS or ds.count_rows(filter=filters) < GATED_ROWS:
        return None
    rows = sorted(random.Random(n).sample(range(n), ESTIMATE_ROWS))
    grouped = _grouped(task, ds.take(rows, columns=columns))
    if grouped is None:
        return None
    counts = np.bincount(grouped[1]).astype(np.float64)
    pairs = float((counts * (counts - 1) / 2).sum())
    repeats = 1 + 2 * pairs * (n - 1) / (ESTIMATE_ROWS * (ESTIMATE_ROWS - 1))
    return 1 / repeats


def _grouped(task: FeatureTask, table: pa.Table) -> tuple[np.ndarray, np.ndarray, pa.Table] | None:
    """The rows of `table` grouped by the feature's inputs: (each group's first row, each row's
    group, the inputs of each group by logical name), or None when they cannot be grouped by value."""
    logical = pa.table({name: table.column(col) for name, col in task.inputs.items()})
    grouped = distinct_rows([logical.column(name).combine_chunks() for name in sorted(logical.column_names)],
                            table.num_rows)
    if grouped is None:
        return None
    first, groups = grouped
    return first, groups, logical.take(pa.array(first, pa.int64()))


class _Values:
    """The values of the distinct inputs, filled range by range: keyed, read back where an
    earlier apply computed them, the rest computed (row errors isolated as the engine does)."""

    def __init__(self, task: FeatureTask, distinct: pa.Table, read_back, compute):
        self.task, self.distinct, self.read_back, self.compute = task, distinct, read_back, compute
        self.ext = get_extractor(task)
        self.key_parts: list[pa.Array] = []
        self.parts: dict[str, list[pa.Array]] = {c: [] for c in task.output_types}
        self.order: list[np.ndarray] = []   # per part: the distinct inputs it holds
        self.errors: dict[int, str] = {}
        self.done: set[int] = set()          # distinct inputs whose values are known already
        self.computed = self.passed = 0

    def key(self, start: int, stop: int) -> None:
        if stop > start:
            self.key_parts.append(input_hashes(self.distinct.slice(start, stop - start), self.task.fingerprint))

    def keys(self) -> pa.Array:
        return pa.concat_arrays(self.key_parts) if self.key_parts else pa.array([], HASH_TYPE)

    def seed(self, sample: SharedValues, groups: np.ndarray) -> None:
        """Distinct inputs whose values the sample computed (`groups`: each sampled row's distinct
        input here, in the sample's order): taken from it, not computed again."""
        if not len(groups):
            return
        rows = np.asarray(sample.groups, dtype=np.int64)  # per sampled row: its group in the sample
        taken, at = np.unique(groups, return_index=True)   # per distinct input seen: one sampled row
        self._add(taken, {c: v.take(pa.array(rows[at], pa.int64())) for c, v in sample.values.items()})
        for i, g in zip(taken.tolist(), rows[at].tolist()):
            if sample.errors is not None and sample.errors[g] is not None:
                self.errors[i] = sample.errors[g]
        self.done.update(taken.tolist())
        self.computed += sample.computes
        self.passed += sample.passed

    def fill(self, start: int, stop: int, key_while_computing: bool = False) -> None:
        """Values of distinct inputs start..stop-1 not known yet: read back, else computed.
        `key_while_computing`: nothing can be read back (no committed row holds this
        fingerprint) and start..stop-1 are not keyed yet: they are keyed in order, a slice
        after each piece's values arrive, while the next pieces compute."""
        if stop <= start:
            return
        wanted = np.arange(start, stop, dtype=np.int64)
        if self.done:
            wanted = wanted[~np.isin(wanted, np.fromiter(self.done, np.int64, len(self.done)))]
        if key_while_computing:
            found, fetched = [], {}
        else:
            found, fetched = self.read_back(self.keys().take(pa.array(wanted)).to_pylist())
        found = np.asarray(found, dtype=np.int64)
        if len(found):
            self._add(wanted[found], fetched)
        todo = np.delete(wanted, found)
        chunks = [todo[at:at + self.task.batch_size] for at in range(0, len(todo), self.task.batch_size)]
        pieces = [binary_inputs(self.ext, self.distinct.take(pa.array(rows, pa.int64())).combine_chunks().to_batches()[0])
                  for rows in chunks]
        steps = iter(np.array_split(np.arange(start, stop), max(1, len(pieces))) if key_while_computing else ())
        for rows, (values, errors, passed) in zip(chunks, self.compute(pieces), strict=True):
            self.passed += passed
            self._add(rows, values)
            for i, e in zip(rows.tolist(), errors or []):
                if e is not None:
                    self.errors[i] = e
            if (step := next(steps, None)) is not None and len(step):
                self.key(int(step[0]), int(step[-1]) + 1)
        for step in steps:  # no pieces (every value known from the sample): all keyed here
            if len(step):
                self.key(int(step[0]), int(step[-1]) + 1)
        self.computed += len(todo)

    def _add(self, rows: np.ndarray, values: dict[str, pa.Array]) -> None:
        self.order.append(rows)
        for c in self.task.output_types:
            self.parts[c].append(values[c])

    def result(self) -> tuple[dict[str, pa.Array], list[str | None] | None]:
        n = self.distinct.num_rows
        position = np.zeros(n, dtype=np.int64)
        if self.order:
            rows = np.concatenate(self.order)
            position[rows] = np.arange(len(rows))
        take = pa.array(position, pa.int64())
        out = {c: (pa.concat_arrays([p.cast(t) for p in self.parts[c]]) if self.parts[c] else pa.nulls(0, t)).take(take)
               for c, t in self.task.output_types.items()}
        if not self.errors:
            return out, None
        return out, [self.errors.get(i) for i in range(n)]
