"""Curation benchmarks, measured in one run. Prints figures and ratios.

    python benchmarks/curation.py [--baseline-rows 100000] [--rows 1000000] [--table-rows 1000000]

1. near-duplicate grouping, synthetic uint64 hashes with planted groups (copies of earlier
   hashes with 0-4 bits flipped), max_distance 4: featurekit's multi-index hashing against a
   plain pybktree baseline (a BK-tree, a query per hash, union-find) on the same hashes;
   identical groups checked; target >= 10x.
2. the same at --rows (1,000,000) hashes: target under 60 s.
3. incremental: a --table-rows table with a slice (where, near dedupe, split) through
   featurekit apply; then 1% rows appended: rows examined and the slice's time against
   the full computation's (target < 5%).
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import featurekit  # noqa: E402
from featurekit.curation.neardup import components, near_pairs, plan_bands  # noqa: E402


def planted_hashes(n: int, d: int, seed: int = 0, share: float = 0.2) -> np.ndarray:
    """Random hashes; the last `share` of them copies of earlier ones with 0..d bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2 ** 64, n, dtype=np.uint64)
    k = int(n * share)
    src = rng.integers(0, n - k, k)
    flips = np.zeros(k, np.uint64)
    for _ in range(d):  # up to d distinct bits (repeats cancel or coincide: fewer is fine)
        on = rng.random(k) < 0.7
        flips ^= np.where(on, np.uint64(1) << rng.integers(0, 64, k).astype(np.uint64), np.uint64(0))
    h[n - k:] = h[src] ^ flips
    return h


def groups_of(labels: np.ndarray) -> set[frozenset]:
    out: dict[int, list[int]] = {}
    for node, label in enumerate(labels.tolist()):
        out.setdefault(label, []).append(node)
    return {frozenset(g) for g in out.values() if len(g) > 1}


def featurekit_groups(h: np.ndarray, d: int) -> np.ndarray:
    i, j = near_pairs(h, None, d)
    return components(len(h), i, j)


def bktree_groups(h: np.ndarray, d: int) -> np.ndarray:
    """What a competent user writes with pybktree: index every hash, query each, union."""
    import pybktree
    values = [int(x) for x in h]
    tree = pybktree.BKTree(lambda a, b: (a[0] ^ b[0]).bit_count(), [(v, n) for n, v in enumerate(values)])
    parent = list(range(len(values)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n, v in enumerate(values):
        for _, (_, m) in tree.find((v, n), d):
            a, b = find(n), find(m)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(x) for x in range(len(values))])


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def bench_grouping(n: int, d: int) -> None:
    h = planted_hashes(n, d)
    ours, t_ours = timed(featurekit_groups, h, d)
    print(f"  featurekit (bands {plan_bands(n, n, d).widths}, radius {plan_bands(n, n, d).radius}): "
          f"{t_ours:.2f} s, {len(groups_of(ours))} groups")
    base, t_base = timed(bktree_groups, h, d)
    same = groups_of(ours) == groups_of(base)
    print(f"  pybktree baseline: {t_base:.2f} s, {len(groups_of(base))} groups; identical groups: {same}")
    print(f"  speed-up: {t_base / t_ours:.1f}x (target >= 10x)")


def bench_scale(n: int, d: int) -> None:
    h = planted_hashes(n, d, seed=1)
    labels, t = timed(featurekit_groups, h, d)
    print(f"  {n:,} hashes at max_distance {d}: {t:.1f} s, {len(groups_of(labels)):,} groups (target < 60 s)")


SPEC = """\
featurekit: 1
name: curation-bench
table: {db: data, name: t, fragment_rows: 65536}
source: {format: parquet, path: "raw/*.parquet", key: id}
slices:
  curated:
    where: "quality >= 2"
    dedupe: {by: [question], near: {column: h, max_distance: 4}}
    split: {by: image_id, seed: 0, fractions: {train: 0.9, val: 0.1}}
"""


def write_rows(path: Path, start: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = (start + np.arange(n)) // 2
    h = planted_hashes(n, 4, seed=seed)
    table = pa.table({"id": np.arange(start, start + n), "image_id": images,
                      "question": rng.integers(0, 50, n).astype(str), "quality": rng.integers(0, 5, n),
                      "h": h.astype(np.int64)})
    pq.write_table(table, path)


def bench_incremental(rows: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="fk-curation-"))
    (root / "raw").mkdir()
    write_rows(root / "raw" / "a.parquet", 0, rows, seed=2)
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    result = featurekit.apply(spec)
    full = result.run.slices["curated"]
    print(f"  full: {full.examined:,} rows examined in {full.seconds:.2f} s "
          f"({', '.join(f'{k} {v:,}' for k, v in full.added.items())} kept)")
    extra = rows // 100
    write_rows(root / "raw" / "b.parquet", rows, extra, seed=3)
    result = featurekit.apply(spec)
    inc = result.run.slices["curated"]
    print(f"  append 1%: {inc.examined:,} rows examined (appended {extra:,}) in {inc.seconds:.2f} s; "
          f"{inc.seconds / full.seconds:.1%} of the full time (target < 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--distance", type=int, default=4)
    args = parser.parse_args()
    random.seed(0)
    print(f"1. near-duplicate groups, {args.baseline_rows:,} hashes, max_distance {args.distance}")
    bench_grouping(args.baseline_rows, args.distance)
    print(f"2. scale, max_distance {args.distance}")
    bench_scale(args.rows, args.distance)
    print(f"3. incremental slice on a {args.table_rows:,}-row table")
    bench_incremental(args.table_rows)


if __name__ == "__main__":
    main()
