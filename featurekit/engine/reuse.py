"""Content-addressed compute: a feature's extractor runs once per distinct input.

Each row's inputs are keyed by `inputhash.input_hashes` (BLAKE2b-128 of the input values,
image bytes included), and the key is stored beside the value in the column
``_fkin_<feature>`` (fixed_size_binary(16), in the feature's own data file: no extra
version, no extra file). When a piece of rows is about to be computed, each row's key is
looked up:

- a key first seen in this piece: the row goes to the extractor (once per key);
- a key computed earlier in this apply: its value (or its row error) is kept in memory
  (`memo`, bounded by `budget_bytes`, least recently used first out; a value still needed
  by a piece in flight is pinned);
- a key some committed row holds with the feature's current fingerprint: that row's value
  is read from the table (only the matching rows: a Lance take by row address, so the
  1.6 MB hiddens of other rows are never read).

The index of committed keys is read once per feature run (the 16-byte key column and row
addresses of the rows computed with this fingerprint, ~24 bytes a row in memory) and grows
with the rows this apply commits, so a value evicted from memory is read back instead of
computed again. A value evicted before its fragment was committed is computed again (the
only case an input is computed twice in one apply; `recomputed` counts it).

Row errors are shared within an apply like values. Failed rows are never in the committed
index: the next apply retries them (and shares the retry's outcome).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..table.metadata import sql_quote

DEFAULT_BUDGET = 1 << 30
ADDR_CHUNK = 5000  # row addresses per Lance filter
SMALL_VALUE = 4096  # bytes a row below which memo entries are views into the computed batch


@dataclass
class _Entry:
    values: dict[str, pa.Array]   # one-row arrays, copied (not views into a batch)
    error: str | None
    pins: int = 0
    nbytes: int = 0


@dataclass
class ReusePlan:
    """How the rows of one piece get their values."""

    keys: list[bytes]                                # per row to run
    compute: list[int] = field(default_factory=list)  # rows passed to the extractor
    source: list[tuple[str, Any]] = field(default_factory=list)  # ("new", j) | ("memo", key) | ("table", addr)

    @property
    def hashes(self) -> pa.Array:
        from ..planning.inputkeys import HASH_TYPE
        return pa.array(self.keys, HASH_TYPE)


class Reuse:
    """The driver-side memory of one feature run: which inputs have values, and where."""

    def __init__(self, table, state_column: str, fingerprint: str, column: str,
                 output_types: dict[str, pa.DataType], budget_bytes: int = DEFAULT_BUDGET):
        self.table = table  # the apply's `Table`: its current version has every committed row
        self.state_column, self.fingerprint, self.column = state_column, fingerprint, column
        self.output_types = output_types
        self.budget = budget_bytes
        self.memo: OrderedDict[bytes, _Entry] = OrderedDict()
        self.memo_bytes = 0
        self.inflight: dict[bytes, int] = {}     # key -> pins by later pieces, while its piece computes
        self.pending: dict[int, dict[bytes, int]] = {}  # fragment -> key -> row address, not committed yet
        self.extra: dict[bytes, int] = {}        # key -> row address committed by this apply
        self._index: tuple[np.ndarray, np.ndarray] | None = None
        self.seen: set[bytes] = set()
        self.rows = self.computes = self.from_memo = self.from_table = self.recomputed = 0

    # -- the committed index ------------------------------------------------------------------
    def _load_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys and row addresses of committed rows computed with this fingerprint, sorted."""
        if self._index is None:
            keys, addrs = np.zeros(0, dtype="S16"), np.zeros(0, dtype=np.uint64)
            ds = self.table.dataset
            if ds is not None and self.column in ds.schema.names:
                where = f"{self.state_column} = {sql_quote(self.fingerprint)} AND {self.column} IS NOT NULL"
                table = ds.to_table(columns=[self.column], filter=where, with_row_address=True)
                if table.num_rows:
                    col = table.column(self.column).combine_chunks()
                    keys = np.frombuffer(col.buffers()[1], dtype="S16")[col.offset:col.offset + len(col)]
                    addrs = table.column("_rowaddr").to_numpy()
                    order = np.argsort(keys, kind="stable")
                    keys, addrs = keys[order], addrs[order]
            self._index = (keys, addrs)
        return self._index

    def _lookup(self, key: bytes) -> int | None:
        if key in self.extra:
            return self.extra[key]
        keys, addrs = self._load_index()
        i = int(np.searchsorted(keys, key))
        # numpy's S16 drops trailing zero bytes when it hands an item out: compare likewise
        # (stripping is one-to-one on 16-byte keys)
        if i < len(keys) and keys[i] == key.rstrip(b"\x00"):
            return int(addrs[i])
        return None

    def committed(self, fragment_ids) -> None:
        """Rows written to these fragments are now readable from the table."""
        for fragment_id in fragment_ids:
            self.extra.update(self.pending.pop(fragment_id, {}))

    # -- one piece ------------------------------------------------------------------------------
    def classify(self, hashes: pa.Array) -> ReusePlan:
        """Decide, per row, where its value comes from; registers the keys this piece computes."""
        plan = ReusePlan(hashes.to_pylist())
        local: dict[bytes, int] = {}
        pinned: set[bytes] = set()
        for i, key in enumerate(plan.keys):
            self.rows += 1
            if key in local:
                plan.source.append(("new", local[key]))
                continue
            entry = self.memo.get(key)
            if entry is not None or key in self.inflight:
                if key not in pinned:  # one pin per piece and key: `resolve` releases one
                    pinned.add(key)
                    if entry is not None:
                        entry.pins += 1
                        self.memo.move_to_end(key)
                    else:
                        self.inflight[key] += 1
                plan.source.append(("memo", key))
                self.from_memo += 1
                continue
            addr = self._lookup(key)
            if addr is not None:
                plan.source.append(("table", addr))
                self.from_table += 1
                continue
            if key in self.seen:
                self.recomputed += 1  # evicted before its fragment was committed
            self.seen.add(key)
            local[key] = len(plan.compute)
            plan.compute.append(i)
            self.inflight[key] = 0
            plan.source.append(("new", local[key]))
        self.seen.update(plan.keys)
        self.computes += len(plan.compute)
        return plan

    def resolve(self, plan: ReusePlan, values: dict[str, pa.Array], errors: list[str | None] | None,
                addrs: list[int]) -> tuple[dict[str, pa.Array], list[str | None] | None]:
        """Values and errors for every row of the piece, from what was computed for its new
        keys, the memo and the table. `addrs`: the rows' addresses (for the index)."""
        n = len(plan.compute)
        # small values are kept as views into the piece's arrays (no copy); large ones (hiddens)
        # are copied, so one kept row never holds a whole batch of them in memory
        copy = {c: bool(n) and values[c].nbytes > SMALL_VALUE * n for c in self.output_types}
        width = {c: max(1, values[c].nbytes // n) if n else 0 for c in self.output_types}
        for j, i in enumerate(plan.compute):
            key = plan.keys[i]
            error = errors[j] if errors is not None else None
            one = {c: values[c].take(pa.array([j], pa.int64())) if copy[c] else values[c].slice(j, 1)
                   for c in self.output_types}
            entry = _Entry(one, error, pins=self.inflight.pop(key, 0), nbytes=sum(width.values()))
            self._remember(key, entry)
            if error is None:
                self.pending.setdefault(addrs[i] >> 32, {})[key] = addrs[i]
        memo_keys = list(dict.fromkeys(k for kind, k in plan.source if kind == "memo"))
        table_addrs = list(dict.fromkeys(a for kind, a in plan.source if kind == "table"))
        fetched = self._read(table_addrs)
        k = len(plan.compute)
        memo_pos = {key: k + n for n, key in enumerate(memo_keys)}
        table_pos = {a: k + len(memo_keys) + n for n, a in enumerate(table_addrs)}
        index, out_errors = [], []
        for kind, ref in plan.source:
            if kind == "new":
                index.append(ref)
                out_errors.append(errors[ref] if errors is not None else None)
            elif kind == "memo":
                index.append(memo_pos[ref])
                entry = self.memo.get(ref)
                out_errors.append(entry.error if entry is not None else
                                  "featurekit: the shared value was lost; the row is retried next apply")
            else:
                index.append(table_pos[ref])
                out_errors.append(None)
        take = pa.array(index, pa.int64())
        out = {}
        for c, typ in self.output_types.items():
            parts = [values[c]] if plan.compute else []
            parts += [self.memo[key].values[c] if key in self.memo else pa.nulls(1, typ) for key in memo_keys]
            parts += [fetched[c]] if table_addrs else []
            out[c] = (pa.concat_arrays([p.cast(typ) for p in parts]) if parts else pa.nulls(0, typ)).take(take)
        for key in memo_keys:
            entry = self.memo.get(key)
            if entry is not None:
                entry.pins -= 1
        self._evict()
        return out, (out_errors if any(e is not None for e in out_errors) else None)

    def _remember(self, key: bytes, entry: _Entry) -> None:
        old = self.memo.pop(key, None)
        if old is not None:
            self.memo_bytes -= old.nbytes
            entry.pins += old.pins
        self.memo[key] = entry
        self.memo_bytes += entry.nbytes

    def _evict(self) -> None:
        """Least recently used first, never a value a piece in flight still needs."""
        if self.memo_bytes <= self.budget:
            return
        for key in list(self.memo):
            if self.memo_bytes <= self.budget:
                break
            entry = self.memo[key]
            if entry.pins <= 0:
                del self.memo[key]
                self.memo_bytes -= entry.nbytes

    def _read(self, addrs: list[int]) -> dict[str, pa.Array]:
        """The values of committed rows at `addrs`, in that order (only those rows are read)."""
        if not addrs:
            return {}
        ds = self.table.dataset
        cols = list(self.output_types)
        parts = [ds.to_table(columns=cols + [self.state_column], with_row_address=True,
                             filter=f"_rowaddr IN ({', '.join(map(str, addrs[k:k + ADDR_CHUNK]))})")
                 for k in range(0, len(addrs), ADDR_CHUNK)]
        table = pa.concat_tables(parts)
        position = {a: i for i, a in enumerate(table.column("_rowaddr").to_pylist())}
        states = table.column(self.state_column).to_pylist()
        missing = [a for a in addrs if a not in position or states[position[a]] != self.fingerprint]
        if missing:
            raise RuntimeError(f"featurekit: rows {missing[:3]} of {self.table.uri} no longer hold the value their input "
                               "key promised; run apply again")
        take = pa.array([position[a] for a in addrs], pa.int64())
        return {c: table.column(c).combine_chunks().take(take) for c in cols}

    def summary(self) -> dict[str, int]:
        return {"rows": self.rows, "distinct": len(self.seen), "computes": self.computes, "from_table": self.from_table,
                "from_memo": self.from_memo, "recomputed": self.recomputed}
