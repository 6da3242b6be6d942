"""The geneva engine against the local one, on ONE local Ray for the whole module (2 CPUs).

Every test builds its projects in tmp_path and compares whole tables: values, state columns
(failed rows included) and featurekit's field metadata must be what the local engine writes.
Skipped when geneva is not installed (it is a plugin dependency, so CI installs it).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("geneva")  # the module's tests share one worker and its one Ray
# (a Ray of its own per module: the multi-node test and the local-function test run beside it)

pytest.importorskip("geneva")
ray = pytest.importorskip("ray")

import lance  # noqa: E402
import yaml  # noqa: E402

import featurekit  # noqa: E402
import featurekit_geneva  # noqa: E402
from featurekit.engine import Reporter  # noqa: E402
from featurekit.testing import TestProject  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import fkg_extractors  # noqa: E402

PLUGINS = [fkg_extractors, featurekit_geneva]


@dataclass
class Cluster:
    address: str
    calls: Path    # rows the test extractors computed, one a line, from any process
    healed: Path   # exists: rows containing 'bad' stop failing

    def reset_calls(self) -> None:
        self.calls.write_text("")

    def read_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


# what the specs' ${...} storage options name: set for the driver and every Ray worker (an
# applier expands the spec's options itself, from its own environment)
S3_SECRETS = {"FKG_S3_KEY_ID": "fkg-key-id", "FKG_S3_SECRET": "fkg-secret-5d0c9a"}


@contextlib.contextmanager
def worker_environment(tmp: Path):
    """FKG_CALLS / FKG_HEALED and this folder on the path, for every Ray process started inside
    (Ray workers inherit the environment of the process that starts their raylet)."""
    env = {"FKG_CALLS": str(tmp / "calls.txt"), "FKG_HEALED": str(tmp / "healed"), **S3_SECRETS,
           "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH")] if p)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield Path(env["FKG_CALLS"]), Path(env["FKG_HEALED"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray for the module; the engine reuses it (and so leaves it running)."""
    from featurekit_geneva.cluster import HEAD_RESOURCE, local_memory, worker_runtime_env
    with worker_environment(tmp_path_factory.mktemp("ray")) as (calls, healed):
        ray.init(address="local", num_cpus=2, resources={HEAD_RESOURCE: 1}, include_dashboard=False, log_to_driver=False,
                 **local_memory(), runtime_env=worker_runtime_env())
        try:
            yield Cluster(ray.get_runtime_context().gcs_address, calls, healed)
        finally:
            ray.shutdown()


def project(root: Path, features: dict, rows: list[dict], engine: dict, *, slices=None,
            fragment_rows: int = 20) -> TestProject:
    p = TestProject(root, plugins=PLUGINS)
    p.write(features, rows, slices=slices)
    spec = yaml.safe_load(p.spec_path.read_text())
    spec["table"]["fragment_rows"] = fragment_rows
    spec["engine"] = engine
    p.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


@contextlib.contextmanager
def no_sleep():
    """`fkg.flaky` without its pacing `sleep`, in this process and the local engine's workers
    (not Ray's: they keep the environment their raylet started with). For local references."""
    os.environ["FKG_NO_SLEEP"] = "1"
    try:
        yield
    finally:
        del os.environ["FKG_NO_SLEEP"]


