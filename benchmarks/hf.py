"""Hugging Face datasets in and out, against `datasets` itself, measured in one run. Prints
figures and ratios.

    python benchmarks/hf.py [--rows 20000] [--px 64]

1. in: the hf source reading a DatasetDict saved with save_to_disk (PNG images), vs
   `datasets.load_from_disk` + its Arrow table (the raw library; both memory-map the files),
   and vs a Python loop over the rows (what a converter script does: `for row in ds`).
   Target: within 2x of load_from_disk, far ahead of the loop.
2. out: `featurekit.training.hfdataset.to_dataset` (read(format="hf")'s last step) on an Arrow
   table of the same rows, vs `datasets.Dataset.from_list` of its rows (through Python) and
   vs the raw library's way to the same Dataset: `datasets.Dataset(InMemoryTable(table),
   fingerprint=...).cast_column("image", datasets.Image())`. Target: within 2x of it.
3. end to end: `featurekit apply` of the hf spec (ingest only, no features), then
   `featurekit.read(..., format="hf")` of every row, rows/s.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")


def timed(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_dataset(root: Path, rows: int, px: int) -> Path:
    import datasets
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(64):  # 64 distinct PNGs, reused: encoding is not what is measured
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (px, px, 3), np.uint8)).save(buf, format="PNG")
        tiles.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features({"id": datasets.Value("int64"), "question": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["no", "yes"]), "image": datasets.Image()})

    def split(ids):
        return datasets.Dataset.from_dict({"id": ids, "question": [f"question {i}?" for i in ids],
                                           "label": [i % 2 for i in ids], "image": [tiles[i % 64] for i in ids]},
                                          features=features)
    cut = rows * 9 // 10
    datasets.DatasetDict({"train": split(list(range(cut))), "test": split(list(range(cut, rows)))}) \
        .save_to_disk(str(root / "hfdata"))
    return root / "hfdata"


def bench_in(folder: Path) -> None:
    import datasets
    import pyarrow as pa

    from featurekit.builtin.hf import HfSource
    source = HfSource()
    files = source.locate(folder.parent, folder.name)

    def ours():
        return pa.concat_tables([source.read(p).table for p in files])

    def raw():
        dd = datasets.load_from_disk(str(folder))
        return [d.data.table for d in dd.values()]

    def loop():
        dd = datasets.load_from_disk(str(folder)).cast_column("image", datasets.Image(decode=False))
        return [{**row, "image": row["image"]["bytes"]} for d in dd.values() for row in d]

    rows = ours().num_rows
    t_ours, t_raw, t_loop = timed(ours), timed(raw), timed(loop, 1)
    print(f"1. in ({rows:,} rows): hf source {t_ours * 1e3:.1f} ms, load_from_disk {t_raw * 1e3:.1f} ms "
          f"(ratio {t_ours / t_raw:.2f}x), python loop {t_loop * 1e3:.0f} ms ({t_loop / t_ours:.0f}x slower than ours)")


def bench_out(folder: Path) -> None:
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    from featurekit.builtin.hf import HfSource
    from featurekit.training.hfdataset import to_dataset
    source = HfSource()
    table = pa.concat_tables([source.read(p).table for p in source.locate(folder.parent, folder.name)])
    rows = table.to_pylist()
    t_ours = timed(lambda: to_dataset(table, ["image"], fingerprint="bench"))
    t_raw = timed(lambda: datasets.Dataset(InMemoryTable(table), fingerprint="bench")
                  .cast_column("image", datasets.Image()))
    t_hashed = timed(lambda: datasets.Dataset(InMemoryTable(table)), 1)
    t_list = timed(lambda: datasets.Dataset.from_list(rows), 1)
    print(f"2. out ({table.num_rows:,} rows): to_dataset {t_ours * 1e3:.1f} ms, Dataset(InMemoryTable).cast_column "
          f"{t_raw * 1e3:.1f} ms (ratio {t_ours / t_raw:.2f}x; {t_hashed * 1e3:.0f} ms without a fingerprint: "
          f"datasets hashes the table), Dataset.from_list {t_list * 1e3:.0f} ms ({t_list / t_ours:.0f}x slower)")


def bench_end_to_end(root: Path) -> None:
    import featurekit
    spec = root / "spec.yaml"
    spec.write_text("featurekit: 1\nname: hf-bench\ntable: {db: data, name: t}\n"
                    "source: {format: hf, path: hfdata, key: id}\n")
    start = time.perf_counter()
    result = featurekit.apply(spec)
    t_apply = time.perf_counter() - start
    start = time.perf_counter()
    out = featurekit.read(spec, ["id", "question", "label", "image", "split"], format="hf")
    t_read = time.perf_counter() - start
    n = out.data.num_rows
    print(f"3. end to end: apply (ingest {result.run.ingested:,} rows) {t_apply:.2f} s, "
          f"read(format='hf') {t_read:.2f} s ({n / t_read:,.0f} rows/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--px", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_dataset(root, args.rows, args.px)
        bench_in(folder)
        bench_out(folder)
        bench_end_to_end(root)


if __name__ == "__main__":
    main()
