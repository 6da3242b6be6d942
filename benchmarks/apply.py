"""featurekit apply vs raw pylance, measured in one run. Prints figures and ratios.

    python benchmarks/apply.py [--rows 1000000]

1. overhead: a trivial extractor (text.length) over N rows, featurekit apply vs the same
   function through lance's add_columns on an identical table, at Lance's default batch size and
   at featurekit's (the faster is the baseline; target: ratio <= 1.2)
2. no-op: apply on the up-to-date table (target: < 1 s, no new Lance version)
3. incremental: append 1% new rows; apply computes exactly those rows
4. write amplification: a small feature on a table of large image blobs, bytes written by
   featurekit vs by raw add_columns for the same column, with and without the input-key column
   of content-addressed compute (target without: <= 1.1x)
5. parallelism: a CPU-bound extractor with 2 workers vs 1 (target: >= 1.7x)
6. content-addressed compute: each input in 2 and in 10 rows; extractor calls equal the
   distinct inputs, speed-up over computing every row (expect ~2x and ~10x)
7. row errors: 1% failing rows on 20,000; rows passed to an extractor that reports them
   (featurekit.RowErrors) over rows computed (target <= 1.05x), beside the halving fallback's
8. versions: Lance versions written by the README's quickstart apply (specs/easyvqa-qwen.yaml,
   needs easy-vqa and the tiny model; `--only versions` runs it alone, also against older code)
9. a third-party Python extractor (vowel counting, ~1 us a row) over 500,000 and 1,000,000
   short strings, 80% distinct (target: within 1.2x of raw add_columns at its best batch size)
   and every input repeated 10 times (target: at least 5x faster than raw: values shared); the
   same for a costlier counter (~5 us a row, as the issue measured its plugin); the cost of an
   input key; and the plan of a 1,000,000-row table with a new feature (target: under 1 s).
   `--only python` runs it.
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
from featurekit.builtin.text import VECTORIZED  # noqa: E402
from featurekit.plugins.discovery import make_plugin_manager  # noqa: E402
from featurekit.plugins.registry import Registry  # noqa: E402


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


class Hash64NoKeys(Hash64):
    """The same feature without content-addressed compute (no input-key column)."""

    name = "bench.hash64_nokeys"
    reuse_values = False


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


class BusyEveryRow(Busy):
    """The same work, computed for every row (no sharing of values by input)."""

    name = "bench.busy_every_row"
    reuse_values = False


class Vowels(featurekit.Extractor):
    """A plugin author's Python extractor: vowels in a string (no `reuse_values` set: featurekit decides)."""

    name = "bench.vowels"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.int32()

    def __call__(self, batch):
        return pa.array(vowels(batch.column("text").to_pylist()), pa.int32())


def vowels(texts: list[str]) -> list[int]:
    return [sum(c in "aeiou" for c in t) for t in texts]