def append_rows(p: TestProject, rows: list[dict]) -> None:
    with open(p.root / "rows.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def rows_of(ids, bad: bool = True) -> list[dict]:
    """Rows with a question each; with `bad`, every 7th contains 'bad' (its extractor call raises)."""
    return [{"id": i, "q": ("bad " if bad and i % 7 == 3 else "") + f"question number {i}"} for i in ids]


def featurekit_metadata(field) -> dict:
    return {k: v for k, v in (field.metadata or {}).items() if k.startswith(b"featurekit.")}


def assert_same_tables(a: TestProject, b: TestProject) -> None:
    assert_same(a.table(), b.table())


def assert_same(ta, tb) -> None:
    assert ta.schema.names == tb.schema.names
    for name in ta.schema.names:
        if name.startswith("_fkin_"):  # input keys: the local engine leaves them NULL where keying cannot pay
            continue
        assert ta.column(name).to_pylist() == tb.column(name).to_pylist(), f"column {name} differs"
        assert featurekit_metadata(ta.schema.field(name)) == featurekit_metadata(tb.schema.field(name)), \
            f"featurekit metadata of {name} differs"


def assert_one_file_per_feature(p: TestProject, columns: list[str]) -> None:
    """featurekit's layout: a feature's columns and its state column share one data file per fragment."""
    ds = lance.dataset(p.project().table_uri)
    ids = {f.name(): f.id() for f in ds.lance_schema.fields()}
    want = sorted(ids[c] for c in columns)
    keys = {i for name, i in ids.items() if name.startswith("_fkin_")}  # the local engine's input keys ride along
    for frag in ds.get_fragments():
        assert want in [sorted(set(d.fields) - keys) for d in frag.data_files()], (frag.fragment_id, frag.data_files())


FEATURES = {
    "n": {"extractor": "fkg.flaky", "inputs": {"text": "q"}},
    "st": {"extractor": "fkg.stats", "inputs": {"text": "q"}, "only": "short"},
    "dbl": {"extractor": "fkg.doubled", "inputs": {"n": "n"}},
}
SLICES = {"short": {"where": "n <= 17"}}


@pytest.mark.slow
def test_parity_with_the_local_engine_failed_rows_included_and_retried(cluster, tmp_path):
    """Failed rows, a feature reading another (dbl), an `only:` slice (st), and st and dbl, which
    depend on neither, filled together as concurrent Geneva jobs (`jobs_at_once: 2`; the default
    on 2 cores is one job at a time); then the failed rows retried."""
    rows = rows_of(range(60))
    local = project(tmp_path / "local", FEATURES, rows, {"kind": "local"}, slices=SLICES, fragment_rows=30)
    gen = project(tmp_path / "geneva", FEATURES, rows, {"kind": "geneva", "concurrency": 1, "jobs_at_once": 2},
                  slices=SLICES, fragment_rows=30)
    assert not local.apply().ok  # 9 of 60 rows fail: above the default max_failure_rate
    progress = Progress()
    result = gen.apply(reporter=progress)
    assert not result.ok
    assert progress.done == progress.started == {"n": 60, "dbl": 60, "st": 9}  # the bars follow the jobs
    runs = result.run.features
    assert (runs["n"].computed, runs["n"].failed) == (51, 9)
    assert (runs["dbl"].computed, runs["dbl"].failed) == (51, 9)   # blocked by upstream failures
    assert all(len(r.jobs) == 1 for r in runs.values())
    # st and dbl ran at once, each its own commits: the versions each job made, none twice
    versions = [v for r in runs.values() for v in r.versions]
    assert len(versions) == len(set(versions)) and all(r.versions for r in runs.values())
    assert_same_tables(local, gen)
    assert_one_file_per_feature(gen, ["n", "_fk_n"])
    assert_one_file_per_feature(gen, ["chars", "words", "_fk_st"])

    from featurekit.progress import render_status
    text = render_status(featurekit_status(gen))
    assert f"n: job {runs['n'].jobs[0]}" in text and "[geneva]" in text

    # The failure goes away: the next apply retries exactly the failed rows, on both engines.
    cluster.healed.touch()
    try:
        assert local.apply().ok
        cluster.reset_calls()
        result = gen.apply()
        assert result.ok
        retried = cluster.read_calls()
        assert sorted(retried) == sorted(r["q"] for r in rows if "bad" in r["q"])
        assert result.run.features["n"].computed == 9
    finally:
        cluster.healed.unlink()
    assert_same_tables(local, gen)
    assert gen.plan().is_noop


class Progress(Reporter):
    def __init__(self):
        self.started, self.done = {}, {}

    def feature_started(self, name: str, rows: int) -> None:
        self.started[name] = rows
        self.done[name] = 0

    def rows_done(self, name: str, rows: int) -> None:
        self.done[name] += rows


def featurekit_status(p: TestProject):
    from featurekit.api import status
    return status(p.project())


def test_shared_values_parity_and_either_engine_reuses_the_others(cluster, tmp_path):
    """Rows with equal inputs: computed once on both engines (extractor calls = distinct inputs),
    the same values, input keys and counts (distinct, reused) in the run and the apply log; across
    applies and engines a known input is read back, never computed again: the local engine
    continues Geneva's table, then Geneva the table both engines wrote (mixed engines recompute
    nothing fresh)."""
    features = {"s": {"extractor": "fkg.shared", "inputs": {"text": "q"}}}
    rows = [{"id": i, "q": f"question {i % 7}"} for i in range(40)]  # 7 distinct, over 2 fragments
    local = project(tmp_path / "local", features, rows, {"kind": "local"})
    gen = project(tmp_path / "geneva", features, rows, {"kind": "geneva", "concurrency": 1})
    calls, runs = {}, {}
    for name, p in (("local", local), ("geneva", gen)):
        cluster.reset_calls()
        result = p.apply()
        assert result.ok
        calls[name], runs[name] = cluster.read_calls(), result.run.features["s"]
    distinct = sorted({r["q"] for r in rows})
    assert sorted(calls["local"]) == sorted(calls["geneva"]) == distinct
    assert (runs["geneva"].rows, runs["geneva"].distinct, runs["geneva"].reused) == \
        (runs["local"].rows, runs["local"].distinct, runs["local"].reused) == (40, 7, 33)
    logged = {n: featurekit.log(p.project()).entries[-1]["features"]["s"] for n, p in (("local", local), ("geneva", gen))}
    assert {k: logged["geneva"][k] for k in ("rows", "distinct", "reused")} == \
        {k: logged["local"][k] for k in ("rows", "distinct", "reused")}
    assert_same_tables(local, gen)
    keys = {n: p.table().sort_by("id").column("_fkin_s").to_pylist() for n, p in (("local", local), ("geneva", gen))}
    assert keys["local"] == keys["geneva"] and None not in keys["geneva"]
    assert_one_file_per_feature(gen, ["s", "_fk_s"])
    ds = lance.dataset(gen.project().table_uri)
    ids = {f.name(): f.id() for f in ds.lance_schema.fields()}
    for frag in ds.get_fragments():  # the input keys in the feature's own file, as the local engine writes them
        assert sorted(ids[c] for c in ("s", "_fk_s", "_fkin_s")) in [sorted(d.fields) for d in frag.data_files()]

    append_rows(gen, [{"id": 100 + i, "q": f"question {i % 7}"} for i in range(10)] + [{"id": 200, "q": "new one"}])
    cluster.reset_calls()
    assert gen.apply(engine="local").ok                 # local continues: reuses Geneva's values
    assert cluster.read_calls() == ["new one"]
    append_rows(gen, [{"id": 300, "q": "question 3"}, {"id": 301, "q": "new one"}, {"id": 302, "q": "other"}])
    cluster.reset_calls()
    run = gen.apply().run.features["s"]                 # Geneva again: reads back both engines' values
    assert cluster.read_calls() == ["other"]
    assert (run.rows, run.distinct, run.reused) == (3, 3, 2)
    table = gen.table().sort_by("id")
    by_q = {}
    for q, v in zip(table.column("q").to_pylist(), table.column("s").to_pylist()):
        assert by_q.setdefault(q, v) == v               # equal inputs, equal values
    assert by_q["question 3"] == [len("question 3"), 1, len(set("question 3")), 1.5]
    reference = project(tmp_path / "ref", features, rows_of_table(table), {"kind": "local"})
    reference.apply()
    assert_same(reference.table().sort_by("id"), table)  # as one local apply would have left it


def rows_of_table(table) -> list[dict]:
    return [{"id": i, "q": q} for i, q in zip(table.column("id").to_pylist(), table.column("q").to_pylist())]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import fkg_extractors, featurekit_geneva
from featurekit.testing import TestProject
TestProject({root!r}, plugins=[fkg_extractors, featurekit_geneva]).apply()
"""


@pytest.mark.slow
def test_killed_driver_resumes_recomputing_only_uncommitted_work(cluster, tmp_path):
    features = {"n": {"extractor": "fkg.flaky", "inputs": {"text": "q"}, "params": {"sleep": 0.05}}}
    rows = rows_of(range(120), bad=False)
    engine = {"kind": "geneva", "address": cluster.address, "concurrency": 1, "checkpoint_size": 10,
              "checkpoint_seconds": 0}
    # three fragments: the kill lands mid-fragment (Geneva 0.17 starts two processes a fragment it writes)
    gen = project(tmp_path / "geneva", features, rows, engine, fragment_rows=40)
    uri = gen.project().table_uri
    cluster.reset_calls()
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(here=str(HERE), root=str(gen.root))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(cluster.read_calls()) < len(rows) // 2:  # kill the driver once half the rows are computed
            assert proc.poll() is None, "the apply finished or died before it could be interrupted"
            assert time.monotonic() < deadline, "the backfill did not get going in time"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_until_quiet(uri)  # Ray reaps the dead driver's job
    done_before = committed(uri)
    assert done_before < len(rows)
    cluster.reset_calls()
    result = gen.apply()
    recomputed = len(cluster.read_calls())
    print(f"\nkilled the driver with {done_before} of {len(rows)} rows committed; the next apply computed "
          f"{recomputed} row(s) and took {len(rows) - done_before - recomputed} from Geneva checkpoints")
    assert result.ok, result.run.features["n"].error
    assert result.run.features["n"].computed == len(rows) - done_before  # every uncommitted row, once
    assert recomputed < len(rows) - done_before  # rows computed before the kill were not computed again
    reference = project(tmp_path / "local", features, rows, {"kind": "local"}, fragment_rows=40)
    with no_sleep():
        reference.apply()
    assert_same_tables(reference, gen)


def committed(uri: str) -> int:
    try:
        ds = lance.dataset(uri)
        return ds.count_rows(filter="_fk_n IS NOT NULL") if "_fk_n" in ds.schema.names else 0
    except (ValueError, OSError):
        return 0


def wait_until_quiet(uri: str, seconds: float = 3.0, limit: float = 60.0) -> None:
    start = time.monotonic()
    version, since = lance.dataset(uri).version, time.monotonic()
    while time.monotonic() - since < seconds and time.monotonic() - start < limit:
        time.sleep(0.5)
        v = lance.dataset(uri).version
        if v != version:
            version, since = v, time.monotonic()


def test_gpu_feature_without_a_gpu_fails_fast_with_exit_1(cluster, tmp_path, capsys):
    from featurekit.cli import main
    features = {"g": {"extractor": "text.length", "inputs": {"text": "q"}, "resources": {"gpus": 1}}}
    p = project(tmp_path, features, rows_of(range(10)), {"kind": "geneva"})
    assert main(["apply", str(p.spec_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error: feature 'g' cannot run on this Ray cluster: it needs 1 GPU per worker, and the Ray cluster " \
        "has 0 GPU" in err, err


def test_engine_options_are_validated_with_the_spec(tmp_path):
    from featurekit.errors import SpecError
    p = project(tmp_path, {"n": {"extractor": "text.length", "inputs": {"text": "q"}}}, rows_of(range(3)),
                {"kind": "geneva", "concurency": 2})
    with pytest.raises(SpecError, match="concurency"):
        p.project()


def test_an_interrupted_geneva_apply_says_in_the_log_what_it_wrote(tmp_path, monkeypatch):
    """Ctrl-C after the ingest: the log entry marks the apply as stopped; nothing needs Ray here."""
    from featurekit.commands.log import UNRECORDED
    from featurekit_geneva.engine import GenevaEngine
    p = project(tmp_path, {"n": {"extractor": "text.length", "inputs": {"text": "q"}}}, rows_of(range(5)),
                {"kind": "geneva"})

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(GenevaEngine, "fill", stop)
    with pytest.raises(KeyboardInterrupt):
        p.apply()
    loaded = p.project()
    applied = featurekit.log(loaded)
    (entry,) = applied.entries
    assert entry["engine"] == "geneva" and entry["interrupted"] and entry["ingested"] == 5
    assert UNRECORDED not in applied.render()


def test_a_local_ray_is_private_and_ray_address_names_a_cluster(monkeypatch):
    """Without `address:` or RAY_ADDRESS featurekit starts its own Ray (`address="local"`): a bare
    `ray.init()` attaches to a cluster that a `ray start` left on the machine (another user's);
    with RAY_ADDRESS it connects there (where `num_cpus` would be refused). What RaySession asks
    of `ray.init` is checked here, without starting anything."""
    from featurekit_geneva.boot import SETUP_HOOK
    from featurekit_geneva.cluster import RAY_SETUP_HOOK_ENV, RaySession
    from featurekit_geneva.options import GenevaOptions

    class Stop(Exception):
        pass

    asked = []

    def init(**kwargs):
        asked.append(kwargs)
        raise Stop

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for env, options, want in ((None, {}, "local"), ("10.1.2.3:6379", {}, "10.1.2.3:6379"),
                               ("10.1.2.3:6379", {"address": "ray://head:10001"}, "ray://head:10001")):
        if env:
            monkeypatch.setenv("RAY_ADDRESS", env)
        with pytest.raises(Stop):
            RaySession(GenevaOptions(**options)).__enter__()
        assert asked[-1]["address"] == want
        assert ("num_cpus" in asked[-1]) == (want == "local")
        assert asked[-1]["runtime_env"] == {"worker_process_setup_hook": SETUP_HOOK}
    # the user's runtime_env is kept, and a start-up hook of theirs runs instead of featurekit's
    for given, want_env in (({"env_vars": {"A": "1"}}, {"env_vars": {"A": "1"}, "worker_process_setup_hook": SETUP_HOOK}),
                            ({"worker_process_setup_hook": "mine.setup"}, {"worker_process_setup_hook": "mine.setup"})):
        with pytest.raises(Stop):
            RaySession(GenevaOptions(runtime_env=given)).__enter__()
        assert asked[-1]["runtime_env"] == want_env
    # inside a Ray job that has a start-up hook already, none is added (Ray refuses a second);
    # Ray's name for that variable, checked so a Ray that renames it fails here
    from ray._private import ray_constants
    assert ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR == RAY_SETUP_HOOK_ENV
    monkeypatch.setenv(RAY_SETUP_HOOK_ENV, "theirs.setup")
    with pytest.raises(Stop):
        RaySession(GenevaOptions()).__enter__()
    assert asked[-1]["runtime_env"] == {}


def test_every_ray_worker_imports_geneva_without_the_rest_clients_api_modules(cluster):
    """featurekit starts or joins Ray with a start-up hook (cluster.worker_runtime_env) that
    defers the REST client's API modules (boot.py) in every worker process, actors included:
    a Geneva job starts several (JobTracker, appliers, a writer a fragment), each importing
    Geneva, ~2 s of CPU less each."""
    @ray.remote(num_cpus=0)
    class Probe:
        def api_modules_loaded(self) -> bool:
            import sys

            import geneva  # noqa: F401
            return "lance_namespace_urllib3_client.api.table_api" in sys.modules

    probe = Probe.remote()
    try:
        assert ray.get(probe.api_modules_loaded.remote(), timeout=120) is False
    finally:
        ray.kill(probe)


def test_the_geneva_internals_relied_on_are_there(tmp_path):
    """featurekit_geneva/upstream.py is the one module that reaches below Geneva's public API;
    each reach is checked here without Ray, so a new Geneva that moves one fails by name."""
    import importlib.metadata
    import inspect

    import pyarrow as pa

    from featurekit_geneva import upstream

    assert importlib.metadata.version("geneva") == upstream.GENEVA_VERSION
    from geneva.runners.ray.pipeline import RayJobFuture
    from geneva.table import Table
    params = inspect.signature(Table.backfill_async).parameters
    assert set(upstream.BACKFILL_PRIVATE_KWARGS) <= set(params)
    assert "udf_payload" in inspect.signature(Table._upload_udf).parameters
    assert {"ray_obj_ref", "job_tracker"} <= {f.name for f in RayJobFuture.__attrs_attrs__}
    assert issubclass(upstream.resources_unavailable(), Exception)
    import geneva._context
    assert callable(geneva._context.get_current_context) and geneva._context.LocalRayContext
    from featurekit_geneva._geneva import load
    geneva = load()
    lance.write_dataset(pa.table({"q": ["a", "bb"]}), str(tmp_path / "t.lance"))
    gtable = geneva.connect(str(tmp_path)).open_table("t")
    from geneva.transformer import UDF

    def size(q: pa.Array) -> pa.Array:
        return pa.StructArray.from_arrays([pa.compute.utf8_length(q)], names=["n"])

    udf = UDF(func=size, name="size", data_type=pa.struct([("n", pa.int32())]), input_columns=["q"])
    spec = upstream.marshal_udf(gtable, udf)
    assert spec.udf_payload and spec.backend and spec.name
    plan = upstream.unpacked_udf_plan(udf)
    assert [o.field.output_column for o in plan.outputs] == ["n"]


# -- object stores and branches: the same cases through both engines -----------------------------

@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 bucket on moto's server on loopback, reachable from the Ray workers of this machine.
    In a process of its own: Lance holds the GIL in some blocking calls (`LanceFragment.count_rows`
    with a filter), and a moto server thread in this process could then never answer (a deadlock)."""
    pytest.importorskip("moto.server")
    from featurekit.testing import moto_server
    with moto_server(BUCKET, S3_SECRETS["FKG_S3_KEY_ID"], S3_SECRETS["FKG_S3_SECRET"]) as (endpoint, client):
        yield endpoint, client


BUCKET = "featurekit-geneva"


def on_s3(p: TestProject, endpoint: str, prefix: str) -> TestProject:
    """The project's table moved to the bucket, its secrets named as ${VAR}."""
    spec = yaml.safe_load(p.spec_path.read_text())
    spec["table"]["db"] = f"s3://{BUCKET}/{prefix}"
    spec["table"]["storage_options"] = {"aws_endpoint": endpoint, "region": "us-east-1", "allow_http": True,
                                        "aws_access_key_id": "${FKG_S3_KEY_ID}",
                                        "aws_secret_access_key": "${FKG_S3_SECRET}"}
    p.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def objects(client, prefix: str) -> dict[str, bytes]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for page in pages for o in page.get("Contents", [])}


def holds_secret(blob: bytes) -> bool:
    """The secret in an object, also inside Geneva's stored UDFs (JSON with the pickle in base64)."""
    import base64
    secret = S3_SECRETS["FKG_S3_SECRET"].encode()
    if secret in blob:
        return True
    try:
        packed = json.loads(blob)
    except ValueError:
        return False
    return isinstance(packed, dict) and "udf_pickle" in packed and secret in base64.b64decode(packed["udf_pickle"])


S3_FEATURES = {"n": {"extractor": "fkg.flaky", "inputs": {"text": "q"}},
               "s": {"extractor": "fkg.shared", "inputs": {"text": "w"}}}


def test_an_object_store_table_parity_failed_rows_and_shared_values(cluster, s3_endpoint, tmp_path):
    """Both engines on moto's S3 (storage options with ${VAR} secrets): equal tables (values, states,
    input keys, metadata), failed rows included; nothing is written locally and no secret lands in
    any object; then new rows and a new feature on a branch on the bucket (only tree/exp and _refs
    objects are new, main's unchanged), where known inputs are read back from the bucket."""
    endpoint, client = s3_endpoint
    rows = [{"id": i, "q": ("bad " if i % 9 == 4 else "") + f"question {i}", "w": f"word {i % 6}"} for i in range(45)]
    tables = {}
    for engine in ("local", "geneva"):
        p = on_s3(project(tmp_path / engine, S3_FEATURES, rows, {"kind": engine, "concurrency": 1} if engine ==
                          "geneva" else {"kind": engine}, fragment_rows=25), endpoint, f"{tmp_path.name}-{engine}")
        cluster.reset_calls()
        result = p.apply()
        assert result.run.features["n"].failed == 5 and result.run.features["s"].failed == 0
        tables[engine] = p
        calls = cluster.read_calls()
        distinct, good = {r["w"] for r in rows}, [r["q"] for r in rows if "bad" not in r["q"]]
        runs = {n: (r.computed, r.failed, r.error) for n, r in result.run.features.items()}
        assert runs["s"] == (45, 0, None), (engine, runs)
        assert sorted(calls) == sorted([*distinct, *good]), (engine, runs)  # s: each distinct input once; n: each good row
    local, gen = tables["local"], tables["geneva"]
    assert_same_tables(local, gen)
    assert local.table().column("_fkin_s").to_pylist() == gen.table().column("_fkin_s").to_pylist()
    assert gen.table().column("_fk_s").null_count == 0
    assert not (gen.root / "data").exists()                  # nothing local: the table is in the bucket
    stored = objects(client, f"{tmp_path.name}-geneva/")
    assert any("/test.lance/data/" in k for k in stored)
    assert not [k for k, blob in stored.items() if holds_secret(blob)]

    # a branch on the object store: Geneva's files under tree/exp, main's objects unchanged; its new
    # rows' known inputs read back from the bucket ("word 2"), not computed
    branch_tables = {}
    for engine, p in tables.items():
        main_before = {k: len(v) for k, v in objects(client, f"{tmp_path.name}-{engine}/test.lance/").items()}
        spec = yaml.safe_load(p.spec_path.read_text())
        spec["features"]["st"] = {"extractor": "fkg.stats", "inputs": {"text": "q"}}
        p.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        append_rows(p, [{"id": 100, "q": "question 100", "w": "word 2"}, {"id": 101, "q": "question 101", "w": "new"}])
        cluster.reset_calls()
        runs = p.apply(branch="exp").run.features
        assert runs["st"].computed == 47 and runs["s"].computed == 2
        assert sorted(cluster.read_calls()) == ["new", "question 100", "question 101"]
        after = {k: len(v) for k, v in objects(client, f"{tmp_path.name}-{engine}/test.lance/").items()}
        new = [k for k in after if k not in main_before]
        assert new and all("/test.lance/tree/exp/" in k or "/test.lance/_refs/" in k for k in new), new
        assert {k: after[k] for k in main_before} == main_before
        branch_tables[engine] = branch_table(p, "exp")
    assert_same(branch_tables["local"], branch_tables["geneva"])
    assert branch_tables["geneva"].column("_fk_st").null_count == 0
    assert not [k for k, blob in objects(client, f"{tmp_path.name}-geneva/").items() if holds_secret(blob)]


def branch_table(p: TestProject, branch: str):
    from featurekit.table.handle import Table, table_ref
    return Table(table_ref(p.project()).on(branch)).require().to_table().sort_by("id")


def main_files(root: Path) -> dict[str, int]:
    """Main's files (not a branch's own, under tree/, nor the refs), with their sizes."""
    return {str(f.relative_to(root)): f.stat().st_size for f in root.rglob("*")
            if f.is_file() and f.relative_to(root).parts[0] not in ("tree", "_refs")}


def test_a_branch_parity_main_untouched(cluster, tmp_path):
    """`apply --branch` on both engines from the same main: equal branch tables (a new feature,
    failed rows retried, shared values), and main's files and versions untouched by Geneva's jobs:
    its data files and checkpoints land under the branch's root."""
    main_features = {"n": {"extractor": "fkg.flaky", "inputs": {"text": "q"}}}
    variant = {**main_features, "s": {"extractor": "fkg.shared", "inputs": {"text": "w"}},
               "st": {"extractor": "fkg.stats", "inputs": {"text": "q"}}}
    rows = [{"id": i, "q": ("bad " if i % 9 == 4 else "") + f"question {i}", "w": f"word {i % 5}"} for i in range(45)]
    tables = {}
    for engine in ("local", "geneva"):
        p = project(tmp_path / engine, main_features, rows, {"kind": "local"}, fragment_rows=25)  # 2 fragments
        p.apply()                                     # main, by the local engine
        root = Path(p.project().table_uri)
        before, version = main_files(root), lance.dataset(str(root)).version
        spec = yaml.safe_load(p.spec_path.read_text())
        spec["features"] = variant
        spec["engine"] = {"kind": engine, "concurrency": 1} if engine == "geneva" else {"kind": engine}
        p.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        cluster.reset_calls()
        runs = p.apply(branch="exp").run.features
        assert runs["st"].computed == 45 and runs["s"].computed == 45
        assert (runs["n"].computed, runs["n"].failed) == (0, 5)              # n: only its failed rows retried
        assert sorted(cluster.read_calls()) == sorted({r["w"] for r in rows})   # s: once an input
        assert main_files(root) == before and lance.dataset(str(root)).version == version  # main untouched
        own = [d for f in lance.dataset(str(root / "tree" / "exp")).get_fragments() for d in f.data_files()
               if d.base_id is None]
        assert own and all((root / "tree" / "exp" / "data" / d.path).is_file() for d in own)
        tables[engine] = p
    local, gen = (branch_table(tables[e], "exp") for e in ("local", "geneva"))
    assert_same(local, gen)
    assert local.column("_fkin_s").to_pylist() == gen.column("_fkin_s").to_pylist()
    assert gen.column("_fk_s").null_count == 0 and gen.column("chars").null_count == 0


def test_features_filled_together_share_the_cluster_as_jobs_at_once(monkeypatch):
    """How many of a wave's backfills run at once and what each applier reserves (no Ray started:
    the cluster's resources are stubbed): one job at a time by default (concurrent jobs are
    opt-in), never so many that the jobs' trackers and writers could starve the appliers, and an
    applier's CPUs cut to its share."""
    from types import SimpleNamespace

    from featurekit.plugins.extractor import Resources
    from featurekit_geneva.cluster import jobs_at_once
    from featurekit_geneva.options import GenevaOptions

    def feature(cpus=1.0, gpus=0.0):
        return SimpleNamespace(resources=Resources(cpus=cpus, gpus=gpus))

    for cpus, options, want in ((2, {}, (1, [(1, None), (1, None), (1, None)])),
                                (2, {"jobs_at_once": 3}, (3, [(1, 0.367), (1, 0.367), (1, 0.367)])),
                                (16, {}, (1, [(9, None), (2, None), (1, None)])),
                                (16, {"jobs_at_once": 3}, (3, [(5, None), (2, None), (1, None)]))):
        monkeypatch.setattr(ray, "cluster_resources", lambda cpus=cpus: {"CPU": float(cpus)})
        at_once, plans = jobs_at_once(GenevaOptions(**options), [feature(), feature(), feature()], [9, 2, 1])
        assert (at_once, [(w, None if c is None else round(c, 3)) for w, c in plans]) == want, (cpus, options)
    assert jobs_at_once(GenevaOptions(), [feature()], [3])[0] == 1  # one feature: as before, no share
