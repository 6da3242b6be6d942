"""The local engine vs the Geneva engine (Ray) on the same specs, measured in one run.

    python benchmarks/engines.py [--sample-rows 200] [--busy-rows 4000,32000]

Needs the featurekit-geneva, -image and -qwen plugins (and geneva installed).
1. tiers 1-3 (specs/textvqa-qwen.yaml on the generated sample, tiny random Qwen2.5-VL): wall
   time of a whole `apply` in a fresh process (imports and, for Geneva, starting Ray included)
   and peak memory of its process tree (Ray's processes included); the tables must be equal.
2. fixed cost per backfill: a 1,000-row table, three cheap features, Ray already running.
3. throughput on a CPU-bound extractor (2000 rounds of sha256 a row) at two sizes: the
   steady rate is the slope between them, the fixed cost the intercept, and the rows it takes
   for the fixed cost to be under 10% of a run follow from both.
4. large rows: 400 rows of fp16[400 x 2048] (1.6 MB, the 3B tower's hiddens) from a cheap
   extractor, local vs Geneva (Ray up), per-row cost of each; and Geneva's own selected-rows
   path against the Arrow fix featurekit carries (featurekit_geneva.upstream), on one batch.
5. each distinct image once through Geneva: a counting image extractor over a table whose
   images repeat (300 rows, 40 distinct images, 3 fragments), both engines: extractor calls
   (counted from every process) = distinct inputs, and the run's distinct/reused counts.
6. what each process of a Geneva job pays to import Geneva: `import geneva` in a fresh
   interpreter, as shipped and with featurekit's deferral of the REST client
   (featurekit/table/lancedb_import.py, installed in every Ray worker by featurekit_geneva/boot.py), best of 3 each.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import featurekit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Busy(featurekit.Extractor):
    """CPU-bound: 2000 rounds of sha256 per row (as in benchmarks/apply.py)."""

    name = "bench.busy"
    inputs = {"text": pa.string()}
    resources = featurekit.Resources(batch_size=256)

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


TOKENS, HIDDEN = 400, 2048


class Hiddens(featurekit.Extractor):
    """A stand-in for the vision tower: fp16[400 x 2048] a row, filled from the row's id."""

    name = "bench.hiddens"
    inputs = {"n": pa.int64()}
    resources = featurekit.Resources(batch_size=16)

    def output_type(self):
        return pa.list_(pa.float16(), TOKENS * HIDDEN)

    def __call__(self, batch):
        import numpy as np
        n = batch.column("n").to_numpy()
        flat = np.repeat((n % 1000).astype(np.float16), TOKENS * HIDDEN)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), TOKENS * HIDDEN)


class ImageBytes(featurekit.Extractor):
    """Bytes of an image, each call counted (one line a row in $BENCH_CALLS, from any process)."""

    name = "bench.image_bytes"
    inputs = {"image": pa.binary()}

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        images = batch.column("image").to_pylist()
        with open(os.environ["BENCH_CALLS"], "a") as fh:
            fh.writelines(f"{hashlib.sha256(b).hexdigest()[:16]}\n" for b in images)
        return pa.array([len(b) for b in images], pa.int64())


def registry():
    import types

    import featurekit_geneva
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    mod = types.ModuleType("bench_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Busy, Hiddens, ImageBytes])
    return Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod, featurekit_geneva]))


# -- 1. the same tiers 1-3 spec, a fresh process per engine ------------------------------------
APPLY = """
import json, re, sys, time
t0 = time.perf_counter()
import featurekit
from featurekit.engine import Reporter
class Ray(Reporter):
    seconds = 0.0
    def message(self, text):
        m = re.search(r"geneva: running on .*[(]([0-9.]+)s to start[)]", text)
        if m:
            Ray.seconds = float(m.group(1))
r = featurekit.apply(sys.argv[1], engine=sys.argv[2], reporter=Ray())
print(json.dumps({"seconds": time.perf_counter() - t0, "ok": r.ok, "ray": Ray.seconds,
                  "features": {n: [f.computed, f.failed, f.seconds] for n, f in r.run.features.items()}}))
"""