def vowels_slow(texts: list[str]) -> list[int]:
    """The same answer with five times the work a row (~5 us here, about the cost measured
    for the issue's third-party vowel counter)."""
    return [sum(c in "aeiou" for c in t * 5) // 5 for t in texts]


class VowelsSlow(Vowels):
    name = "bench.vowels_slow"

    def __call__(self, batch):
        return pa.array(vowels_slow(batch.column("text").to_pylist()), pa.int32())


class Flaky(featurekit.Extractor):
    """A cheap per-row extractor that raises on rows whose text contains 'bad'."""

    name = "bench.flaky"
    inputs = {"text": pa.string()}
    passed = 0

    def output_type(self):
        return pa.int64()

    def one(self, t):
        if "bad" in t:
            raise ValueError("bad row")
        return len(t)

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        return pa.array([self.one(t) for t in texts], pa.int64())


class Reporting(Flaky):
    """The same, reporting failed rows with featurekit.RowErrors."""

    name = "bench.reporting"

    def __call__(self, batch):
        return featurekit.RowErrors.map(self.one, batch.column("text").to_pylist(), pa.int64())


def registry():
    mod = types.ModuleType("bench_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Busy, Hash64, Hash64NoKeys, BusyEveryRow, Flaky,
                                                                          Reporting, Vowels, VowelsSlow])
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
    raw_sizes = (1024, 65536)  # Lance's default and featurekit's batch for text.length: the faster one is the baseline
    raw_times: dict[int, list[float]] = {b: [] for b in raw_sizes}
    fk_times = []
    for i in range(repeats):  # fresh copies each time; the median of each side is compared
        for b in raw_sizes:
            raw_uri = str(root / f"raw_copy{i}_{b}.lance")
            shutil.copytree(base, raw_uri)
            raw_times[b].append(timed(lambda: lance.dataset(raw_uri).add_columns(  # noqa: B023
                length, read_columns=["question"], batch_size=b))[1])  # noqa: B023
        shutil.rmtree(uri)
        shutil.copytree(base, uri)
        result, t = timed(lambda: featurekit.apply(spec))
        assert result.run.features["question_length"].computed == rows
        fk_times.append(t)
    got = lance.dataset(uri).to_table(columns=["question_length"]).column(0)
    want = lance.dataset(raw_uri).to_table(columns=["question_length"]).column(0)
    assert got.equals(want)
    medians = {b: statistics.median(t) for b, t in raw_times.items()}
    best = min(medians, key=medians.get)
    t_raw, t_fk = medians[best], statistics.median(fk_times)
    print(f"1. overhead, text.length over {rows:,} rows ({len(lance.dataset(uri).get_fragments())} fragments), "
          f"median of {repeats}:")
    print("   raw lance add_columns(batch_udf) " + ", ".join(f"batch_size={b:,}: {t:.3f}s" for b, t in medians.items()))
    print(f"   featurekit apply {t_fk:.3f}s   ratio to the faster raw run (batch_size={best:,}) {t_fk / t_raw:.2f}"
          f"   (featurekit runs {VECTORIZED.threads} fragments at once for text.length: resources.threads; "
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
    variants = (("question_length", "text.length", pa.int32(), "value + state column"),
                ("qhash", "bench.hash64", pa.uint64(), "value + state + input-key column"),
                ("qhash_nokeys", "bench.hash64_nokeys", pa.uint64(), "value + state column"))
    for name, cls, out_type, what in variants:
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
        print(f"   {cls:<19} raw add_columns {raw_written:>6,} B   featurekit {written:>6,} B ({what})"
              f"   ratio {written / raw_written:.2f}   image data files rewritten: {rewritten}")
    print("   (the input-key column, 16 B a row, is what lets rows with equal inputs share a value; "
          "extractors cheaper than hashing their inputs set reuse_values = False and write none)")


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


def bench_duplicates(root: Path, distinct: int = 2000) -> None:
    """Each input in `copies` rows: the extractor runs once per distinct input."""
    print(f"6. content-addressed compute, CPU-bound extractor (bench.busy), {distinct} distinct inputs:")
    for copies in (2, 10):
        rows = distinct * copies
        d = root / f"x{copies}"
        (d / "raw").mkdir(parents=True)
        pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()),
                                 "question": pa.array([f"question {i % distinct}?" for i in range(rows)])}),
                       d / "raw" / "q.parquet")
        times, runs = {}, {}
        for name in ("busy", "busy_every_row"):
            spec = d / f"{name}.yaml"
            spec.write_text(spec_text("{}\n", f"_{name}, fragment_rows: 500").replace("features:\n  {}", "features: {}"))
            featurekit.apply(spec, registry=registry())  # ingest outside the timing
            spec.write_text(spec_text(f"f: {{extractor: bench.{name}, inputs: {{text: question}}, "
                                      f"resources: {{workers: 1}}}}\n", f"_{name}, fragment_rows: 500"))
            result, times[name] = timed(lambda: featurekit.apply(spec, registry=registry()))  # noqa: B023
            runs[name] = result.run.features["f"]
        shared, every = runs["busy"], runs["busy_every_row"]
        assert shared.computed == every.computed == rows and shared.passed == shared.distinct == distinct
        a = lance.dataset(str(d / "data" / "t_busy.lance")).to_table().sort_by("id").column("f")
        b = lance.dataset(str(d / "data" / "t_busy_every_row.lance")).to_table().sort_by("id").column("f")
        assert a.equals(b)
        print(f"   each input in {copies:>2} rows ({rows:,} rows): extractor passed {shared.passed:,} rows "
              f"(= {shared.distinct:,} distinct), {times['busy']:.2f}s; every row computed "
              f"({every.passed:,} passed) {times['busy_every_row']:.2f}s; speed-up "
              f"{times['busy_every_row'] / times['busy']:.2f}x")


