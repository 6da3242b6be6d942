"""featurekit's training loader vs the other ways to read shuffled fp16 tensors, in one run.

    python benchmarks/loader.py [--rows 800] [--dir DIR] [--rounds 2] [--batch-sizes 16,64]

A table of `--rows` rows of fp16[400 x 2048] (1.64 MB a row, the Qwen2.5-VL-3B vision
tower's output) is built by `featurekit apply` (4 fragments), copied to a Hugging Face
datasets Arrow file and to Parquet, and read with a warm page cache at each batch size by:

  featurekit shuffled (threads; and 2 worker processes), featurekit sequential,
  featurekit shuffled with every column read through Lance (direct=False),
  a LanceDB Permutation in featurekit's shuffled order, HF datasets `.shuffle()` with
  `with_format("numpy", dtype="float16")` (its own order), Parquet in featurekit's order
  (the same column types; and each tensor stored as one binary value), pylance `take` of
  unsorted ids, and `os.preadv` of the same rows' bytes (the ceiling: 1 thread with a new
  array a batch, 1 and 2 threads into reused buffers).

Every contender materializes numpy arrays or tensors; each pass is checked to yield every
row exactly once with the right first values. Rounds are interleaved; the best round is
reported (the machine is shared; compare figures of one run only). Targets (issue 11):
featurekit shuffled >= 8x the Permutation, >= HF datasets, >= 25% of the preadv ceiling,
>= 10x Parquet; 2 workers >= 0 workers; peak RSS bounded by the prefetch depth.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
os.environ["FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402

import featurekit  # noqa: E402
from featurekit.commands.bench import parquet_batches, permutation_batches, pread_batches, to_numpy, write_parquet
from featurekit.training.batches import BufferPool  # noqa: E402

TOK, HID = 400, 2048
ROW = TOK * HID * 2


class Hiddens(featurekit.Extractor):
    """Random fp16[400 x 2048] a row (random bits: no compression can flatter anyone)."""

    name = "bench.hiddens"
    version = "1"
    inputs = {"seed": "integer"}
    resources = featurekit.Resources(batch_size=16)

    def output_type(self):
        return pa.list_(pa.float16(), TOK * HID)

    def output_metadata(self):
        return {"shape": f"[{TOK}, {HID}]", "dtype": "float16"}

    def __call__(self, batch):
        seeds = batch.column("seed").to_numpy()
        out = np.empty((len(seeds), TOK * HID), np.uint16)
        for i, s in enumerate(seeds):
            out[i] = np.random.default_rng(int(s)).integers(0, 0x7BFF, TOK * HID, dtype=np.uint16)
        return pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1).view(np.float16), pa.float16()), TOK * HID)


def plugin() -> types.ModuleType:
    mod = types.ModuleType("bench_loader_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Hiddens])
    return mod


def build(root: Path, rows: int):
    """The table (by featurekit apply), its Lance dataset and the project."""
    from featurekit.testing import TestProject
    project = TestProject(root, plugins=[plugin()])
    spec = project.write({"hiddens": {"tier": 3, "extractor": "bench.hiddens", "inputs": {"seed": "id"}}},
                         rows=[{"id": i} for i in range(rows)])
    doc = yaml.safe_load(spec.read_text())
    doc["table"]["fragment_rows"] = 256  # 4 fragments: a table that grew by appends
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    ds = _open(project)
    if ds is None or ds.count_rows() != rows or "hiddens" not in ds.schema.names:
        shutil.rmtree(root / "data", ignore_errors=True)
        started = time.perf_counter()
        assert project.apply().ok
        print(f"built {rows} rows by featurekit apply in {time.perf_counter() - started:.1f}s", flush=True)
        ds = _open(project)
    return project, ds


def _open(project):
    import lance
    try:
        return lance.dataset(project.project().table_uri)
    except Exception:
        return None


def hf_copy(ds, path: Path):
    """The same rows in a Hugging Face datasets Arrow file (HF's own on-disk format, memory-mapped)."""
    import datasets
    if not path.exists():
        writer = None
        with pa.OSFile(str(path), "wb") as sink:
            for b in ds.to_batches(columns=["id", "hiddens"], batch_size=64):
                b = pa.record_batch([b.column("id"), b.column("hiddens")], names=["id", "hiddens"])
                writer = writer or pa.ipc.new_stream(sink, b.schema)
                writer.write_batch(b)
            writer.close()
    return datasets.Dataset.from_file(str(path))


def blob_parquet(ds, row_ids, path: str) -> None:
    """Each tensor as one binary value: the fastest Parquet layout for big rows found here."""
    import pyarrow.parquet as pq
    writer = None
    for start in range(0, len(row_ids), 32):
        t = ds._take_rows(pa.array(row_ids[start:start + 32], pa.uint64()), columns=["id", "hiddens"])
        h = t.column("hiddens").combine_chunks()
        raw = h.values.to_numpy(zero_copy_only=False).view(np.uint8).reshape(len(h), ROW)
        blob = pa.FixedSizeBinaryArray.from_buffers(pa.binary(ROW), len(h), [None, pa.py_buffer(raw)])
        t = pa.table({"id": t.column("id"), "hiddens": blob})
        writer = writer or pq.ParquetWriter(path, t.schema, compression="none")
        writer.write_table(t, row_group_size=1)
    writer.close()


def blob_batches(path: str, positions, batch_size: int):
    for b in parquet_batches(path, positions, batch_size, {}):
        yield {"id": b["id"], "hiddens": np.frombuffer(b"".join(b["hiddens"]), np.float16).reshape(-1, TOK, HID)}


def warm(paths) -> None:
    for p in paths:
        for f in ([p] if os.path.isfile(p) else [os.path.join(d, n) for d, _, ns in os.walk(p) for n in ns]):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


class Check:
    """Every pass must yield each expected id once, with the row's own first values."""

    def __init__(self, firsts: dict[int, np.ndarray]):
        self.firsts = firsts

    def __call__(self, name: str, batches, expect_ids) -> tuple[float, int]:
        started, seen = time.perf_counter(), []
        for b in batches:
            ids = np.asarray(b["id"]).tolist()
            h = b["hiddens"]
            h = h.numpy() if hasattr(h, "numpy") and not isinstance(h, np.ndarray) else np.asarray(h)
            flat = h.reshape(len(ids), -1)
            for j in (0, len(ids) - 1):
                if not np.array_equal(flat[j, :4].view(np.uint16), self.firsts[ids[j]]):
                    raise AssertionError(f"{name}: row {ids[j]} has another row's values")
            seen += ids
        seconds = time.perf_counter() - started
        if sorted(seen) != sorted(expect_ids):
            raise AssertionError(f"{name}: not every row exactly once ({len(seen)} rows, {len(set(seen))} distinct)")
        return seconds, len(seen)


def peak_rss(uri: str, batch_size: int, workers: int) -> dict:
    """Peak RSS (VmHWM: ru_maxrss survives exec on Linux, so a child would report ours) of a
    fresh process reading two shuffled epochs of the whole table, and of its workers."""
    code = textwrap.dedent(f"""
        import json, psutil
        from featurekit.training.dataloader import DataLoader
        def hwm(pid):
            for line in open(f"/proc/{{pid}}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        with DataLoader({uri!r}, columns=["id", "hiddens"], batch_size={batch_size}, num_workers={workers}) as dl:
            for _ in range(2):
                for b in dl:
                    pass
            kids = [hwm(p.pid) for p in psutil.Process().children(recursive=True)]
            print(json.dumps({{"self": hwm("self"), "workers": max(kids, default=0), "depth": dl.prefetch}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--dir", help="keep the table (and copies) here between runs; default: a temporary folder")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-sizes", default="16,64")
    ap.add_argument("--parquet-rows", type=int, default=64, help="rows of the same-types Parquet copy (slow to decode)")
    args = ap.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="featurekit-loader-bench-"))
    try:
        run(root, args)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args) -> None:
    import lancedb
    import torch

    from featurekit.training.dataloader import DataLoader
    root.mkdir(parents=True, exist_ok=True)
    project, ds = build(root, args.rows)
    uri = ds.uri
    probe = DataLoader(ds, columns=["id", "hiddens"], shuffle=False)
    row_ids = probe.row_ids
    firsts = {}
    for b in ds.to_batches(columns=["id", "hiddens"], batch_size=32):
        h = b.column("hiddens").values.to_numpy(zero_copy_only=False).view(np.uint16).reshape(b.num_rows, -1)
        firsts.update({i: h[k, :4].copy() for k, i in enumerate(b.column("id").to_pylist())})
    check = Check(firsts)
    hf = hf_copy(ds, root / "hf.arrow")
    pq_same, pq_blob = str(root / "same.parquet"), str(root / "blob.parquet")
    if not os.path.exists(pq_same):
        write_parquet(ds, row_ids[:args.parquet_rows], ["id", "hiddens"], pq_same, 1)
    if not os.path.exists(pq_blob):
        blob_parquet(ds, row_ids, pq_blob)
    table = lancedb.connect(str(root / "data")).open_table("test")
    warm([uri, str(root / "hf.arrow"), pq_same, pq_blob])
    print(f"{args.rows} rows x fp16[{TOK} x {HID}] ({ROW / 1e6:.2f} MB a row, {args.rows * ROW / 1e9:.2f} GB), "
          f"{len(ds.get_fragments())} fragments, Lance file format {ds.data_storage_version}; "
          f"torch {torch.__version__}, {os.cpu_count()} cores; best of {args.rounds} interleaved rounds\n", flush=True)
    started = time.perf_counter()
    n = ds.count_rows(filter="hiddens IS NOT NULL")
    scan = time.perf_counter() - started
    started = time.perf_counter()
    DataLoader(ds, columns=["hiddens"], shuffle=False)
    built = time.perf_counter() - started
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(100):
        ds._take_rows(pa.array(np.sort(rng.choice(probe.row_ids, 16, replace=False)), pa.uint64()), columns=["id"])
    small = (time.perf_counter() - started) / 100
    print(f"finding the rows with a value: Lance filter 'hiddens IS NOT NULL' {scan:.2f}s ({n} rows); "
          f"building a featurekit loader (NULLs from the pages, one row verified) {built:.2f}s; a Lance take of "
          f"16 rows of the int64 column alone {small * 1e3:.2f} ms (why featurekit keeps scalar columns in memory)\n")

    where = ds.to_table(columns=["id"], with_row_address=True)
    env = types.SimpleNamespace(ds=ds, table=table, hf=hf, pq_same=pq_same, pq_blob=pq_blob, probe=probe,
                                row_ids=row_ids, check=check, args=args,
                                addr_ids=dict(zip(where.column("_rowaddr").to_pylist(), where.column("id").to_pylist())))
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        compare(bs, env)
    base = subprocess.run([sys.executable, "-c", "import torch, lance, featurekit.dataloader; "
                           "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"],
                          capture_output=True, text=True, check=True)
    imports = int(base.stdout) // 1024
    print(f"peak RSS (fresh process, 2 shuffled epochs of the whole table; importing torch, lance and featurekit "
          f"alone: {imports:,} MB):")
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        for workers in (0, 2):
            r = peak_rss(uri, bs, workers)
            print(f"  batch {bs:>3}, {workers} workers: {r['self']:,} MB"
                  + (f" (each worker at most {r['workers']:,} MB)" if workers else "")
                  + f"; prefetch depth {r['depth']} x {bs * ROW / 1e6:,.0f} MB a batch "
                  f"(imports + (depth + 2) batches = {imports + (r['depth'] + 2) * bs * ROW / 2**20:,.0f} MB); "
                  f"table {args.rows * ROW / 1e6:,.0f} MB")



def compare(bs: int, env) -> None:
    """Every contender at batch size `bs`, interleaved over the rounds; prints the best of each."""
    from featurekit.training.dataloader import DataLoader
    ds, args, row_ids, probe = env.ds, env.args, env.row_ids, env.probe
    shapes = {"hiddens": (TOK, HID)}
    fk = DataLoader(ds, columns=["id", "hiddens"], batch_size=bs, seed=0)
    fk_workers = DataLoader(ds, columns=["id", "hiddens"], batch_size=bs, seed=0, num_workers=2)
    fk_seq = DataLoader(ds, columns=["id", "hiddens"], batch_size=bs, shuffle=False)
    fk_lance = DataLoader(ds, columns=["id", "hiddens"], batch_size=bs, seed=0, direct=False)
    fk_fresh = DataLoader(ds, columns=["id", "hiddens"], batch_size=bs, seed=0)
    fk_fresh._reader._pool = BufferPool(0)  # ablation: a new buffer every batch
    started = time.perf_counter()
    for _ in fk_workers:  # start the (persistent) workers outside the timing
        pass
    worker_start = time.perf_counter() - started
    order = fk.epoch_rows(1)  # what featurekit reads in the measured epochs
    where = {a: k for k, a in enumerate(probe.row_addresses.tolist())}
    pos = np.array([where[a] for a in order.tolist()])
    plain = [r.locations for r in fk.reads if r.locations is not None]
    assert np.array_equal(np.sort(order), probe.row_addresses)  # the ceiling reads each row once too

    def take_unsorted():
        for k in range(0, len(pos), bs):
            ids = pa.array(row_ids[pos[k:k + bs]], pa.uint64())
            yield to_numpy(ds._take_rows(ids, columns=["id", "hiddens"]), shapes)

    loaders = {"featurekit shuffled, threads": fk, "featurekit shuffled, 2 workers": fk_workers,
               "featurekit sequential": fk_seq, "featurekit shuffled, new buffer a batch": fk_fresh,
               "featurekit shuffled, via Lance take": fk_lance}
    contenders = {
        **{name: loader.__iter__ for name, loader in loaders.items()},
        "LanceDB Permutation, same order": lambda: permutation_batches(env.table, row_ids[pos], ["id", "hiddens"],
                                                                       bs, shapes),
        "HF datasets .shuffle(), numpy fp16": lambda: env.hf.shuffle(seed=0).with_format(
            "numpy", dtype="float16").iter(batch_size=bs),
        "Parquet (same types), same order": lambda: parquet_batches(env.pq_same, pos[pos < args.parquet_rows], bs,
                                                                    shapes),
        "Parquet (tensor as binary), same order": lambda: blob_batches(env.pq_blob, pos, bs),
        "pylance take, unsorted ids": take_unsorted,
    }
    ceilings = {"os.preadv, 1 thread, new array a batch": (1, False, False),
                "os.preadv, 1 thread, reused buffer": (1, True, False),
                "os.preadv, 2 threads, reused buffer": (2, True, False),
                "os.preadv, 2 threads, reused buffer, sorted": (2, True, True)}
    everyone = [env.addr_ids[a] for a in probe.row_addresses.tolist()]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, make in contenders.items():
            if name in loaders:
                loaders[name].set_epoch(1)
            expect = everyone[:args.parquet_rows] if name.startswith("Parquet (same") else everyone
            seconds, n = env.check(name, make(), expect)
            best[name] = max(best.get(name, 0.0), n / seconds)
        for name, (threads, reuse, sort) in ceilings.items():
            started, n = time.perf_counter(), 0
            for b in pread_batches(plain, order, bs, threads=threads, reuse=reuse, sort=sort):
                n += len(b["hiddens"])
            assert n == len(order)
            best[name] = max(best.get(name, 0.0), n / (time.perf_counter() - started))
    report(bs, best, fk, worker_start)
    for loader in loaders.values():
        loader.close()


def report(bs: int, best: dict[str, float], fk, worker_start: float) -> None:
    fast = best["featurekit shuffled, threads"]
    print(f"batch {bs}:")
    print(f"  {'reader':<46} {'rows/s':>8} {'GB/s':>6} {'featurekit / it':>16}")
    for name, r in best.items():
        ratio = "" if name == "featurekit shuffled, threads" else f"{fast / r:.2f}x"
        print(f"  {name:<46} {r:>8,.0f} {r * ROW / 1e9:>6.2f} {ratio:>16}")
    ceiling = max(best[k] for k in best if k.startswith("os.preadv"))
    q = fk.shuffle_quality(1)
    print(f"  targets: vs Permutation {fast / best['LanceDB Permutation, same order']:.1f}x (>= 8); "
          f"vs HF {fast / best['HF datasets .shuffle(), numpy fp16']:.2f}x (>= 1); "
          f"of the best preadv ceiling {fast / ceiling:.0%} (>= 25%); vs Parquet {fast / best['Parquet (same types), same order']:.0f}x (>= 10); "
          f"2 workers / threads {best['featurekit shuffled, 2 workers'] / fast:.2f} "
          f"(workers started in {worker_start:.1f}s, not timed)")
    print(f"  shuffle quality: correlation of epoch and storage position {q['correlation']:+.3f}; fragments per batch "
          f"{q['fragments_per_batch']:.2f} (uniform shuffle: {q['fragments_per_batch_uniform']:.2f})\n", flush=True)


if __name__ == "__main__":
    main()
