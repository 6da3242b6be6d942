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
4. vector near duplicates (`near: {column, max_cosine_distance: 0.05}`) on --vector-rows
   (1,000,000) x 512 normalized float16 embeddings around 1,000 topics, 5% of them planted
   copies of earlier rows at cosine distance <= 0.05: recall of the planted pairs (target
   >= 0.95), no unrelated pair grouped (every group one planted family), wall and CPU time
   (target under 5 minutes on 2 cores).
5. the same on --vector-baseline-rows (200,000) rows against exact blocked all-pairs with numpy
   (float32 products of unit vectors, blocks of 2,048 rows against all rows, the upper
   triangle); identical pairs checked on the blocks run; target >= 10x. The baseline runs
   --exact-fraction of its row blocks (default all) and is extrapolated linearly from them
   when less: its cost is the same for every block.
6. nearest-neighbour search on the --vector-rows table through an IVF_PQ index vs a flat
   scan (Lance, k=20, 10 queries): latency of each and recall@20 of the index.

Sections run with --sections (default 1,2,3,4,5,6). Times are wall clock and process CPU;
the machine's load average is printed (a shared machine stretches wall time, not CPU time).
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


# -- vectors ----------------------------------------------------------------------------------

DIM = 512
THRESHOLD = 0.05


def planted_vectors(n: int, dim: int = DIM, topics: int = 1000, seed: int = 0, share: float = 0.05,
                    t: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """float16 unit vectors around `topics` centres (two rows of a topic are ~0.4 apart); the
    last `share` are copies of earlier rows moved by a cosine distance uniform in [0, t].
    Returns the vectors and each row's family (its source row for a copy, itself otherwise)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(topics, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float16)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        b = centers[rng.integers(0, topics, m)] + rng.normal(size=(m, dim)).astype(np.float32) * 0.8
        out[s:s + m] = b / np.linalg.norm(b, axis=1, keepdims=True)
    k = int(n * share)
    src = np.sort(rng.choice(n - k, k, replace=False))
    base = out[src].astype(np.float32)
    noise = rng.normal(size=(k, dim)).astype(np.float32)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    angle = np.arccos(1 - rng.uniform(0, t, k)).astype(np.float32)[:, None]
    out[n - k:] = base * np.cos(angle) + noise * np.sin(angle)
    family = np.arange(n)
    family[n - k:] = src
    return out, family


def cpu_timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def vector_groups(v: np.ndarray, stats=None):
    from featurekit.curation.vectordup import near_vector_pairs
    i, j = near_vector_pairs(v, None, THRESHOLD, stats=stats)
    return i, j, components(len(v), i, j)


def judge(v, family, i, j, labels) -> tuple[float, int, int]:
    """(recall of the planted pairs within the threshold, groups mixing families, pairs)."""
    from featurekit.curation.vectordup import cosine_distance64
    copies = np.flatnonzero(family != np.arange(len(v)))
    d = cosine_distance64(v[family[copies]], v[copies])  # planted as <= t; float16 storage moves a few past it
    planted = copies[d <= THRESHOLD]
    found = set(zip(i.tolist(), j.tolist()))
    recall = sum((int(family[c]), int(c)) in found for c in planted) / max(len(planted), 1)
    grouped = labels != np.arange(len(v))
    members = np.flatnonzero(grouped | np.isin(np.arange(len(v)), labels[grouped]))
    mixed = len(set(zip(labels[members].tolist(), family[members].tolist()))) - len(set(labels[members].tolist()))
    return recall, mixed, len(found)


def bench_vectors(n: int) -> None:
    from featurekit.curation.vectordup import ClusterStats
    v, family = planted_vectors(n)
    stats = ClusterStats()
    (i, j, labels), wall, cpu = cpu_timed(vector_groups, v, stats)
    recall, mixed, found = judge(v, family, i, j, labels)
    print(f"  {n:,} x {DIM} float16, {int(n * 0.05):,} planted copies: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({load()}); {stats.clusters} clusters, {stats.capped:,} vectors capped at their guest limit")
    print(f"  recall of planted pairs {recall:.4f} (target >= 0.95); {found:,} pairs; groups mixing unrelated rows: "
          f"{mixed} (target 0); under 5 minutes: {wall < 300} (wall), {cpu / 2 < 300} (CPU / 2 cores)")


def exact_blocked(u: np.ndarray, t: float, fraction: float, block: int = 2048):
    """What a user writes with numpy: unit vectors, blocks of rows against all rows (upper
    triangle), float32. Runs `fraction` of the blocks (evenly spread); returns their pairs."""
    blocks = list(range(0, len(u), block))
    run = blocks[::max(1, round(1 / fraction))] if fraction < 1 else blocks
    floor = np.float32(1 - t)
    ut = np.ascontiguousarray(u.T)
    out = set()
    for s in run:
        sims = u[s:s + block] @ ut[:, s:]
        r, c = np.nonzero(sims >= floor)
        out.update((s + a, s + b) for a, b in zip(r.tolist(), c.tolist()) if b > a)
    return out, len(run) / len(blocks)


def bench_vectors_baseline(n: int, fraction: float) -> None:
    from featurekit.curation.vectordup import near_vector_pairs, unit_rows
    v, _ = planted_vectors(n, seed=1)
    (i, j), wall, cpu = cpu_timed(near_vector_pairs, v, None, THRESHOLD)
    print(f"  featurekit: {wall:.1f} s wall, {cpu:.1f} s CPU, {len(i):,} pairs ({load()})")
    u = unit_rows(v)[0]
    (pairs, ran), b_wall, b_cpu = cpu_timed(exact_blocked, u, THRESHOLD, fraction)
    scale = 1 / ran
    # the blocks run: the same pairs (pairs within 1e-4 of t may differ by float32 rounding: counted)
    ours = {(a, b) for a, b in zip(i.tolist(), j.tolist())}
    blocks_run = set(range(0, n, 2048)[::max(1, round(1 / fraction))]) if fraction < 1 else None
    mine = ours if blocks_run is None else {p for p in ours if (p[0] // 2048) * 2048 in blocks_run}
    print(f"  exact blocked all-pairs (numpy float32): {b_wall:.1f} s wall, {b_cpu:.1f} s CPU for {ran:.0%} of the "
          f"blocks" + (f", {b_wall * scale:.0f} s wall / {b_cpu * scale:.0f} s CPU extrapolated" if ran < 1 else "")
          + f"; pairs differ on the blocks run: {len(mine ^ pairs)}")
    print(f"  speed-up: {b_wall * scale / wall:.1f}x wall, {b_cpu * scale / cpu:.1f}x CPU (target >= 10x)")


def bench_search(n: int, queries: int = 10, k: int = 20) -> None:
    import lance
    v, _ = planted_vectors(n, seed=2)
    root = Path(tempfile.mkdtemp(prefix="fk-search-"))
    emb = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM)
    ds = lance.write_dataset(pa.table({"id": np.arange(n), "emb": emb}), str(root / "t.lance"),
                             max_rows_per_file=1 << 20)
    _, wall, cpu = cpu_timed(ds.create_index, "emb", "IVF_PQ", metric="cosine", num_partitions=256,
                             num_sub_vectors=32)
    ds = lance.dataset(str(root / "t.lance"))
    print(f"  IVF_PQ index (256 partitions, 32 sub-vectors) on {n:,} rows built in {wall:.0f} s wall, "
          f"{cpu:.0f} s CPU ({load()})")
    rng = np.random.default_rng(3)
    qs = v[rng.choice(n, queries, replace=False)].astype(np.float32)
    got, indexed, flat = [], [], []
    for q in qs:
        for use_index, times, out in ((True, indexed, got), (False, flat, None)):
            t0 = time.perf_counter()
            res = ds.to_table(nearest={"column": "emb", "q": q, "k": k, "nprobes": 20, "refine_factor": 5,
                                       "use_index": use_index}, columns=["id"])
            times.append(time.perf_counter() - t0)
            ids = res.column("id").to_pylist()
            if out is not None:
                out.append(set(ids))
            else:
                got[-1] = len(got[-1] & set(ids)) / k
    print(f"  k={k}: through the index {np.median(indexed) * 1000:.1f} ms median, flat scan "
          f"{np.median(flat) * 1000:.1f} ms median: {np.median(flat) / np.median(indexed):.0f}x; "
          f"recall@{k} of the index (nprobes 20, refine 5) {np.mean(got):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--distance", type=int, default=4)
    parser.add_argument("--vector-rows", type=int, default=1_000_000)
    parser.add_argument("--vector-baseline-rows", type=int, default=200_000)
    parser.add_argument("--exact-fraction", type=float, default=1.0)
    parser.add_argument("--sections", default="1,2,3,4,5,6")
    args = parser.parse_args()
    sections = {int(x) for x in args.sections.split(",")}
    random.seed(0)
    if 1 in sections:
        print(f"1. near-duplicate groups, {args.baseline_rows:,} hashes, max_distance {args.distance}")
        bench_grouping(args.baseline_rows, args.distance)
    if 2 in sections:
        print(f"2. scale, max_distance {args.distance}")
        bench_scale(args.rows, args.distance)
    if 3 in sections:
        print(f"3. incremental slice on a {args.table_rows:,}-row table")
        bench_incremental(args.table_rows)
    if 4 in sections:
        print(f"4. vector near duplicates, max_cosine_distance {THRESHOLD}")
        bench_vectors(args.vector_rows)
    if 5 in sections:
        print(f"5. vector near duplicates on {args.vector_baseline_rows:,} rows against exact blocked all-pairs")
        bench_vectors_baseline(args.vector_baseline_rows, args.exact_fraction)
    if 6 in sections:
        print(f"6. search on {args.vector_rows:,} rows: IVF_PQ index vs flat scan")
        bench_search(args.vector_rows)


if __name__ == "__main__":
    main()
