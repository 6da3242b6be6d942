"""`featurekit bench`: read throughput of a table's training columns, on the user's own data.

The same sampled rows are read, in the same shuffled order where it applies, by:
featurekit's loader (shuffled and sequential), a LanceDB Permutation, a Parquet copy of the
columns (written to a temporary folder and removed; row groups of ~32 MB, read shuffled and
sequentially), and plain `os.preadv` of the rows' bytes
in the page cache (the ceiling; it covers the columns stored in Lance's plain layout).
Every reader materializes numpy arrays or tensors, and each is checked to deliver every
sampled row exactly once. The readers are reusable (benchmarks/loader.py adds its own).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Progress = Callable[[str, int], None]   # (stage, rows just done)


@dataclass(frozen=True)
class Measure:
    name: str
    rows: int
    seconds: float
    bytes: int
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def gb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds else 0.0


@dataclass(frozen=True)
class BenchResult:
    table: str
    version: int
    columns: dict[str, str]
    rows: int
    batch_size: int
    row_bytes: int
    measures: list[Measure]
    shuffle: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)   # reader -> why it did not run

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for m, d in zip(self.measures, out["measures"]):
            d.update(rows_per_s=round(m.rows_per_s, 1), gb_per_s=round(m.gb_per_s, 3))
        return out

    def render(self) -> str:
        size = f"{self.row_bytes / 1e6:.2f} MB" if self.row_bytes >= 1e5 else \
            f"{self.row_bytes / 1e3:.1f} kB" if self.row_bytes >= 1e3 else f"{self.row_bytes} bytes"
        lines = [f"table {self.table} (version {self.version}): {self.rows} rows x {size} of "
                 f"{', '.join(self.columns.values())}, batch {self.batch_size}",
                 f"  {'reader':<34} {'rows/s':>9} {'GB/s':>7} {'featurekit speed-up':>20}"]
        base = next((m.rows_per_s for m in self.measures if m.name == "featurekit shuffled"), 0.0)
        for m in self.measures:
            ratio = f"{base / m.rows_per_s:.1f}x" if m.rows_per_s and base and m.name != "featurekit shuffled" else ""
            lines.append(f"  {m.name:<34} {m.rows_per_s:>9,.0f} {_rate(m.gb_per_s):>7} {ratio:>20}"
                         + (f"  {m.note}" if m.note else ""))
        for name, why in self.skipped.items():
            lines.append(f"  {name:<34} skipped: {why}")
        if self.row_bytes < SMALL_ROW_BYTES:
            lines.append(f"note: a row of these columns is {self.row_bytes} bytes: the rates measure per-batch "
                         "overhead more than reading; bench is made for large columns (embeddings, hidden states)")
        if self.shuffle:
            q = self.shuffle
            lines.append(f"shuffle quality: correlation of epoch and storage position {q['correlation']:+.3f}; "
                         f"fragments per batch {q['fragments_per_batch']:.1f} "
                         f"(a uniform shuffle: {q['fragments_per_batch_uniform']:.1f})")
        return "\n".join(lines)


def _rate(gb_per_s: float) -> str:
    """GB/s with two decimals, or two significant digits below 0.01 (never a bare 0.00)."""
    return f"{gb_per_s:.2f}" if gb_per_s >= 0.01 or gb_per_s == 0 else f"{gb_per_s:.2g}"


# -- readers: each yields batches of materialized arrays --------------------------------

def to_numpy(batch, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """An Arrow batch as the loader would give it: fixed-size lists as [B, *shape] arrays."""
    import pyarrow as pa
    out: dict[str, Any] = {}
    for name in batch.column_names if hasattr(batch, "column_names") else batch.schema.names:
        col = batch.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), *shapes.get(name, (-1,)))
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            out[name] = col.to_numpy(zero_copy_only=False)
        else:
            out[name] = col.to_pylist()
    return out


def permutation_batches(table, row_ids: np.ndarray, columns: Sequence[str], batch_size: int,
                        shapes: Mapping[str, tuple[int, ...]]) -> Iterator[dict[str, Any]]:
    """A LanceDB Permutation reading `row_ids` in that order (its own builder's shuffle fails
    on some tables in lancedb 0.40, so the permutation table is written here)."""
    import pyarrow as pa

    from ..table.lancedb_import import import_lancedb
    lancedb = import_lancedb()
    from lancedb.permutation import Permutation
    perm = pa.table({"row_id": pa.array(row_ids, pa.uint64()), "split_id": pa.array(np.zeros(len(row_ids), np.uint64))})
    ptable = lancedb.connect("memory://").create_table("permutation", perm)
    reader = Permutation.from_tables(table, ptable).select_columns(list(columns)).with_format("arrow")
    for batch in reader.iter(batch_size, skip_last_batch=False):
        yield to_numpy(batch, shapes)


def write_parquet(ds, row_ids: np.ndarray, columns: Sequence[str], path: str, row_group_rows: int) -> None:
    """The rows `row_ids` (in that order) of `columns`, uncompressed, `row_group_rows` rows a group."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    writer = None
    try:
        for start in range(0, len(row_ids), row_group_rows):  # one group a write: groups of the size asked
            tbl = ds._take_rows(pa.array(row_ids[start:start + row_group_rows], pa.uint64()), columns=list(columns))
            if writer is None:
                writer = pq.ParquetWriter(path, tbl.schema, compression="none")
            writer.write_table(tbl, row_group_size=row_group_rows)
    finally:
        if writer is not None:
            writer.close()


