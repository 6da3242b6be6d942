"""Read one batch of rows from a pinned table version into torch tensors.

Large fixed-size lists (the vision tower's hiddens) are read with `os.preadv` straight
into their slot of the batch tensor (a recycled buffer, pinned memory when CUDA is there, or
a shared-memory slab in a worker process): reads are issued in storage order, adjacent rows coalesced into one
syscall, and since every row lands in its own slot the shuffled order costs nothing to
restore. Numeric scalar columns are held in memory for the eligible rows (8 bytes a row;
a Lance take of them cost ~1 ms a batch). Every other column goes through one Lance `take`
per batch with the row ids sorted (what Lance reads best: 1.5-2.5x faster than unsorted here),
then is put back into the batch's order in memory. `torch` is imported only when a batch is
built.

A `BatchReader` is picklable: worker processes get it and open the dataset and the files
themselves (Lance is not fork-safe).
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..table.pages import ColumnLocations

IOV_MAX = 1024


class BufferPool:
    """Reuses batch buffers the trainer has let go of.

    A fresh 100 MB buffer costs the kernel a page fault and a zeroed page every 4 kB: at
    batch 64 of fp16[400 x 2048] that halved the read rate here. A buffer handed out as
    `torch.from_numpy(buf)` is referenced by the tensor's storage, and by every view of it,
    so it is free again exactly when its reference count is back to the pool's own. At most
    `size` buffers are kept per shape: memory stays bounded by the prefetch depth.
    """

    def __init__(self, size: int):
        self.size = size
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        key = (shape, dtype)
        with self._lock:
            bufs = self._free.setdefault(key, [])
            for buf in bufs:
                if sys.getrefcount(buf) == 3:  # the list, `buf`, getrefcount's argument
                    return buf
            buf = np.empty(shape, dtype)
            if len(bufs) < self.size:
                bufs.append(buf)
            return buf


@dataclass(frozen=True)
class ColumnRead:
    """How one requested column becomes a batch value."""

    key: str                       # the batch's key (a recipe's logical name, or the column)
    column: str                    # the table column
    kind: str                      # "tensor" (fixed-size list -> [B, *shape]), "scalar" ([B]), "list" (Python)
    shape: tuple[int, ...] = ()    # per-row shape of a tensor column
    dtype: str = ""                # numpy dtype of a tensor or scalar column
    locations: ColumnLocations | None = None  # set: read with preadv; None: through Lance


def plan_column(key: str, column: str, field: pa.Field, locations: ColumnLocations | None) -> ColumnRead:
    """Decide how to read `column` from its Arrow field (and `featurekit.output.shape`)."""
    import json
    t = field.type
    if pa.types.is_fixed_size_list(t) and (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)
                                           or pa.types.is_boolean(t.value_type)):
        raw = (field.metadata or {}).get(b"featurekit.output.shape")
        shape = tuple(json.loads(raw)) if raw else (t.list_size,)
        if int(np.prod(shape)) != t.list_size:
            raise ValueError(f"column {column!r}: featurekit.output.shape {list(shape)} does not hold "
                             f"{t.list_size} values a row")
        return ColumnRead(key, column, "tensor", shape, t.value_type.to_pandas_dtype().__name__, locations)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return ColumnRead(key, column, "scalar", (), np.dtype(t.to_pandas_dtype()).name)
    return ColumnRead(key, column, "list")


class BatchReader:
    """Reads batches, given as positions into the eligible rows, from one table version."""

    def __init__(self, uri: str, version: int, columns: list[ColumnRead], row_ids: np.ndarray,
                 addresses: np.ndarray, *, pin_memory: bool = False, shared_memory: bool = False,
                 pool_size: int = 0, scalars: dict[str, np.ndarray] | None = None,
                 storage_options: dict[str, str] | None = None):
        self.uri = uri                  # the dataset's root (a branch's root on a branch)
        self.version = version
        self.storage_options = storage_options  # an object store's: workers reopen the table with them
        self.columns = columns
        self.row_ids = row_ids          # for Lance take (== addresses unless stable row ids)
        self.addresses = addresses      # for the direct reads
        self.pin_memory = pin_memory
        self.shared_memory = shared_memory
        self.pool_size = pool_size
        self.scalars = scalars or {}    # column -> values of every eligible row, in memory
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._pool = BufferPool(self.pool_size)
        self._ds = None
        self._fds: dict[tuple[int, int], int] = {}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_ds", "_fds", "_pool")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._ds = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- opening -----------------------------------------------------------------------

    def dataset(self):
        with self._lock:
            if self._ds is None:
                import lance
                self._ds = lance.dataset(self.uri, version=self.version, storage_options=self.storage_options)
            return self._ds

    def _fd(self, column: int, file: int) -> int:
        key = (column, file)
        fd = self._fds.get(key)
        if fd is None:
            with self._lock:
                fd = self._fds.get(key)
                if fd is None:
                    fd = self._fds[key] = os.open(self.columns[column].locations.files[file], os.O_RDONLY)
        return fd

    # -- reading -----------------------------------------------------------------------

    def read(self, rows: np.ndarray, into: dict[str, Any] | None = None) -> dict[str, Any]:
        """The batch of eligible rows at positions `rows`, in that order. Tensor columns named
        in `into` are written into those tensors' first rows instead of new ones."""
        into = into or {}
        out: dict[str, Any] = {}
        for c in self.columns:
            if c.column in self.scalars:
                values = self.scalars[c.column][rows]
                out[c.key] = values if self.shared_memory else _torch().from_numpy(values)
        via_lance = [c for c in self.columns if c.locations is None and c.column not in self.scalars]
        if via_lance:
            out.update(self._read_lance(rows, via_lance, into))
        for i, c in enumerate(self.columns):
            if c.locations is not None:
                out[c.key] = self._read_direct(i, c, self.addresses[rows], into.get(c.key))
        return {c.key: out[c.key] for c in self.columns}

    def tensor_columns(self) -> list[ColumnRead]:
        return [c for c in self.columns if c.kind == "tensor"]

    def _alloc(self, shape: tuple[int, ...], dtype: str):
        import torch
        tdtype = torch.from_numpy(np.empty(0, dtype)).dtype
        if self.shared_memory:  # a worker's batch: shared already, so handing it over copies nothing
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            storage = torch.UntypedStorage._new_shared(max(nbytes, 1))
            return torch.empty(0, dtype=tdtype).set_(storage, 0, shape)
        if self.pin_memory:  # torch's pinned allocator caches and recycles blocks itself
            return torch.empty(shape, dtype=tdtype, pin_memory=True)
        return torch.from_numpy(self._pool.get(shape, dtype))

    def _out(self, c: ColumnRead, n: int, into):
        return into[:n] if into is not None else self._alloc((n, *c.shape), c.dtype)

    def _read_direct(self, index: int, c: ColumnRead, addresses: np.ndarray, into=None):
        loc = c.locations
        files, offsets = loc.locate(addresses)
        if (files < 0).any():
            raise RuntimeError(f"column {c.column!r}: a requested row is NULL (it should have been skipped)")
        tensor = self._out(c, len(addresses), into)
        flat = memoryview(tensor.numpy().reshape(-1).view(np.uint8))
        size = loc.value_bytes
        order = np.lexsort((offsets, files))  # storage order: what the page cache and readahead like
        run: list[memoryview] = []
        run_file, run_start, run_end = -1, 0, 0
        for j in order:
            f, off = int(files[j]), int(offsets[j])
            if run and (f != run_file or off != run_end or len(run) == IOV_MAX):
                _preadv_all(self._fd(index, run_file), run, run_start)
                run = []
            if not run:
                run_file, run_start, run_end = f, off, off
            run.append(flat[j * size:(j + 1) * size])
            run_end += size
        if run:
            _preadv_all(self._fd(index, run_file), run, run_start)
        return tensor

    def _read_lance(self, rows: np.ndarray, cols: list[ColumnRead], into: dict[str, Any]) -> dict[str, Any]:
        ids = self.row_ids[rows]
        order = np.argsort(ids, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        tbl = self.dataset()._take_rows(pa.array(ids[order], pa.uint64()), columns=sorted({c.column for c in cols}))
        if tbl.num_rows != len(rows):
            raise RuntimeError(f"Lance returned {tbl.num_rows} rows for {len(rows)} row ids")
        out: dict[str, Any] = {}
        for c in cols:
            col = tbl.column(c.column)
            if c.kind == "tensor":
                arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
                values = arr.values.to_numpy(zero_copy_only=False).reshape(len(arr), *c.shape)
                tensor = self._out(c, len(arr), into.get(c.key))
                np.take(values, back, axis=0, out=tensor.numpy())
                out[c.key] = tensor
            elif c.kind == "scalar":
                values = np.ascontiguousarray(col.to_numpy()[back])
                if self.shared_memory:  # a worker: numpy pickles by value; a tensor would cost a
                    out[c.key] = values  # shared-memory segment and an fd handover per batch
                else:
                    import torch
                    out[c.key] = torch.from_numpy(values)
            else:
                out[c.key] = col.take(pa.array(back)).to_pylist()
        return out


def _preadv_all(fd: int, buffers: list[memoryview], offset: int) -> None:
    """preadv that finishes short reads (the kernel may return less than asked)."""
    total = sum(len(b) for b in buffers)
    done = os.preadv(fd, buffers, offset)
    while done < total:
        rest, skip = [], done
        for b in buffers:
            if skip >= len(b):
                skip -= len(b)
                continue
            rest.append(b[skip:])
            skip = 0
        n = os.preadv(fd, rest, offset + done)
        if n <= 0:
            raise OSError(f"unexpected end of file reading {total} bytes at {offset}")
        done += n


def _torch():
    import torch
    return torch
