"""The training data loader: shuffled, exactly-once, resumable batches from a pinned Lance version.

    loader = featurekit.dataloader("specs/textvqa.yaml", recipe="qlora", batch_size=16)
    for batch in loader:            # {"vision": fp16[16, 400, 2048], "input_ids": int64[16, 512], ...}
        ...
    run_record["table_version"] = loader.version

How it is fast: the rows to read are fixed once (one scan of row addresses), an epoch is a
permutation of them, and each batch's rows are read in storage order into their shuffled
slots (`batches`), ahead of the trainer by threads or worker processes (`prefetch`).
Why it is correct: the order is a pure function of (seed, epoch) over the pinned version's
rows (`epoch`), so ranks agree without talking, and a resumed run knows exactly which rows
of the epoch it has already seen.
"""
from __future__ import annotations

import atexit
import copy
import os
import sys
import types
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from ..table.readers import pin_version
from .batches import BatchReader, ColumnRead, plan_column
from .epoch import batches, epoch_order, num_batches, shard, shuffle_quality

STATE_KEYS = ("version", "seed", "shuffle", "rank", "world_size", "rows", "rows_filter", "columns", "drop_last")


class DataLoader:
    """Batches of `columns` of the Lance table at `uri` (or an open LanceDataset).

    `columns` is a list of column names, or a mapping batch key -> column. `filter` is a
    Lance SQL filter choosing the rows; rows where a requested column is NULL are skipped
    and counted in `skipped`. The table version is pinned when the loader is made
    (`version`, latest by default). Every `iter()` is one epoch (`epoch`, then the next);
    `set_epoch(e)` picks one, as with torch's DistributedSampler.

    `prefetch` batches are read ahead by `threads` threads, or by `num_workers` worker
    processes (scripts using workers need the `if __name__ == "__main__":` guard).
    `direct=False` reads every column through Lance instead of reading plain fixed-size
    list columns straight from the data files. `rows` (row addresses) replaces the filter,
    for benchmarks and tests that need an exact set of rows.
    """

    def __init__(self, uri: Any, *, columns: Sequence[str] | Mapping[str, str], filter: str | None = None,
                 batch_size: int = 16, shuffle: bool = True, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, drop_last: bool = False, version: int | str | None = None,
                 prefetch: int = 4, threads: int = 2, pin_memory: bool | None = None, direct: bool = True,
                 rows: np.ndarray | None = None):
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, not {batch_size}")
        if not 0 <= rank < world_size:
            raise UsageError(f"rank must be in [0, world_size), not {rank} of {world_size}")
        check_loader_args(seed=seed, epoch=epoch, version=version)
        ds = _open(uri, version)
        self.uri, self.version, self.filter = ds.uri, ds.version, filter  # uri: the branch's root on a branch
        # the version read is leased until close (or garbage collection): compact keeps it
        self._pin = pin_version(_ref_of(uri, ds), ds.version, "DataLoader")
        if self._pin is not None:
            weakref.finalize(self, self._pin.close)
        self.columns = _column_map(columns, ds.schema)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.num_workers, self.prefetch, self.threads = num_workers, max(1, prefetch), max(1, threads)
        self.pin_memory = _cuda() if pin_memory is None else pin_memory
        reads = [plan_column(k, c, ds.schema.field(c), _locations(ds, c) if direct else None)
                 for k, c in self.columns.items()]
        ids, addresses, matched, scalars = _eligible(ds, filter, reads, rows)
        self.skipped = matched - len(addresses)
        reads = _verified(ds, reads, ids, addresses)
        self._reader = BatchReader(self.uri, self.version, reads, ids, addresses, pin_memory=self.pin_memory,
                                   pool_size=self.prefetch + 2,  # the prefetched batches + two the trainer holds
                                   scalars=scalars, storage_options=ds.initial_storage_options)
        self._start = 0
        self._workers = None

    # -- what a trainer asks -----------------------------------------------------------

    @property
    def num_rows(self) -> int:
        """Rows of the split this loader reads (all ranks), after skipping NULLs."""
        return len(self._reader.addresses)

    @property
    def row_addresses(self) -> np.ndarray:
        """The rows this loader reads (all ranks), as Lance row addresses in storage order."""
        return self._reader.addresses

    @property
    def row_ids(self) -> np.ndarray:
        """The same rows as Lance row ids (what `take` and LanceDB Permutations use)."""
        return self._reader.row_ids

    @property
    def reads(self) -> list[ColumnRead]:
        return list(self._reader.columns)

    def read_rows(self, positions: np.ndarray) -> dict[str, Any]:
        """One batch of the rows at `positions` in `row_addresses` (no shuffle, no shard)."""
        return self._reader.read(positions)

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank)."""
        return num_batches(self._shard_len(), self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._start = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: resume with `load_state_dict` on a loader of the same version."""
        return {"version": self.version, "seed": self.seed, "shuffle": self.shuffle, "rank": self.rank,
                "world_size": self.world_size, "rows": self.num_rows, "epoch": self.epoch,
                "position": self._start, "batch_size": self.batch_size,
                # what rows and values: a resume over another filter or columns would silently differ
                "rows_filter": self.filter, "columns": dict(self.columns), "drop_last": self.drop_last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state)
        mine = self.state_dict()
        for key in STATE_KEYS:
            if key in state and state[key] != mine[key]:
                hint = f" (open the loader with version={state[key]})" if key == "version" else ""
                raise UsageError(f"cannot resume: the state has {key}={state[key]!r}, this loader {mine[key]!r}{hint}")
        if state["position"] > self._shard_len():
            raise UsageError(f"cannot resume: the state's position {state['position']} is past this rank's "
                             f"{self._shard_len()} rows")
        self.epoch, self._start = int(state["epoch"]), int(state["position"])
        self._resume = True  # the next iter() continues from there

    def epoch_rows(self, epoch: int | None = None) -> np.ndarray:
        """Row addresses this rank reads in `epoch` (default: the current one), in order."""
        return self._reader.addresses[self._shard(self.epoch if epoch is None else epoch)]

    def shuffle_quality(self, epoch: int | None = None) -> dict[str, float]:
        """Correlation of epoch position with storage position and fragments per batch."""
        positions = self._shard(self.epoch if epoch is None else epoch)
        return shuffle_quality(positions, self._reader.addresses[positions] >> np.uint64(32), self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """One pass over the current epoch's rows, from its start (as torch's DataLoader), or
        from the position `load_state_dict` restored; a full pass moves to the next epoch."""
        if not getattr(self, "_resume", False):
            self._start = 0  # an iterator left unfinished does not shorten the next pass
        self._resume = False
        todo = batches(self._shard(self.epoch), self.batch_size, self.drop_last, self._start)
        source = self._pool().run(todo) if self.num_workers > 0 else \
            _threaded(self._reader.read, todo, self.prefetch, self.threads)
        _LIVE.add(source)
        try:
            for rows, batch in zip(todo, source):
                self._start += len(rows)
                yield batch
        finally:
            source.close()
        self.epoch, self._start = self.epoch + 1, 0

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        self._reader.close()
        if getattr(self, "_pin", None) is not None:
            self._pin.close()

    def __enter__(self) -> DataLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _shard(self, epoch: int) -> np.ndarray:
        order = epoch_order(self.num_rows, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        return shard(order, self.rank, self.world_size, self.drop_last)

    def _shard_len(self) -> int:
        n, w = self.num_rows, self.world_size
        return n // w if self.drop_last else -(-n // w)

    def _pool(self):
        if self._workers is None:
            from .prefetch import WorkerPool
            reader = copy.copy(self._reader)
            reader.pin_memory, reader.shared_memory = False, True  # torch pins in the trainer's process
            self._workers = WorkerPool(reader, num_workers=self.num_workers, depth=self.prefetch,
                                       pin_memory=self.pin_memory, batch_size=self.batch_size)
        return self._workers


_LIVE: weakref.WeakSet = weakref.WeakSet()  # batch sources of iterators still open


@atexit.register
def _close_sources() -> None:
    """Iterators left open at exit stop their prefetch threads while the modules they use are
    still there (at interpreter teardown their cleanup would fail noisily)."""
    for source in list(_LIVE):
        try:
            source.close()
        except Exception:  # noqa: BLE001
            pass


def _threaded(fn, todo, depth: int, threads: int):
    from .prefetch import threaded
    return threaded(fn, todo, depth=depth, threads=threads)


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _open(uri: Any, version: int | str | None):
    """`uri`: an open LanceDataset, a `TableRef` (storage options, branch) or a URI;
    `version`: a number or a tag."""
    import lance

    from ..table.handle import require_dataset
    if isinstance(uri, lance.LanceDataset):
        return uri if version is None or version == uri.version else uri.checkout_version(version)
    try:
        return require_dataset(uri, version)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(f"cannot open {uri}" + (f" at version {version}" if version is not None else "")
                         + f": {exc}") from None


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_loader_args(*, seed: Any, epoch: Any, version: Any) -> None:
    """Refuse what would fail deep inside (numpy's seed) or read the wrong rows: usage errors."""
    if not _whole(seed) or seed < 0:
        raise UsageError(f"seed must be a whole number >= 0, not {seed!r}")
    if not _whole(epoch) or epoch < 0:
        raise UsageError(f"epoch must be a whole number >= 0, not {epoch!r}")
    if version is not None and not isinstance(version, str) and (not _whole(version) or version < 1):
        raise UsageError(f"version must be a table version (1 or more) or a tag name, not {version!r}")


def check_state(state: Any) -> None:
    """A state from `state_dict`: a mapping with a whole epoch and position >= 0."""
    if not isinstance(state, Mapping):
        raise UsageError(f"cannot resume: the state must be what state_dict() returned, not {type(state).__name__}")
    missing = [k for k in ("epoch", "position") if k not in state]
    if missing:
        raise UsageError(f"cannot resume: the state has no {' or '.join(missing)} (give what state_dict() returned)")
    for key in ("epoch", "position"):
        if not _whole(state[key]) or state[key] < 0:
            raise UsageError(f"cannot resume: the state's {key} must be a whole number >= 0, not {state[key]!r}")


def _ref_of(uri: Any, ds):
    """The `TableRef` a loader reads (for its reader lease)."""
    from ..table.ref import TableRef, as_ref
    if isinstance(uri, (TableRef, str, os.PathLike)):
        return as_ref(uri)
    return TableRef(ds.uri, tuple(sorted((ds.initial_storage_options or {}).items())))


def _column_map(columns: Sequence[str] | Mapping[str, str], schema) -> dict[str, str]:
    mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    if not mapping:
        raise UsageError("no columns to read")
    missing = sorted(c for c in mapping.values() if c not in schema.names)
    if missing:
        have = ", ".join(n for n in schema.names if not n.startswith("_fk_"))
        raise UsageError(f"no column {', '.join(map(repr, missing))} in the table (it has: {have})")
    return mapping


def _locations(ds, column: str):
    from ..table.pages import column_locations
    return column_locations(ds, column)


def _eligible(ds, filter: str | None, reads: list[ColumnRead], rows: np.ndarray | None):
    """(row ids, row addresses) of the rows to read, in storage order, how many rows the
    filter matched before NULLs were skipped, and the values of the scalar columns for those
    rows (8 bytes a row: kept in memory, where a Lance take cost ~1 ms a batch)."""
    lance_cols = sorted({r.column for r in reads if r.locations is None})
    not_null = " AND ".join(f"`{c}` IS NOT NULL" for c in lance_cols)
    if rows is not None:
        wanted = np.unique(np.asarray(rows, np.uint64))
        where = not_null or None
    else:
        wanted = None
        where = " AND ".join(f"({p})" for p in (filter, not_null) if p) or None
    try:
        scalar_cols = sorted({r.column for r in reads if r.kind == "scalar"})
        tbl = ds.scanner(columns=scalar_cols, filter=where, with_row_id=True, with_row_address=True).to_table()
        matched = ds.count_rows(filter=filter) if rows is None else len(wanted)
    except Exception as exc:  # Lance reports an unknown column or bad SQL as a plain error
        raise UsageError(f"cannot select rows with {where!r}: {exc}") from None
    ids = tbl.column("_rowid").to_numpy().astype(np.uint64)
    addresses = tbl.column("_rowaddr").to_numpy().astype(np.uint64)
    order = np.argsort(addresses, kind="stable")
    ids, addresses = ids[order], addresses[order]
    keep = np.ones(len(addresses), bool) if wanted is None else np.isin(addresses, wanted)
    for r in reads:
        if r.locations is not None and keep.any():
            keep[keep] &= r.locations.valid(addresses[keep])
    scalars = {c: tbl.column(c).to_numpy()[order][keep] for c in scalar_cols}
    return ids[keep], addresses[keep], matched, scalars


def _verified(ds, reads: list[ColumnRead], ids: np.ndarray, addresses: np.ndarray) -> list[ColumnRead]:
    """Check each directly read column against Lance on one row; read it through Lance if
    they differ (a layout this module misread must never give wrong data)."""
    direct = [r for r in reads if r.locations is not None]
    if not direct or not len(ids):
        return reads
    probe = np.array([len(ids) // 2])
    plain = BatchReader(ds.uri, ds.version, [_without_locations(r) for r in direct], ids, addresses)
    fast = BatchReader(ds.uri, ds.version, direct, ids, addresses)
    want, got = plain.read(probe), fast.read(probe)
    plain.close()
    fast.close()
    out = []
    for r in reads:
        if r.locations is not None and not np.array_equal(want[r.key].numpy().view(np.uint8),
                                                          got[r.key].numpy().view(np.uint8)):
            warnings.warn(f"featurekit: column {r.column!r} read from its data files differs from Lance's read; "
                          "reading it through Lance (slower)", RuntimeWarning, stacklevel=3)
            r = _without_locations(r)
        out.append(r)
    return out


def _without_locations(r: ColumnRead) -> ColumnRead:
    from dataclasses import replace
    return replace(r, locations=None)


# -- the spec-level entry point ---------------------------------------------------------

def dataloader(spec: Any, *, recipe: str | None = None, slice: str | None = None, split: str | None = None,
               columns: Sequence[str] | Mapping[str, str] | None = None, batch_size: int = 16, shuffle: bool = True,
               seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1, num_workers: int = 0,
               drop_last: bool = False, version: int | str | None = None, registry=None, branch: str | None = None,
               **options: Any) -> DataLoader:
    """A `DataLoader` over a spec's table: a recipe's slice, split and columns (batches keyed
    by the recipe's names), or the ones given; explicit arguments override the recipe's.
    Without columns, every feature column of the spec. `version`: a number or a tag (default:
    the recipe's ``table:`` pin, else the latest); `branch`: a Lance branch of the table.
    `options` go to `DataLoader`."""
    from ..planning.project import project_of
    from ..table.handle import table_ref
    check_loader_args(seed=seed, epoch=epoch, version=version)
    project = project_of(spec, registry, branch)
    slice, split, columns = _choose(project, recipe, slice, split, columns)
    if version is None and recipe is not None and project.spec.recipes[recipe].table is not None:
        version = project.spec.recipes[recipe].table.pin  # the recipe pins a version or a tag
    ds = _open(table_ref(project), version)
    if slice is not None and slice not in ds.schema.names:
        raise UsageError(f"slice {slice!r} is not materialized in {table_ref(project)} at version {ds.version} "
                         f"(no column {slice!r}); run 'featurekit apply' first")
    from ..curation.rowfilter import slice_filter
    return DataLoader(ds, columns=columns, filter=slice_filter(slice, split), batch_size=batch_size,
                      shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                      num_workers=num_workers, drop_last=drop_last, **options)


def _choose(project, recipe, slice, split, columns):
    spec = project.spec
    if recipe is not None:
        if recipe not in spec.recipes:
            raise UsageError(f"no recipe {recipe!r} in {project.path} (it has: {', '.join(spec.recipes) or 'none'})")
        r = spec.recipes[recipe]
        slice = r.slice if slice is None else slice
        split = r.split if split is None else split
        columns = dict(r.columns) if columns is None else columns
    from ..curation.rowfilter import check_split
    check_split(spec, project.path, slice, split)
    if not columns:
        columns = [c for f in project.features.values() for c in f.columns]
    return slice, split, columns


class _CallableModule(types.ModuleType):
    """`featurekit.dataloader(...)` must call the function even when this module was imported
    first (``from featurekit.dataloader import DataLoader``), which makes the package
    attribute `dataloader` this module rather than the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> DataLoader:
        return dataloader(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
