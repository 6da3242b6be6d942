"""TEST HARNESS, not featurekit's: the smallest real `TrainRun` / `EvalRun` over a Lance table.

It reads the recipe's columns with pylance from a table featurekit built, at one pinned
version, the way the core's run will (the core's shuffled, resumable DataLoader replaces it
later). The trainer under test sees only the protocol in `featurekit.trainer`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pyarrow as pa
import torch

from featurekit.plugins.trainer import ColumnInfo

META = b"featurekit."


class Interrupted(Exception):
    """Raised by `run.log` at `stop_after`: a run killed between two steps."""


def column_info(schema: pa.Schema, logical: str, column: str) -> ColumnInfo:
    field = schema.field(column)
    md = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    output = {k[len("featurekit.output."):]: v for k, v in md.items() if k.startswith("featurekit.output.")}
    shape = tuple(json.loads(output["shape"])) if "shape" in output else (
        (field.type.list_size,) if pa.types.is_fixed_size_list(field.type) else None)
    return ColumnInfo(logical=logical, column=column, type=field.type, shape=shape,
                      feature=md.get("featurekit.feature"), fingerprint=md.get("featurekit.fingerprint"),
                      params=json.loads(md.get("featurekit.params", "{}")), metadata=output)


def to_tensor(array: pa.ChunkedArray, shape: tuple[int, ...] | None) -> torch.Tensor:
    array = array.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return torch.from_numpy(values.reshape(len(array), *(shape or (array.type.list_size,))).copy())
    return torch.from_numpy(np.asarray(array.to_pylist()))


class Loader:
    """Batches of rows in an order that is a function of (seed, epoch, version)."""

    def __init__(self, data: Mapping[str, torch.Tensor], order: np.ndarray, batch_size: int, drop_last: bool,
                 version: int):
        self.data, self.order, self.batch_size, self.drop_last = data, order, batch_size, drop_last
        self.version = version
        self.position = 0   # batches already yielded

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while self.position < len(self):
            rows = self.order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            self.position += 1
            yield {name: t[torch.from_numpy(rows)] for name, t in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "version": self.version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert state["version"] == self.version
        self.position = int(state["position"])


class LanceTrainRun:
    """`TrainRun` over `uri` for `columns` ({logical: table column}); rows with a null in
    any of them (failed features) are left out, like a slice would."""

    def __init__(self, uri: str | Path, columns: Mapping[str, str], dir: Path | None, *, seed: int = 0,
                 steps: int | None = None, resume: bool = False, stop_after: int | None = None, key: str = "id"):
        ds = lance.dataset(str(uri))
        self.version = ds.version
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.seed, self.steps, self.resume, self.stop_after = seed, steps, resume, stop_after
        self.columns = {lg: column_info(ds.schema, lg, col) for lg, col in columns.items()}
        where = " AND ".join(f"{c} IS NOT NULL" for c in columns.values())
        table = ds.to_table(columns=[key, *columns.values()], filter=where).sort_by(key)
        self.keys = table.column(key).to_pylist()
        self.data = {lg: to_tensor(table.column(col), self.columns[lg].shape) for lg, col in columns.items()}
        self.logged: list[tuple[int, dict[str, float]]] = []
        self.total: int | None = None

    def loader(self, *, batch_size: int, epoch: int = 0, shuffle: bool = True, seed: int | None = None,
               drop_last: bool = True) -> Loader:
        n = len(self.keys)
        seed = self.seed if seed is None else seed
        order = np.random.default_rng([seed, epoch, self.version]).permutation(n) if shuffle else np.arange(n)
        return Loader(self.data, order, batch_size, drop_last, self.version)

    def log(self, step: int, **metrics: float) -> None:
        self.logged.append((step, metrics))
        if self.stop_after is not None and step == self.stop_after:
            raise Interrupted(step)

    def set_total(self, steps: int) -> None:
        self.total = steps

    def losses(self) -> dict[int, float]:
        return {step: m["loss"] for step, m in self.logged}


class LanceEvalRun:
    """`EvalRun` over `uri`: rows in key order with their key, at most `limit`."""

    def __init__(self, uri: str | Path, columns: Mapping[str, str], dir: Path | None, *, limit: int | None = None,
                 key: str = "id"):
        ds = lance.dataset(str(uri))
        self.dir, self.limit, self.key = (Path(dir) if dir else None), limit, key
        self.columns = {lg: column_info(ds.schema, lg, col) for lg, col in columns.items()}
        self.table = ds.to_table(columns=[key, *columns.values()]).sort_by(key)
        if limit is not None:
            self.table = self.table.slice(0, limit)
        self.names = dict(columns)
        self.done = 0

    def rows(self, *, batch_size: int):
        for start in range(0, self.table.num_rows, batch_size):
            part = self.table.slice(start, batch_size)
            out = {lg: part.column(col).to_pylist() for lg, col in self.names.items()}
            out["key"] = part.column(self.key).to_pylist()
            yield out

    def progress(self, n: int) -> None:
        self.done += n
