"""Content-addressed compute: a feature's extractor runs once per distinct input.

Each row's inputs are keyed by `planning.inputkeys.input_hashes` (BLAKE2b-128 of the input values,
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

Work is per distinct key of a piece, never per row: rows are grouped by their key in Arrow
(dictionary encoding), each distinct key is looked up once, and the piece's values are put
together with one `take` per source (the computed batch, the batches memo entries point
into, the rows read back from the table).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..planning.inputkeys import input_hashes
from ..table.metadata import sql_quote

DEFAULT_BUDGET = 1 << 30
ADDR_CHUNK = 5000  # row addresses per Lance filter
SMALL_VALUE = 4096  # bytes a row below which memo entries point into the computed batch
LOST = "featurekit: the shared value was lost; the row is retried next apply"
NEW, MEMO, TABLE = 0, 1, 2


@dataclass
class _Entry:
    values: dict[str, pa.Array]   # arrays holding the value at `row` (a computed batch, or a one-row copy)
    row: int
    error: str | None
    pins: int = 0
    nbytes: int = 0


@dataclass
class ReusePlan:
    """How the rows of one piece get their values: per distinct key of the piece, where from."""

    hashes: pa.Array                                  # per row to run: its key (fixed_size_binary(16))
    inverse: np.ndarray                               # per row: its distinct key's position
    keys: list[bytes]                                 # the piece's distinct keys, in order of first row
    kinds: np.ndarray                                 # per distinct key: NEW, MEMO or TABLE
    refs: list = field(default_factory=list)          # per distinct key: compute position, memo key or address
    compute: list[int] = field(default_factory=list)  # rows passed to the extractor (one per new key)


class Reuse:
    """The driver-side memory of one feature run: which inputs have values, and where."""

    shares = True  # as `shared.SharedValues`: rows with equal inputs share one value
    passed = 0     # rows it passed to the extractor itself (none: the fragments compute)

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

    def covers(self, fragment_id: int) -> bool:
        """Every fragment's rows are keyed against the memo."""
        return True

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

    def holds_none(self) -> bool:
        """Whether no committed row holds a value computed with this fingerprint (nothing to read back)."""
        return not self.extra and not len(self._load_index()[0])

    def lookup(self, keys: list[bytes]) -> list[int | None]:
        """Row addresses of committed rows holding these keys (None: no such row)."""
        found: list[int | None] = [self.extra.get(k) for k in keys] if self.extra else [None] * len(keys)
        index, addrs = self._load_index()
        if not len(index):
            return found
        missing = np.flatnonzero([a is None for a in found]) if self.extra else np.arange(len(keys))
        if len(missing):
            # numpy's S16 drops trailing zero bytes when it compares: one-to-one on 16-byte keys
            wanted = np.array([keys[i] for i in missing.tolist()], dtype="S16")
            at = np.minimum(np.searchsorted(index, wanted), len(index) - 1)
            hit = np.flatnonzero(index[at] == wanted)
            for i, a in zip(missing[hit].tolist(), addrs[at[hit]].tolist()):
                found[i] = int(a)
        return found

    def committed(self, fragment_ids) -> None:
        """Rows written to these fragments are now readable from the table."""
        for fragment_id in fragment_ids:
            self.extra.update(self.pending.pop(fragment_id, {}))

    def read_back(self, keys: list[bytes]) -> tuple[list[int], dict[str, pa.Array]]:
        """(positions in `keys` that committed rows hold, their values in that order)."""
        addrs = self.lookup(keys)
        found = [i for i, a in enumerate(addrs) if a is not None]
        return found, self.read([addrs[i] for i in found]) if found else {}

    # -- one piece ------------------------------------------------------------------------------
    def known_rows(self, fragment_id: int) -> None:
        """Nothing is known before a fragment's inputs are read and keyed (`SharedValues.known_rows`)."""
        return None

    def plan(self, logical: pa.RecordBatch, fingerprint: str, addrs) -> ReusePlan:
        """The plan of a piece of rows to run (`logical`, at row addresses `addrs`)."""
        return self.classify(input_hashes(logical, fingerprint))

    def classify(self, hashes: pa.Array) -> ReusePlan:
        """Decide, per distinct key, where its rows' value comes from; registers the keys this
        piece computes."""
        hashes = hashes.combine_chunks() if isinstance(hashes, pa.ChunkedArray) else hashes
        n = len(hashes)
        encoded = pc.dictionary_encode(hashes)
        inverse = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keys = encoded.dictionary.to_pylist()
        first = np.empty(len(keys), dtype=np.int64)
        first[inverse[::-1]] = np.arange(n - 1, -1, -1)
        counts = np.bincount(inverse, minlength=len(keys))
        kinds = np.full(len(keys), NEW, dtype=np.int8)
        refs: list = [None] * len(keys)
        look = []
        for d, key in enumerate(keys):
            entry = self.memo.get(key)
            if entry is not None or key in self.inflight:
                if entry is not None:  # one pin per piece and key: `resolve` releases it
                    entry.pins += 1
                    self.memo.move_to_end(key)
                else:
                    self.inflight[key] += 1
                kinds[d], refs[d] = MEMO, key
            else:
                look.append(d)
        plan = ReusePlan(hashes, inverse, keys, kinds, refs)
        for d, addr in zip(look, self.lookup([keys[d] for d in look])):
            key = keys[d]
            if addr is not None:
                kinds[d], refs[d] = TABLE, addr
                continue
            if key in self.seen:
                self.recomputed += 1  # evicted before its fragment was committed
            refs[d] = len(plan.compute)
            plan.compute.append(int(first[d]))
            self.inflight[key] = 0
        self.seen.update(keys)
        self.rows += n
        self.computes += len(plan.compute)
        self.from_memo += int(counts[kinds == MEMO].sum())
        self.from_table += int(counts[kinds == TABLE].sum())
        return plan

    def resolve(self, plan: ReusePlan, values: dict[str, pa.Array], errors: list[str | None] | None,
                addrs: np.ndarray) -> tuple[dict[str, pa.Array], list[str | None] | None]:
        """Values and errors for every row of the piece, from what was computed for its new
        keys, the memo and the table. `addrs`: the rows' addresses (for the index)."""
        n = len(plan.compute)
        # small values are kept as views into the piece's arrays (no copy); large ones (hiddens)
        # are copied, so one kept row never holds a whole batch of them in memory
        copy = bool(n) and any(values[c].nbytes > SMALL_VALUE * n for c in self.output_types)
        width = sum(max(1, values[c].nbytes // n) for c in self.output_types) if n else 0
        new = [d for d in range(len(plan.keys)) if plan.kinds[d] == NEW]
        for d in new:
            j, key = plan.refs[d], plan.keys[d]
            error = errors[j] if errors is not None else None
            if copy:
                one = pa.array([j], pa.int64())
                entry = _Entry({c: values[c].take(one) for c in self.output_types}, 0, error)
            else:
                entry = _Entry(values, j, error)
            entry.pins, entry.nbytes = self.inflight.pop(key, 0), width
            self._remember(key, entry)
            if error is None:
                row = plan.compute[j]
                address = int(addrs[row])
                self.pending.setdefault(address >> 32, {})[key] = address
        memo = [d for d in range(len(plan.keys)) if plan.kinds[d] == MEMO]
        table = [d for d in range(len(plan.keys)) if plan.kinds[d] == TABLE]
        fetched = self.read([plan.refs[d] for d in table])
        position = np.zeros(len(plan.keys), dtype=np.int64)
        distinct_errors: list[str | None] = [None] * len(plan.keys)
        parts: dict[str, list[pa.Array]] = {c: ([values[c]] if n else []) for c in self.output_types}
        for d in new:
            position[d] = plan.refs[d]
            distinct_errors[d] = errors[plan.refs[d]] if errors is not None else None
        offset = n
        for source, members in self._memo_sources([plan.refs[d] for d in memo]):
            rows = pa.array([row for _, row in members], pa.int64())
            for c, typ in self.output_types.items():
                parts[c].append(source[c].take(rows) if source is not None else pa.nulls(len(members), typ))
            for k, (i, _) in enumerate(members):
                d = memo[i]
                position[d] = offset + k
                entry = self.memo.get(plan.refs[d])
                distinct_errors[d] = entry.error if entry is not None else LOST
            offset += len(members)
        for k, d in enumerate(table):
            position[d] = offset + k
        if table:
            for c in self.output_types:
                parts[c].append(fetched[c])
        take = pa.array(position[plan.inverse], pa.int64())
        out = {c: (pa.concat_arrays([p.cast(typ) for p in parts[c]]) if parts[c] else pa.nulls(0, typ)).take(take)
               for c, typ in self.output_types.items()}
        for d in memo:
            entry = self.memo.get(plan.refs[d])
            if entry is not None:
                entry.pins -= 1
        self._evict()
        if not any(e is not None for e in distinct_errors):
            return out, None
        return out, [distinct_errors[d] for d in plan.inverse.tolist()]

    def _memo_sources(self, keys: list[bytes]):
        """The memo keys grouped by the arrays their values sit in: (arrays or None when the
        value was lost, [(position in `keys`, row)])."""
        groups: dict[int, tuple] = {}
        for i, key in enumerate(keys):
            entry = self.memo.get(key)
            source = entry.values if entry is not None else None
            group = groups.setdefault(id(source), (source, []))
            group[1].append((i, entry.row if entry is not None else 0))
        return list(groups.values())

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

    def read(self, addrs: list[int]) -> dict[str, pa.Array]:
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