def parquet_batches(path: str, positions: np.ndarray, batch_size: int,
                    shapes: Mapping[str, tuple[int, ...]]) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file at `positions`, in that order: each batch reads the row groups
    holding its rows, then takes the rows out of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path, memory_map=True)
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    for first in range(0, len(positions), batch_size):
        rows = positions[first:first + batch_size]
        group = np.searchsorted(starts, rows, side="right") - 1
        groups = np.unique(group)
        tbl = pf.read_row_groups(groups.tolist())
        base = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in groups])[:-1]
        local = base[np.searchsorted(groups, group)] + (rows - starts[group])
        yield to_numpy(tbl.take(pa.array(local)), shapes)


def parquet_sequential_batches(path: str, batch_size: int,
                               shapes: Mapping[str, tuple[int, ...]]) -> Iterator[dict[str, Any]]:
    """Every row of a Parquet file in storage order, `batch_size` rows a batch."""
    import pyarrow.parquet as pq
    for batch in pq.ParquetFile(path, memory_map=True).iter_batches(batch_size=batch_size):
        yield to_numpy(batch, shapes)


PARQUET_GROUP_BYTES = 32_000_000  # a row group of ~32 MB (Hugging Face datasets writes 100 image rows a group)
PARQUET_COPY_BYTES = 128_000_000  # rows copied: ~128 MB (pyarrow decodes fixed-size lists at ~50 MB/s)


