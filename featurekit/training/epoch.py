"""The order of an epoch: pure functions of (rows, seed, epoch), no I/O.

The loader's guarantees live here, so they can be tested on arrays: every row once per
epoch, the same order for the same (seed, epoch) and rows, shards for distributed
training that have equal lengths (DDP needs every rank to take the same number of steps).
Rows are positions 0..n-1 in the pinned version's eligible rows, in storage order.
"""
from __future__ import annotations

import math

import numpy as np


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """A permutation of range(n) (int64): uniform when `shuffle`, storage order otherwise."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))
    return rng.permutation(n).astype(np.int64, copy=False)


def shard(order: np.ndarray, rank: int, world_size: int, drop_last: bool = False) -> np.ndarray:
    """This rank's rows, as torch's DistributedSampler picks them (strided over the order).

    Shards always have equal lengths. When world_size does not divide the rows, `drop_last`
    leaves out the last n % world_size rows of this epoch's order (other rows each epoch);
    otherwise the order is padded with its first rows, so a few rows appear twice in the
    epoch (across ranks). With world_size 1 neither happens.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), not {rank} of {world_size}")
    n = len(order)
    if world_size == 1:
        return order
    if drop_last:
        total = (n // world_size) * world_size
        padded = order[:total]
    else:
        total = math.ceil(n / world_size) * world_size
        padded = order if total == n else np.concatenate([order, np.resize(order, total - n)])
    return padded[rank:total:world_size]


def num_batches(rows: int, batch_size: int, drop_last: bool) -> int:
    return rows // batch_size if drop_last else math.ceil(rows / batch_size)


def batches(rows: np.ndarray, batch_size: int, drop_last: bool, start: int = 0) -> list[np.ndarray]:
    """Consecutive batches of `rows` from position `start` (a resumed epoch starts mid-way).

    Batch boundaries are counted from 0, not from `start`, so a resume after a whole number
    of batches yields exactly the batches the interrupted run would have.
    """
    end = len(rows) if not drop_last else (len(rows) // batch_size) * batch_size
    out = []
    first = start
    while first < end:
        last = min(end, (first // batch_size + 1) * batch_size)
        out.append(rows[first:last])
        first = last
    return out


def shuffle_quality(storage_rank: np.ndarray, fragment: np.ndarray, batch_size: int) -> dict[str, float]:
    """How well an epoch's order hides storage order.

    `storage_rank[i]` is the storage position of the i-th row read, `fragment[i]` its
    fragment. Returns the Pearson correlation between epoch and storage position (0 for a
    uniform shuffle, 1 for a sequential read), the mean number of fragments a batch draws
    from, and what a uniform shuffle would give.
    """
    n = len(storage_rank)
    if n < 2:
        return {"correlation": 0.0, "fragments_per_batch": 1.0, "fragments_per_batch_uniform": 1.0}
    corr = float(np.corrcoef(np.arange(n), storage_rank)[0, 1])
    per_batch = [len(np.unique(fragment[i:i + batch_size])) for i in range(0, n, batch_size)]
    _, sizes = np.unique(fragment, return_counts=True)
    b = min(batch_size, n)
    uniform = float(np.sum(1.0 - np.exp(_log_comb(n - sizes, b) - _log_comb(n, b))))
    return {"correlation": corr, "fragments_per_batch": float(np.mean(per_batch)),
            "fragments_per_batch_uniform": uniform}


def _log_comb(n, k: int) -> np.ndarray:
    """log C(n, k) elementwise over n; -inf where n < k."""
    n = np.asarray(n, dtype=np.float64)
    out = np.full(n.shape, -np.inf)
    ok = n >= k
    lg = np.vectorize(math.lgamma)
    if ok.any():
        out[ok] = lg(n[ok] + 1) - lg(k + 1) - lg(n[ok] - k + 1)
    return out
