"""`featurekit search` latency through an IVF_PQ index vs a flat scan, against raw pylance.

    python benchmarks/search.py                      # 1,000,000 x 512 fp16 (the issue's size)
    python benchmarks/search.py --rows 200000 --queries 10
    python benchmarks/search.py --reuse /tmp/fk-search-bench-XXXX   # the table (and index) of an earlier run

Writes N normalized fp16 vectors (clustered, as embeddings are) to a Lance table that a spec
reads, times `featurekit.search(like=KEY)` with the index (IVF_PQ, metric l2: queried in its
own metric) and with `exact=True` (flat scan), and the same raw `dataset.to_table(nearest=...)`
calls in the same run; prints medians, the ratios, and the index path's recall@k against the
flat scan's exact top-k.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import featurekit

SPEC = """featurekit: 1
name: search-bench
table: {db: data, name: vectors}
source: {format: parquet, path: rows.parquet, key: id}
"""


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1024, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float16)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        v = centers[rng.integers(0, len(centers), m)] + 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        out[start:start + m] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
    return out


def build(root: Path, args) -> None:
    t0 = time.perf_counter()
    vecs = vectors(args.rows, args.dim)
    table = pa.table({"id": pa.array(np.arange(args.rows)),
                      "v": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), args.dim)})
    pq.write_table(table.slice(0, 1), root / "rows.parquet")  # the spec's source (search ingests nothing)
    (root / "spec.yaml").write_text(SPEC)
    ds = lance.write_dataset(table, str(root / "data" / "vectors.lance"), max_rows_per_file=1 << 20)
    print(f"wrote {args.rows} x {args.dim} fp16 vectors in {time.perf_counter() - t0:.1f}s ({root})")
    t0 = time.perf_counter()
    ds.create_index("v", index_type="IVF_PQ", num_partitions=args.partitions, num_sub_vectors=args.dim // 16,
                    metric="l2")
    print(f"IVF_PQ index ({args.partitions} partitions, {args.dim // 16} sub-vectors) in "
          f"{time.perf_counter() - t0:.1f}s")


def median_seconds(fn, queries) -> tuple[float, list]:
    times, results = [], []
    fn(queries[0])  # warm: the index and the files' metadata cached, as for every query after the first
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=256)
    parser.add_argument("--reuse", type=Path, help="the folder of an earlier run: its table and index")
    args = parser.parse_args()
    root = args.reuse or Path(tempfile.mkdtemp(prefix="fk-search-bench-"))
    if args.reuse is None:
        build(root, args)
    ds = lance.dataset(str(root / "data" / "vectors.lance"))
    args.rows = ds.count_rows()
    vecs = np.asarray(ds.to_table(columns=["v"]).column("v").combine_chunks().flatten(), np.float16).reshape(
        args.rows, -1)
    project = featurekit.load_spec(root / "spec.yaml")
    rng = np.random.default_rng(1)
    keys = [int(k) for k in rng.integers(0, args.rows, args.queries)]
    k = args.k

    def raw(key, index: bool):
        q = vecs[key].astype(np.float32)
        nearest = {"column": "v", "q": q, "k": k, "use_index": index, "metric": "l2" if index else "cosine",
                   **({"refine_factor": 10, "nprobes": 20} if index else {})}
        return ds.to_table(columns=["id", "v"], nearest=nearest, filter=f"NOT (id = {key})", prefilter=True,
                           disable_scoring_autoprojection=True)  # the same query featurekit makes

    raw_index, _ = median_seconds(lambda key: raw(key, True), keys)
    raw_flat, _ = median_seconds(lambda key: raw(key, False), keys)
    fk_index, through = median_seconds(lambda key: featurekit.search(project, "v", like=key, k=k), keys)
    fk_flat, exact = median_seconds(lambda key: featurekit.search(project, "v", like=key, k=k, exact=True), keys)
    assert all(r.index for r in through) and not any(r.index for r in exact)
    recall = statistics.mean(len({h.key for h in a.hits} & {h.key for h in b.hits}) / k
                             for a, b in zip(through, exact))
    print(f"{args.rows} rows, k={k}, median of {args.queries} queries:")
    print(f"  raw pylance, index:         {raw_index * 1000:8.1f} ms")
    print(f"  featurekit search, index:   {fk_index * 1000:8.1f} ms  ({fk_index / raw_index:.2f}x raw)")
    print(f"  raw pylance, flat scan:     {raw_flat * 1000:8.1f} ms")
    print(f"  featurekit search --exact:  {fk_flat * 1000:8.1f} ms  ({fk_flat / raw_flat:.2f}x raw)")
    print(f"  index vs flat scan:         {fk_flat / fk_index:.1f}x faster through the index; "
          f"recall@{k} of the index path {recall:.3f}")


if __name__ == "__main__":
    main()