def tree_rss(pid: int) -> int:
    import psutil
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(args: list[str]) -> tuple[dict, float]:
    """Run a command, sampling its process tree's RSS; returns its JSON output and the peak in GB."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    out = proc.stdout.read().strip().splitlines()
    if proc.returncode or not out:
        raise SystemExit(f"{' '.join(args[:4])} failed (exit {proc.returncode})")
    return json.loads(out[-1]), peak / 2**30


def bench_tiers(root: Path, rows: int, jobs_at_once: int | None = None) -> None:
    from featurekit_qwen.tiny import build_tiny_qwen
    base = root / "base"
    (base / "models").mkdir(parents=True)
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_sample.py"), str(base / "raw"), "--rows", str(rows)],
                   check=True, stdout=subprocess.DEVNULL)
    build_tiny_qwen(base / "models" / "tiny-qwen")
    # The vision tower declares gpus: 1; here it runs on CPU (the local engine does so anyway,
    # Geneva's admission would rightly refuse a GPU request on a machine without one).
    text = (ROOT / "specs" / "textvqa-qwen.yaml").read_text()
    text = text.replace("resources: {batch_size: 16}", "resources: {batch_size: 16, gpus: 0}")
    if jobs_at_once:  # the Geneva engine's option (the local apply ignores another kind's options)
        text = text.replace("\nsource:", f"\nengine: {{kind: geneva, jobs_at_once: {jobs_at_once}}}\n\nsource:", 1)
    (base / "spec.yaml").write_text(text)
    results, tables = {}, {}
    for engine in ("local", "geneva"):
        d = root / engine
        shutil.copytree(base, d)
        results[engine] = run_measured([sys.executable, "-c", APPLY, str(d / "spec.yaml"), engine])
        import lance
        tables[engine] = lance.dataset(str(d / "data" / "textvqa_qwen.lance")).to_table().sort_by("question_id")
    same = tables["local"].drop_columns(["image"]).equals(tables["geneva"].drop_columns(["image"]))
    (lo, lo_mem), (ge, ge_mem) = results["local"], results["geneva"]
    print(f"1. specs/textvqa-qwen.yaml (tiers 1-3, tiny Qwen2.5-VL on CPU), {rows} rows, "
          f"{len(lo['features'])} features + 1 slice, fresh process each (imports, Ray start included), "
          f"Geneva jobs at once: {jobs_at_once or 'default (one at a time)'}:")
    print(f"   local  {lo['seconds']:6.1f}s  peak tree RSS {lo_mem:.2f} GB")
    print(f"   geneva {ge['seconds']:6.1f}s  peak tree RSS {ge_mem:.2f} GB   "
          f"ratio {ge['seconds'] / lo['seconds']:.1f}x time, {ge_mem / lo_mem:.1f}x memory; tables equal: {same}")
    for name in lo["features"]:
        print(f"     {name:<22} local {lo['features'][name][2]:6.2f}s   geneva {ge['features'][name][2]:6.2f}s")
    extra = [ge["features"][n][2] - lo["features"][n][2] for n in lo["features"]]
    over = ge["seconds"] - lo["seconds"]
    print(f"   fixed cost: {over:.1f}s an apply over local (one Ray start, {ge['ray']:.1f}s of it), "
          f"{over / len(lo['features']):.1f}s a feature ({len(lo['features'])} features; a wave's features "
          f"as concurrent jobs only with jobs_at_once > 1); per feature's own wall time {sum(extra) / len(extra):.1f}s on average "
          f"({min(extra):.1f}-{max(extra):.1f}s; concurrent jobs overlap)")


# -- 2 and 3: in this process, Ray started once --------------------------------------------------
def parquet_project(root: Path, table: pa.Table, fragment_rows: int, features: str = "{}") -> Path:
    """A spec over `table` (keyed by its `id`) as a Parquet source, with `features` (YAML flow)."""
    (root / "raw").mkdir(parents=True)
    pq.write_table(table, root / "raw" / "data.parquet")
    spec = root / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        featurekit: 1
        name: bench
        table: {{db: data, name: t, fragment_rows: {fragment_rows}}}
        source: {{format: parquet, path: raw/data.parquet, key: id}}
        features: {features}
        """))
    return spec