def bench_row_errors(root: Path, rows: int = 20_000) -> None:
    """1% failing rows: reported by the extractor vs isolated by halving batches."""
    (root / "raw").mkdir(parents=True)
    texts = [f"row {i}" + (" bad" if i % 100 == 37 else "") for i in range(rows)]
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()), "question": pa.array(texts)}),
                   root / "raw" / "q.parquet")
    figures = {}
    for name in ("reporting", "flaky"):
        spec = root / f"{name}.yaml"
        spec.write_text(spec_text(f"f: {{extractor: bench.{name}, inputs: {{text: question}}, "
                                  "on_error: {max_failure_rate: 0.5}}\n", f"_{name}"))
        result, t = timed(lambda: featurekit.apply(spec, registry=registry()))  # noqa: B023
        run = result.run.features["f"]
        assert (run.computed, run.failed) == (rows - rows // 100, rows // 100)
        figures[name] = (run.passed, run.passed / (run.computed + run.failed), t)
    rep, flaky = figures["reporting"], figures["flaky"]
    print(f"7. row errors, {rows // 100:,} failing rows (1%) of {rows:,}, batch 1024: rows passed to the extractor / "
          f"rows computed: featurekit.RowErrors {rep[0]:,} ({rep[1]:.3f}x, {rep[2]:.2f}s); "
          f"raising (halving fallback) {flaky[0]:,} ({flaky[1]:.2f}x, {flaky[2]:.2f}s)")


def bench_versions(root: Path) -> None:
    """Lance versions written by the README's quickstart apply, from scratch, and by a no-op."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parent.parent
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "specs" / "easyvqa-qwen.yaml", root / "spec.yaml")
    for script, out in (("make_easyvqa.py", "raw-easyvqa"), ("make_tiny_qwen.py", "models/tiny-qwen")):
        subprocess.run([sys.executable, str(repo / "examples" / script), str(root / out)], check=True,
                       capture_output=True)
    result, t = timed(lambda: featurekit.apply(root / "spec.yaml"))
    ds = lance.dataset(str(root / "data" / "easyvqa.lance"))
    tower = result.run.features["vision_tower_hiddens"]
    noop = featurekit.apply(root / "spec.yaml")
    after = lance.dataset(str(root / "data" / "easyvqa.lance")).version
    print(f"8. quickstart apply (specs/easyvqa-qwen.yaml, {ds.count_rows()} rows, 5 features, 1 slice) with "
          f"featurekit at {Path(featurekit.__file__).parent.parent}: {ds.version} Lance versions in {t:.1f}s; "
          f"vision tower passed {getattr(tower, 'passed', 0) or tower.computed} rows; no-op apply: "
          f"{after - ds.version} versions{'' if noop.run is None else ' (it ran)'}")


def bench_python(root: Path, sizes=(500_000, 1_000_000), repeats: int = 3) -> None:
    """Section 9: a Python extractor, featurekit vs raw add_columns at its best batch size."""
    print("9. a Python extractor (vowel counting, no reuse_values set) vs raw lance add_columns, "
          f"median of {repeats}:")
    from featurekit.planning.inputkeys import input_hashes
    sample = pa.table({"text": pa.array([f"what is on sign {i}?" for i in range(100_000)])})
    input_hashes(sample.slice(0, 100), "x" * 64)
    t_key = timed(lambda: input_hashes(sample, "x" * 64))[1]
    print(f"   input keys: {t_key / sample.num_rows * 1e6:.2f} us a distinct short string (BLAKE2b-128, column-wise)")
    cases = [("bench.vowels", vowels, n, 1) for n in sizes] + [("bench.vowels", vowels, sizes[-1], 10)] + \
        [("bench.vowels_slow", vowels_slow, sizes[0], 1), ("bench.vowels_slow", vowels_slow, sizes[-1], 10)]
    for extractor, fn, rows, repeat in cases:
        case = root / f"py_{extractor}_{rows}_{repeat}"
        (case / "raw").mkdir(parents=True)
        distinct = rows // repeat if repeat > 1 else int(rows * 0.8)
        # short questions; 80% distinct (or each input repeated `repeat` times), in scattered order
        ids = [(i * 7919) % distinct for i in range(rows)] if repeat > 1 else \
            [i if i < distinct else (i * 31) % distinct for i in range(rows)]
        texts = pa.array([f"what is on sign {i}?" for i in ids])
        pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()), "question": texts}),
                       case / "raw" / "part0.parquet")
        spec = case / "spec.yaml"
        spec.write_text(spec_text("{}\n").replace("features:\n  {}\n", "features: {}\n"))
        featurekit.apply(spec, registry=registry())
        uri = str(case / "data" / "t.lance")
        base = str(case / "base.lance")
        shutil.copytree(uri, base)

        @lance.batch_udf()
        def count(batch, fn=fn):
            return pa.record_batch([pa.array(fn(batch["question"].to_pylist()), pa.int32())], ["n"])

        raw_times: dict[int, list[float]] = {b: [] for b in (1024, 8192, 65536)}
        fk_times = []
        for i in range(repeats):
            for b in raw_times:
                raw_uri = str(case / f"raw{i}_{b}.lance")
                shutil.copytree(base, raw_uri)
                raw_times[b].append(timed(lambda: lance.dataset(raw_uri).add_columns(  # noqa: B023
                    count, read_columns=["question"], batch_size=b))[1])  # noqa: B023
                shutil.rmtree(raw_uri)
            shutil.rmtree(uri)
            shutil.copytree(base, uri)
            spec.write_text(spec_text(f"n: {{extractor: {extractor}, inputs: {{text: question}}}}\n"))
            result, t = timed(lambda: featurekit.apply(spec, registry=registry()))  # noqa: B023
            fk_times.append(t)
            run = result.run.features["n"]
        got = lance.dataset(uri).to_table(columns=["question", "n"])
        assert got.column("n").to_pylist() == fn(got.column("question").to_pylist())
        medians = {b: statistics.median(t) for b, t in raw_times.items()}
        best = min(medians, key=medians.get)
        t_raw, t_fk = medians[best], statistics.median(fk_times)
        shared = (f"values shared: {run.distinct:,} distinct inputs, {run.reused:,} rows reused"
                  if run.distinct is not None else run.sharing)
        speed = f"ratio {t_fk / t_raw:.2f}" if t_fk >= t_raw else f"ratio {t_fk / t_raw:.2f}, {t_raw / t_fk:.1f}x faster"
        print(f"   {extractor}, {rows:,} rows, {'each input ' + str(repeat) + ' times' if repeat > 1 else '80% distinct'}: "
              f"raw best {t_raw:.2f}s (batch_size={best:,}; " + ", ".join(f"{b:,}: {t:.2f}s" for b, t in
                                                                       medians.items())
              + f"), featurekit {t_fk:.2f}s, {speed} ({shared})")
    case = root / f"py_bench.vowels_{sizes[-1]}_1"
    spec = case / "spec.yaml"
    spec.write_text(spec_text("n: {extractor: bench.vowels, inputs: {text: question}}\n"
                              "n2: {extractor: bench.vowels, inputs: {text: question}}\n"))
    plan, t_plan = timed(lambda: featurekit.plan(spec, registry=registry()))
    step = plan.step("n2")
    print(f"   plan of a {sizes[-1]:,}-row table with a new feature: {t_plan:.2f}s "
          f"({step.rows:,} rows, {step.distinct:,} distinct inputs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["overhead", "amplification", "versions", "duplicates", "errors", "python"], help="run one part alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only == "versions":
            return bench_versions(tmp / "versions")
        if args.only == "duplicates":
            return bench_duplicates(tmp / "duplicates")
        if args.only == "errors":
            return bench_row_errors(tmp / "errors")
        if args.only == "overhead":
            return bench_overhead(tmp / "overhead", args.rows)
        if args.only == "amplification":
            return bench_write_amplification(tmp / "amplification")
        if args.only == "python":
            return bench_python(tmp / "python", (args.rows // 2, args.rows))
        bench_overhead(tmp / "overhead", args.rows)
        bench_write_amplification(tmp / "amplification")
        bench_parallel(tmp / "parallel")
        bench_duplicates(tmp / "duplicates")
        bench_row_errors(tmp / "errors")
        bench_versions(tmp / "versions")
        bench_python(tmp / "python", (args.rows // 2, args.rows))


if __name__ == "__main__":
    main()
