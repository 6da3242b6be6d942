"""featurekit apply vs raw pylance, measured in one run. Prints figures and ratios.

    python benchmarks/apply.py [--rows 1000000]

1. overhead: a trivial extractor (text.length) over N rows, featurekit apply vs the same
   function through lance's add_columns on an identical table (target: ratio <= 1.2)
2. no-op: apply on the up-to-date table (target: < 1 s, no new Lance version)
3. incremental: append 1% new rows; apply computes exactly those rows
4. write amplification: a small feature on a table of large image blobs, bytes written by
   featurekit vs by raw add_columns for the same column (target: <= 1.1x)
5. parallelism: a CPU-bound extractor with 2 workers vs 1 (target: >= 1.7x)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import textwrap
import time
import types
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")

import lance  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import featurekit  # noqa: E402
from featurekit.plugins import make_plugin_manager  # noqa: E402
from featurekit.registry import Registry  # noqa: E402


class Hash64(featurekit.Extractor):
    """A 64-bit hash of the question: a small feature that does not compress to nothing."""

    name = "bench.hash64"
    inputs = {"text": pa.string()}
    resources = featurekit.Resources(batch_size=65536)

    def output_type(self):
        return pa.uint64()

    def __call__(self, batch):
        return pa.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
                         for t in batch.column("text").to_pylist()], pa.uint64())


class Busy(featurekit.Extractor):
    """CPU-bound: 2000 rounds of sha256 per row."""

    name = "bench.busy"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.string()

    def __call__(self, batch):
        out = []
        for t in batch.column("text").to_pylist():
            h = t.encode()
            for _ in range(2000):
                h = hashlib.sha256(h).digest()
            out.append(h[:8].hex())
        return pa.array(out, pa.string())


def registry():
    mod = types.ModuleType("bench_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Busy, Hash64])
    return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod]))


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def data_bytes(uri: str) -> int:
    return dir_bytes(Path(uri) / "data")


def files_holding(uri: str, column: str) -> set[str]:
    """Data files that store `column` (to prove they are not rewritten)."""
    ds = lance.dataset(uri)
    field_id = next(f.id() for f in ds.lance_schema.fields() if f.name() == column)
    return {d.path for frag in ds.get_fragments() for d in frag.data_files() if field_id in d.fields}


def spec_text(features: str, extra_table: str = "", path: str = "raw/*.parquet") -> str:
    return textwrap.dedent(f"""\
        featurekit: 1
        name: bench
        table: {{db: data, name: t{extra_table}}}
        source: {{format: parquet, path: "{path}", key: id}}
        features:
        """) + textwrap.indent(textwrap.dedent(features), "  ")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_overhead(root: Path, rows: int, repeats: int = 3) -> None:
    (root / "raw").mkdir(parents=True)
    questions = pa.array([f"what is written on sign number {i}?" for i in range(rows)])
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()), "question": questions}),
                   root / "raw" / "part0.parquet")
    spec = root / "spec.yaml"
    spec.write_text(spec_text("{}\n").replace("features:\n  {}\n", "features: {}\n"))
    _, t_ingest = timed(lambda: featurekit.apply(spec))
    uri = str(root / "data" / "t.lance")
    base = str(root / "base.lance")
    shutil.copytree(uri, base)

    @lance.batch_udf()
    def length(batch):
        return pa.record_batch([pc.utf8_length(batch["question"]).cast(pa.int32())], ["question_length"])

    spec.write_text(spec_text("question_length: {extractor: text.length, inputs: {text: question}}\n"))
    raw_times, fk_times = [], []
    for i in range(repeats):  # fresh copies each time; the median of each side is compared
        raw_uri = str(root / f"raw_copy{i}.lance")
        shutil.copytree(base, raw_uri)
        raw_times.append(timed(lambda: lance.dataset(raw_uri).add_columns(length, read_columns=["question"]))[1])  # noqa: B023
        shutil.rmtree(uri)
        shutil.copytree(base, uri)
        result, t = timed(lambda: featurekit.apply(spec))
        assert result.run.features["question_length"].computed == rows
        fk_times.append(t)
    got = lance.dataset(uri).to_table(columns=["question_length"]).column(0)
    want = lance.dataset(raw_uri).to_table(columns=["question_length"]).column(0)
    assert got.equals(want)
    t_raw, t_fk = statistics.median(raw_times), statistics.median(fk_times)
    print(f"1. overhead, text.length over {rows:,} rows ({len(lance.dataset(uri).get_fragments())} fragments), "
          f"median of {repeats}:")
    print(f"   raw lance add_columns {t_raw:.3f}s   featurekit apply {t_fk:.3f}s   ratio {t_fk / t_raw:.2f}"
          f"   (featurekit runs 2 fragments at once for text.length: resources.threads=2; "
          f"ingest took {t_ingest:.2f}s)")

    version = lance.dataset(uri).version
    noop, t_noop = timed(lambda: featurekit.apply(spec))
    print(f"2. no-op apply on {rows:,} rows: {t_noop:.3f}s, new Lance versions: "
          f"{lance.dataset(uri).version - version} (plan noop={noop.plan.is_noop})")

    extra = max(rows // 100, 1)
    pq.write_table(pa.table({"id": pa.array(range(rows, rows + extra), pa.int64()),
                             "question": pa.array([f"how many signs {i}?" for i in range(extra)])}),
                   root / "raw" / "part1.parquet")
    result, t_inc = timed(lambda: featurekit.apply(spec))
    print(f"3. incremental: appended {extra:,} rows (1%); apply ingested {result.run.ingested:,} and computed "
          f"{result.run.features['question_length'].computed:,} rows in {t_inc:.3f}s")


def bench_write_amplification(root: Path, rows: int = 2000, blob: int = 100_000) -> None:
    (root / "raw").mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()),
                             "question": pa.array([f"q{i}?" for i in range(rows)]),
                             "image": pa.array([os.urandom(blob) for _ in range(rows)], pa.large_binary())}),
                   root / "raw" / "imgs.parquet")
    spec = root / "spec.yaml"
    spec.write_text(spec_text("{}\n").replace("features:\n  {}\n", "features: {}\n"))
    featurekit.apply(spec)
    uri = str(root / "data" / "t.lance")
    print(f"4. write amplification, {rows:,} rows with {blob // 1000} kB image blobs "
          f"({data_bytes(uri) / 1e6:.0f} MB of data); bytes of new data files:")
    for name, cls, out_type in (("question_length", "text.length", pa.int32()), ("qhash", "bench.hash64", pa.uint64())):
        raw_uri = str(root / f"raw_{name}.lance")
        shutil.copytree(uri, raw_uri)
        fn = registry().get("extractor", cls).cls()

        @lance.batch_udf(output_schema=pa.schema([pa.field(name, out_type)]))
        def udf(batch, fn=fn, name=name):
            values = fn(pa.record_batch([batch["question"]], names=["text"]))
            return pa.record_batch([values], [name])

        before_raw = data_bytes(raw_uri)
        lance.dataset(raw_uri).add_columns(udf, read_columns=["question"])
        raw_written = data_bytes(raw_uri) - before_raw
        before_data = data_bytes(uri)
        image_files = files_holding(uri, "image")
        spec.write_text(spec.read_text().replace("features: {}\n", "features:\n") +
                        f"  {name}: {{extractor: {cls}, inputs: {{text: question}}}}\n")
        featurekit.apply(spec, registry=registry())
        written = data_bytes(uri) - before_data
        rewritten = len(image_files ^ files_holding(uri, "image"))
        print(f"   {cls:<13} raw add_columns {raw_written:>6,} B   featurekit {written:>6,} B (value + state column)"
              f"   ratio {written / raw_written:.2f}   image data files rewritten: {rewritten}")


def bench_parallel(root: Path, rows: int = 8000) -> None:
    (root / "raw").mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()),
                             "question": pa.array([f"question {i}?" for i in range(rows)])}),
                   root / "raw" / "q.parquet")
    times = {}
    for workers in (1, 2):
        d = root / f"w{workers}"
        shutil.copytree(root / "raw", d / "raw")
        spec = d / "spec.yaml"
        spec.write_text(spec_text(f"busy: {{extractor: bench.busy, inputs: {{text: question}}, "
                                  f"resources: {{workers: {workers}}}}}\n", ", fragment_rows: 500"))
        result, t = timed(lambda: featurekit.apply(spec, registry=registry()))  # noqa: B023 (called at once)
        assert result.run.features["busy"].computed == rows
        times[workers] = t
    print(f"5. parallelism, CPU-bound extractor over {rows:,} rows: 1 worker {times[1]:.2f}s, "
          f"2 workers {times[2]:.2f}s, speed-up {times[1] / times[2]:.2f}x (machine has {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench_overhead(tmp / "overhead", args.rows)
        bench_write_amplification(tmp / "amplification")
        bench_parallel(tmp / "parallel")


if __name__ == "__main__":
    main()