def busy_table(root: Path, rows: int, features: str) -> Path:
    spec = parquet_project(root, pa.table({"id": pa.array(range(rows), pa.int64()),
                                           "question": pa.array([f"question {i}?" for i in range(rows)])}), 1000)
    featurekit.apply(spec, registry=registry())  # ingest outside the timing
    spec.write_text(spec.read_text().replace("features: {}\n", "features:\n" + textwrap.indent(features, "  ")))
    return spec


def bench_fixed_cost(root: Path) -> None:
    features = "".join(f"f{i}: {{extractor: text.length, inputs: {{text: question}}}}\n" for i in range(3))
    per = {}
    for engine in ("local", "geneva"):
        spec = busy_table(root / f"fixed-{engine}", 1000, features)
        result = featurekit.apply(spec, engine=engine, registry=registry())
        per[engine] = [f.seconds for f in result.run.features.values()]
    fixed = [g - loc for g, loc in zip(per["geneva"], per["local"])]
    print("2. fixed cost per backfill, text.length over 1,000 rows (Ray already up), three features in one apply:")
    print("   local  " + ", ".join(f"{s:.2f}s" for s in per["local"]))
    print("   geneva " + ", ".join(f"{s:.2f}s" for s in per["geneva"])
          + f"   -> {min(fixed):.1f}-{max(fixed):.1f}s a backfill")


def bench_throughput(root: Path, sizes: list[int]) -> None:
    print("3. CPU-bound extractor (bench.busy, 2000 x sha256 a row), fragments of 1,000 rows:")
    # Geneva reserves ~0.3 CPU for its job tracker, driver and writers: on 2 cores two appliers
    # fit only at 0.8 CPU each (the default sizing picks one applier of 1 CPU).
    setups = [("local", "local", None, ""), ("geneva", "geneva", 1, ""),
              ("geneva", "geneva, concurrency 2", 2, ", resources: {cpus: 0.8}")]
    fits = {}
    for engine, label, conc, resources in setups:
        times = []
        for n in sizes:
            d = root / f"busy-{label.replace(' ', '').replace(',', '-')}-{n}"
            spec = busy_table(d, n, f"busy: {{extractor: bench.busy, inputs: {{text: question}}{resources}}}\n")
            if conc:
                text = spec.read_text().replace("features:", f"engine: {{kind: geneva, concurrency: {conc}}}\nfeatures:")
                spec.write_text(text)
            t0 = time.perf_counter()
            result = featurekit.apply(spec, engine=engine, registry=registry())
            times.append(time.perf_counter() - t0)
            run = result.run.features["busy"]
            assert run.computed == n, run.error
        (n1, n2), (t1, t2) = sizes, times
        rate = (n2 - n1) / (t2 - t1)
        fixed = max(0.0, t1 - n1 / rate)
        fits[label] = (rate, fixed)
        line = "   ".join(f"{n:,} rows {t:.1f}s ({n / t:,.0f} rows/s)" for n, t in zip(sizes, times))
        print(f"   {label:<22} {line}   steady {rate:,.0f} rows/s, fixed {fixed:.1f}s")
    lrate = fits["local"][0]
    for label, (rate, fixed) in fits.items():
        if label == "local":
            continue
        amortized = 9 * fixed * rate  # fixed cost <= 10% of the run
        print(f"   {label}: steady rate {rate / lrate:.2f}x local's; fixed cost under 10% from "
              f"~{amortized:,.0f} rows on")