def parquet_layout(n: int, row_bytes: int, rows: int | None = None, group: int | None = None) -> tuple[int, int]:
    """(rows copied to Parquet, rows a row group): explicit values, else sized from a row's bytes."""
    copied = rows or max(min(n, PARQUET_COPY_BYTES // max(row_bytes, 1)), min(n, 16))
    copied = min(copied, n)
    return copied, group or max(1, min(copied, PARQUET_GROUP_BYTES // max(row_bytes, 1)))


def pread_batches(locations: Sequence, addresses: np.ndarray, batch_size: int, *, threads: int = 1,
                  reuse: bool = True, sort: bool = True) -> Iterator[dict[str, Any]]:
    """The ceiling: the rows' bytes of every plainly stored column with one `os.preadv` a row,
    no decoding. `reuse` reads into a ring of buffers (no allocation), else a new array a
    batch; `sort` issues a batch's reads in storage order; `threads` read batches at once."""
    from ..training.prefetch import threaded
    fds: dict[str, int] = {}
    lock = threading.Lock()
    ring = [{loc.column: np.ones((batch_size, loc.value_bytes), np.uint8) for loc in locations}
            for _ in range(threads + 2)] if reuse else []  # written once: no page faults when timed

    def fd_of(path: str) -> int:
        with lock:
            if path not in fds:
                fds[path] = os.open(path, os.O_RDONLY)
            return fds[path]

    def read(k: int) -> dict[str, Any]:
        rows = addresses[k * batch_size:(k + 1) * batch_size]
        out = {}
        for loc in locations:
            files, offsets = loc.locate(rows)
            buf = ring[k % len(ring)][loc.column] if reuse else np.empty((len(rows), loc.value_bytes), np.uint8)
            for j in (np.lexsort((offsets, files)) if sort else range(len(rows))):
                os.preadv(fd_of(loc.files[files[j]]), [buf[j]], int(offsets[j]))
            out[loc.column] = buf[:len(rows)]
        return out

    try:
        yield from threaded(read, range(-(-len(addresses) // batch_size)), depth=threads, threads=threads)
    finally:
        for fd in fds.values():
            os.close(fd)


def measure(name: str, batches: Iterable[dict[str, Any]], row_bytes: int, expect: int,
            progress: Progress | None = None, note: str = "") -> Measure:
    """Time `batches` to the end; the row count must be `expect` (each sampled row once)."""
    started, rows = time.perf_counter(), 0
    for batch in batches:
        n = len(next(iter(batch.values())))
        rows += n
        if progress:
            progress(name, n)
    seconds = time.perf_counter() - started
    if rows != expect:
        raise RuntimeError(f"{name}: read {rows} rows, expected {expect}")
    return Measure(name, rows, seconds, rows * row_bytes, note)


def batch_bytes(batch: Mapping[str, Any]) -> int:
    total = 0
    for v in batch.values():
        if hasattr(v, "nbytes"):
            total += int(v.nbytes)
        elif hasattr(v, "element_size"):
            total += v.element_size() * v.nelement()
        else:
            total += sum(len(x) if isinstance(x, (str, bytes)) else 8 for x in v)
    return total


# -- the command ----------------------------------------------------------------------

STAGES = ("featurekit shuffled", "featurekit sequential", "LanceDB Permutation shuffled",
          "Parquet, same shuffled order", "Parquet, sequential", "page cache (os.preadv)")
SMALL_ROW_BYTES = 1024  # below this a row is too small for read throughput to say anything


def bench_columns(project, recipe: str | None, columns: Sequence[str] | None, schema) -> dict[str, str]:
    """The recipe's columns; else `columns`; else the spec's fixed-size list features (the
    big ones training reads), else all its feature columns present in the table."""
    from ..errors import UsageError
    if recipe is not None:
        if recipe not in project.spec.recipes:
            raise UsageError(f"no recipe {recipe!r} in {project.path} "
                             f"(it has: {', '.join(project.spec.recipes) or 'none'})")
        return dict(project.spec.recipes[recipe].columns)
    if columns:
        return {c: c for c in columns}
    import pyarrow as pa
    feats = [c for f in project.features.values() for c in f.columns if c in schema.names]
    big = [c for c in feats if pa.types.is_fixed_size_list(schema.field(c).type)]
    if not feats:
        raise UsageError("nothing to read: no feature column is materialized yet; run 'featurekit apply', "
                         "or name columns with --columns")
    if not big:
        raise UsageError(f"nothing large to measure: {os.path.basename(str(project.path))}'s features are scalars and short values "
                         f"({', '.join(feats)}); bench measures reading the large fixed-size list columns training "
                         "reads (embeddings, hidden states). Name columns with --columns to time them anyway")
    return {c: c for c in big}


def bench(spec: Any, *, recipe: str | None = None, columns: Sequence[str] | None = None, rows: int = 512,
          batch_size: int = 16, seed: int = 0, progress: Progress | None = None, registry=None,
          parquet_row_group: int | None = None, parquet_rows: int | None = None, workdir: str | None = None,
          branch: str | None = None) -> BenchResult:
    """Measure the readers on `rows` rows sampled from the recipe's split (or the table).
    `parquet_rows`, `parquet_row_group`: the Parquet copy's rows and rows a row group (None:
    ~128 MB of rows, in groups of ~32 MB)."""
    from ..errors import UsageError
    from ..planning.project import project_of
    from ..table.handle import require_dataset, table_ref
    from ..training.dataloader import DataLoader, dataloader
    project = project_of(spec, registry, branch)
    ref = table_ref(project)
    pin = project.spec.recipes[recipe].table if recipe in project.spec.recipes else None
    ds = require_dataset(ref, pin.pin if pin is not None else None)
    cols = bench_columns(project, recipe, columns, ds.schema)
    every = dataloader(project, recipe=recipe, columns=cols, version=ds.version) if recipe else \
        DataLoader(ds, columns=cols)
    if every.num_rows == 0:
        raise UsageError(f"no rows to read in {project.table_uri}: every row has a NULL in {', '.join(cols.values())}")
    pick = np.sort(np.random.default_rng(seed).choice(every.num_rows, min(rows, every.num_rows), replace=False))
    sample_addr, sample_ids = every.row_addresses[pick], every.row_ids[pick]
    n = len(pick)
    make = dict(columns=cols, rows=sample_addr, batch_size=batch_size, seed=seed)
    shuffled, sequential = DataLoader(ds, shuffle=True, **make), DataLoader(ds, shuffle=False, **make)
    for loader in (sequential, shuffled):  # warm the page cache with exactly these rows, and the buffers
        for _ in loader:
            pass
    order_addr = shuffled.epoch_rows()              # epoch 1: the shuffled order everyone reads in
    position = np.searchsorted(sample_addr, order_addr)
    shapes = {r.column: r.shape for r in shuffled.reads if r.kind == "tensor"}
    row_bytes = batch_bytes(shuffled.read_rows(np.arange(1)))
    out = [measure(STAGES[0], shuffled, row_bytes, n, progress),
           measure(STAGES[1], sequential, row_bytes, n, progress)]
    skipped: dict[str, str] = {}
    table, why = lancedb_table(project, ref, ds.version)
    if table is None:
        skipped[STAGES[2]] = why
    else:
        out.append(measure(STAGES[2], permutation_batches(table, sample_ids[position], list(cols.values()),
                                                          batch_size, shapes), row_bytes, n, progress))
    with tempfile.TemporaryDirectory(prefix="featurekit-bench-", dir=workdir) as tmp:
        # pyarrow decodes fixed-size lists from Parquet at ~30 rows/s of 1.6 MB: ~128 MB of rows suffice
        m, group = parquet_layout(n, row_bytes, parquet_rows, parquet_row_group)
        path = os.path.join(tmp, "copy.parquet")
        write_parquet(ds, sample_ids[:m], list(cols.values()), path, group)
        mine = position[position < m]
        note = f"uncompressed, {group} row(s) a row group" + (f", {m} of the rows" if m < n else "")
        out.append(measure(STAGES[3], parquet_batches(path, mine, batch_size, shapes), row_bytes, m, progress,
                           note=note))
        out.append(measure(STAGES[4], parquet_sequential_batches(path, batch_size, shapes), row_bytes, m, progress,
                           note=note))
    plain = [r.locations for r in shuffled.reads if r.locations is not None]
    if plain:
        covered = sum(loc.value_bytes for loc in plain)
        note = "" if covered >= row_bytes * 0.99 else f"covers {covered / row_bytes:.0%} of a row's bytes"
        out.append(measure(STAGES[5], pread_batches(plain, order_addr, batch_size, threads=shuffled.threads),
                           covered, n, progress, note=note))
    return BenchResult(table=str(ref), version=ds.version, columns=cols, rows=n, batch_size=batch_size,
                       row_bytes=row_bytes, measures=out, shuffle=shuffled.shuffle_quality(), skipped=skipped)


def lancedb_table(project, ref, version: int):
    """(the table as LanceDB opens it, at `version`, or None, and why not). lancedb is only
    needed here: ``pip install 'featurekit[bench]'``."""
    if ref.branch is not None:
        return None, "LanceDB 0.40 opens a table's main line only, not a branch"
    from ..table.lancedb_import import import_lancedb
    try:
        lancedb = import_lancedb()  # without its REST client's API modules (lancedb_import.py)
    except ImportError:
        return None, "lancedb is not installed (pip install 'featurekit[bench]')"
    db = ref.uri[:-len(project.spec.table.name + ".lance")].rstrip("/")
    table = lancedb.connect(db, storage_options=ref.storage_options).open_table(project.spec.table.name)
    table.checkout(version)
    return table, ""