# -- 4. large rows --------------------------------------------------------------------------------
def bench_large_rows(root: Path, rows: int) -> None:
    print(f"4. large rows: {rows} rows of fp16[{TOKENS} x {HIDDEN}] ({TOKENS * HIDDEN * 2 / 2**20:.1f} MB) from a cheap "
          "extractor, fragments of 50 rows (Ray already up):")
    times = {}
    for engine in ("local", "geneva"):
        spec = busy_table(root / engine, rows, "h: {extractor: bench.hiddens, inputs: {n: id}}\n")
        spec.write_text(spec.read_text().replace("fragment_rows: 1000", "fragment_rows: 50"))
        t0 = time.perf_counter()
        result = featurekit.apply(spec, engine=engine, registry=registry())
        times[engine] = time.perf_counter() - t0
        assert result.run.features["h"].computed == rows, result.run.features["h"].error
    import lance
    tables = [lance.dataset(str(root / e / "data" / "t.lance")).to_table(columns=["id", "h"]).sort_by("id")
              for e in ("local", "geneva")]
    lo, ge = times["local"], times["geneva"]
    print(f"   local  {lo:6.1f}s  {lo / rows * 1e3:6.1f} ms a row")
    print(f"   geneva {ge:6.1f}s  {ge / rows * 1e3:6.1f} ms a row   ratio {ge / lo:.1f}x "
          f"(over local: {ge - lo:.1f}s); tables equal: {tables[0].equals(tables[1])}")
    bench_selected_rows()


def bench_selected_rows(rows: int = 32) -> None:
    """Geneva 0.17's `BackfillUDFTask.apply` on one filtered batch (3 of 4 rows selected, the
    old values carried), as shipped and with featurekit's fix (same output checked)."""
    import numpy as np
    from geneva.apply.task import BackfillUDFTask
    from geneva.transformer import BACKFILL_SELECTED, UDF

    from featurekit_geneva import upstream
    upstream.arrow_selected_rows()
    original = getattr(BackfillUDFTask, upstream._ORIGINAL_APPLY)
    width = TOKENS * HIDDEN
    value = pa.list_(pa.float16(), width)
    struct = pa.struct([("h", value), ("_fk_h", pa.string())])

    def compute(n: pa.Array) -> pa.Array:
        flat = pa.array(np.repeat(n.to_numpy().astype(np.float16), width), pa.float16())
        return pa.StructArray.from_arrays([pa.FixedSizeListArray.from_arrays(flat, width), pa.array(["fp"] * len(n))],
                                          fields=list(struct))
    udf = UDF(func=compute, name="h", data_type=struct, input_columns=["n"])
    task = BackfillUDFTask(udfs={"h": udf}, where="n >= 0",
                           unpack_fields=tuple(o.field for o in upstream.unpacked_udf_plan(udf).outputs))
    selected = np.arange(rows) % 4 != 0
    old = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * width, np.float16)), width)
    batch = pa.record_batch([pa.array(np.arange(rows)), old, pa.array(["old"] * rows),
                             pa.array(np.arange(rows), pa.uint64()), pa.array(selected)],
                            names=["n", "h", "_fk_h", "_rowaddr", BACKFILL_SELECTED])
    took = {}
    for label, apply in (("geneva 0.17", original), ("featurekit fix", BackfillUDFTask.apply)):
        t0 = time.perf_counter()
        out = apply(task, batch)
        took[label] = (time.perf_counter() - t0) / selected.sum()
        took[label + " out"] = out
    same = took["geneva 0.17 out"].equals(took["featurekit fix out"])
    print(f"   Geneva's selected-rows path, one batch of {rows} rows ({selected.sum()} selected): "
          f"as shipped {took['geneva 0.17'] * 1e3:.0f} ms a selected row, with featurekit's Arrow fix "
          f"{took['featurekit fix'] * 1e3:.1f} ms ({took['geneva 0.17'] / took['featurekit fix']:.0f}x); same output: {same}")


# -- 5. each distinct image once ----------------------------------------------------------------
def bench_distinct_images(root: Path, rows: int = 300, distinct: int = 40) -> None:
    import random
    images = [hashlib.sha256(str(i).encode()).digest() * (64 + i) for i in range(distinct)]  # "images": bytes
    rng = random.Random(0)
    picks = [rng.randrange(distinct) for _ in range(rows)]
    print(f"5. each distinct image once through Geneva: {rows} rows, {distinct} distinct images, "
          f"{len(set(picks))} of them used, fragments of 100 rows (Ray already up):")
    for engine in ("local", "geneva"):
        spec = parquet_project(root / f"images-{engine}",
                               pa.table({"id": pa.array(range(rows), pa.int64()),
                                         "image": pa.array([images[k] for k in picks], pa.binary())}), 100,
                               "{size: {extractor: bench.image_bytes, inputs: {image: image}}}")
        calls = Path(os.environ["BENCH_CALLS"])  # set before Ray started: its workers inherit it
        calls.write_text("")
        run = featurekit.apply(spec, engine=engine, registry=registry()).run.features["size"]
        lines = calls.read_text().splitlines()
        print(f"   {engine:<6} extractor calls {len(lines)} for {len(set(picks))} distinct inputs "
              f"({len(set(lines))} distinct called): "
              f"{'each distinct image once' if len(lines) == len(set(picks)) == len(set(lines)) else 'NOT once each'}; "
              f"run: rows {run.rows}, distinct {run.distinct}, reused {run.reused} ({run.sharing})")


def bench_geneva_import(repeats: int = 3) -> None:
    def best(code: str) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return min(times)
    bare = best("pass")
    shipped = best("import geneva")
    deferred = best("from featurekit.table.lancedb_import import lazy_rest_client; lazy_rest_client(); import geneva")
    print(f"6. import geneva in a fresh interpreter (best of {repeats}; Python alone {bare:.2f}s): as shipped "
          f"{shipped:.2f}s, with the REST client deferred {deferred:.2f}s ({shipped - deferred:.2f}s less a process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-rows", type=int, default=200)
    parser.add_argument("--busy-rows", default="4000,32000", help="two sizes for the slope")
    parser.add_argument("--skip-tiers", action="store_true")
    parser.add_argument("--large-rows", type=int, default=400)
    parser.add_argument("--only", default="1,2,3,4,5,6", help="parts to run")
    parser.add_argument("--jobs-at-once", type=int, default=None, help="part 1: the Geneva engine's jobs_at_once")
    args = parser.parse_args()
    sizes = [int(x) for x in args.busy_rows.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = set(args.only.split(","))
        if "6" in parts:
            bench_geneva_import()
        if not parts & set("12345"):
            return
        if not args.skip_tiers and "1" in parts:
            bench_tiers(tmp / "tiers", args.sample_rows, args.jobs_at_once)
        import ray

        from featurekit_geneva.cluster import HEAD_RESOURCE, local_memory, worker_runtime_env
        os.environ["BENCH_CALLS"] = str(tmp / "calls.txt")  # part 5's counting extractor, in every process
        t0 = time.perf_counter()
        ray.init(address="local", resources={HEAD_RESOURCE: 1}, include_dashboard=False, log_to_driver=False, **local_memory(), runtime_env=worker_runtime_env())
        print(f"   (Ray started in {time.perf_counter() - t0:.1f}s for parts 2-3)")
        try:
            if "2" in parts:
                bench_fixed_cost(tmp / "fixed")
            if "3" in parts:
                bench_throughput(tmp / "busy", sizes)
            if "4" in parts:
                bench_large_rows(tmp / "large", args.large_rows)
            if "5" in parts:
                bench_distinct_images(tmp / "images")
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
