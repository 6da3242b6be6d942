"""The fault-injection suite: kills at random points of an apply, concurrent applies and
readers, misbehaving extractors, and a full disk. Each ends with the table a clean run
would leave, committed work not redone, and no row lost."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from featurekit.table.metadata import todo_filter

from .conftest import TALLY, TESTS, Proj, registry, stderr_of, stop, subprocess_env, wait_until

N = 300
ROWS = [{"id": i, "question": ("BOOM " if i == 17 else "") + "q" * (i % 23 + 1) + "?"} for i in range(N)]
FEATURES = {
    "qlen": {"extractor": "text.length", "inputs": {"text": "question"}},
    "slow": {"extractor": "faults.slow_length", "inputs": {"text": "question"}, "params": {"seconds": 0.01},
             "resources": {"batch_size": 10, "workers": 2}},
    "r": {"extractor": "faults.raises", "inputs": {"text": "question"}, "resources": {"batch_size": 8},
          "on_error": {"max_failure_rate": 0.05}},
}
# Kill points: delays after the apply starts writing, drawn from a seed (set
# FEATUREKIT_RELIABILITY_SEED / _KILLS to explore more of them), alternating SIGKILL and SIGTERM.
_RNG = random.Random(int(os.environ.get("FEATUREKIT_RELIABILITY_SEED", "12")))
KILLS = [(round(_RNG.uniform(0.0, 1.5), 2), (signal.SIGKILL, signal.SIGTERM)[i % 2])
         for i in range(int(os.environ.get("FEATUREKIT_RELIABILITY_KILLS", "6")))]


def _expected(row):
    n = len(row["question"])
    return {"id": row["id"], "question": row["question"], "qlen": n, "slow": n, "r": None if "BOOM" in row["question"] else n}


def _project(root) -> Proj:
    p = Proj(root)
    p.write(FEATURES, ROWS, table={"fragment_rows": 25},
            engine={"kind": "local", "checkpoint_seconds": 0.05, "ingest_commit_rows": 50})
    return p


def _todo(p: Proj) -> dict[str, int]:
    """Rows each feature still has to (re)compute, counting rows not ingested yet."""
    from featurekit.api import load_spec
    project = load_spec(p.spec, registry=registry())
    if p.version() is None:
        return {name: N for name in project.features}
    ds = p.dataset()
    missing = N - ds.count_rows()
    out = {}
    for name, f in project.features.items():
        done = ds.count_rows(filter=f"{f.state_column} = '{f.fingerprint}'") if f.state_column in ds.schema.names else 0
        out[name] = ds.count_rows() - done + missing
    return out


@pytest.mark.parametrize("delay,sig", KILLS, ids=[f"{s.name}@{d}s" for d, s in KILLS])
def test_a_kill_at_a_random_point_loses_nothing_and_redoes_nothing(tmp_path, delay, sig):
    p = _project(tmp_path)
    proc = p.start("apply", "-q", "spec.yaml")
    # Once the process works on the table (ingest has begun), kill it a little later.
    started = wait_until(lambda: os.path.exists(os.path.join(p.uri, "_versions")) or proc.poll() is not None, 60)
    assert started
    time.sleep(delay)
    if proc.poll() is None:
        code = stop(proc, sig)
        # -SIGTERM: the apply had finished and was exiting when the signal came
        assert code in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM, 0), stderr_of(proc)
    else:
        proc.wait()
    assert "Traceback" not in stderr_of(proc)
    TALLY["kills"] += 1
    todo = _todo(p)
    result = p.apply()  # in this process: the lock is free, the workers are gone
    assert result.ok, [f.error for f in (result.run.features.values() if result.run else [])]
    redone = {n: f.computed + f.failed for n, f in (result.run.features.items() if result.run else [])}
    assert {n: redone.get(n, 0) for n in todo} == todo  # committed work is not redone
    table = p.rows("id", "question", "qlen", "slow", "r")
    TALLY["rows_lost"] += N - len(table)
    assert table == [_expected(r) for r in ROWS]
    version = p.version()
    assert p.apply().ok and p.version() == version  # retrying the row that always fails changes nothing


def test_concurrent_applies_and_readers_see_a_consistent_table(tmp_path):
    p = _project(tmp_path)
    assert p.apply(select=["qlen"]).ok
    errors, reads = [], [0]
    done = threading.Event()

    def read():
        import lance
        while not done.is_set():
            try:
                ds = lance.dataset(p.uri)
                table = ds.to_table(columns=["id", "question", "qlen", "_fk_qlen"])
                table.validate(full=True)
                fp = ds.schema.field("qlen").metadata[b"featurekit.fingerprint"].decode()
                for row in table.to_pylist():
                    if row["_fk_qlen"] == fp and row["qlen"] != len(row["question"]):
                        errors.append(row)
                if table.num_rows != N:
                    errors.append(f"{table.num_rows} rows")
                reads[0] += 1
            except Exception as exc:  # a reader must never fail
                errors.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        procs = [p.start("apply", "-q", "spec.yaml") for _ in range(2)]
        results = [(proc.wait(120), stderr_of(proc)) for proc in procs]
    finally:
        done.set()
        reader.join()
    assert not errors and reads[0] > 0
    assert sorted(code for code, _ in results)[0] == 0, results
    for code, err in results:
        assert code == 0 or "is writing" in err and "wait for it to finish" in err, err
    assert p.apply().ok and p.rows("id", "question", "qlen", "slow", "r") == [_expected(r) for r in ROWS]


MISBEHAVING = [
    ("faults.wrong_length", "returned 3 values for the 4 rows it was given"),
    ("faults.wrong_type", "returned string, but declares int32"),
]


@pytest.mark.parametrize("extractor,message", MISBEHAVING, ids=[m[0] for m in MISBEHAVING])
def test_a_contract_breaking_extractor_fails_its_feature_and_keeps_the_others(proj, extractor, message):
    proj.write({"ok": FEATURES["qlen"], "bad": {"extractor": extractor, "inputs": {"text": "question"},
                                                 "resources": {"batch_size": 4}}}, ROWS[:8])
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert not result.ok and message in result.run.features["bad"].error
    assert [r["ok"] for r in proj.rows("id", "ok")] == [len(r["question"]) for r in ROWS[:8]]


def test_nan_is_a_value_not_a_failure(proj):
    proj.write({"f": {"extractor": "faults.nan", "inputs": {"text": "question"}}},
               [{"id": 0, "question": "NAN"}, {"id": 1, "question": "ab"}])
    result = proj.apply()
    assert result.ok and result.run.features["f"].failed == 0
    values = [r["f"] for r in proj.rows("id", "f")]
    assert values[0] != values[0] and values[1] == 2.0
    assert proj.apply().run is None


@pytest.mark.parametrize("extractor,marker", [("faults.hangs", "HANG"), ("faults.stuck", "STUCK")])
def test_a_hanging_call_times_out_in_its_worker_and_the_other_rows_keep_their_values(proj, extractor, marker):
    rows = [{"id": i, "question": marker if i == 5 else f"q{i}?"} for i in range(12)]
    proj.write({"h": {"extractor": extractor, "inputs": {"text": "question"},
                      "resources": {"batch_size": 4, "timeout": 0.3, "workers": 1},
                      "on_error": {"max_failure_rate": 0.5}}}, rows)
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    run = result.run.features["h"]
    assert result.ok and run.computed + run.failed == 12
    # an interruptible hang is isolated to its row; a call stuck in C code fails its batch
    assert run.failed == (1 if marker == "HANG" else 4)
    assert all("ExtractorTimeout" in message for _, message in run.errors)
    values = {r["id"]: r["h"] for r in proj.rows("id", "h")}
    assert values[5] is None and values[11] == len("q11?")
    assert proj.dataset().count_rows(filter=todo_filter("_fk_h", _fp(proj, "h"))) == run.failed


def _fp(proj, name):
    from featurekit.api import load_spec
    return load_spec(proj.spec, registry=registry()).features[name].fingerprint


DISK_FULL = textwrap.dedent("""
    import json, os, subprocess, sys
    root = sys.argv[1]
    def run(*args):
        r = subprocess.run([sys.executable, "-m", "featurekit", *args], cwd=root, capture_output=True, text=True)
        return {"code": r.returncode, "err": r.stderr[-2000:]}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", os.path.join(root, "data")], check=True)
    full = run("apply", "-q", "spec.yaml")
    subprocess.run(["mount", "-o", "remount,size=64m", os.path.join(root, "data")], check=True)
    again = run("apply", "-q", "spec.yaml")
    import lance
    table = lance.dataset(os.path.join(root, "data", "t.lance")).to_table(columns=["id", "big"]).sort_by("id")
    ok = [len(v or "") for v in table.column("big").to_pylist()]
    print(json.dumps({"full": full, "again": again, "rows": table.num_rows, "lengths": ok}))
""")


def test_a_full_disk_says_so_and_the_next_apply_finishes(tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to mount a small tmpfs")
    rows = [{"id": i, "question": f"row {i}"} for i in range(60)]
    p = Proj(tmp_path)
    p.write({"big": {"extractor": "faults.bloat", "inputs": {"text": "question"}, "params": {"times": 100_000},
                     "resources": {"batch_size": 5}}}, rows, table={"fragment_rows": 10})
    (tmp_path / "data").mkdir()
    (tmp_path / "run.py").write_text(DISK_FULL)
    cmd = [sys.executable, str(tmp_path / "run.py"), str(tmp_path)]
    if os.geteuid() != 0:
        cmd = ["unshare", "--user", "--map-root-user", "--mount"] + cmd
    else:
        cmd = ["unshare", "--mount"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    if proc.returncode != 0 and ("mount" in proc.stderr or "unshare" in proc.stderr):
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[-200:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    TALLY["bad_inputs"] += 1
    assert out["full"]["code"] == 1 and "Traceback" not in out["full"]["err"], out["full"]
    assert "disk" in out["full"]["err"] and "full" in out["full"]["err"], out["full"]["err"]
    assert "another writer" not in out["full"]["err"]
    assert out["again"]["code"] == 0, out["again"]
    assert out["rows"] == 60 and out["lengths"] == [100_000] * 60


def test_the_suite_registers_its_plugin_for_subprocesses():
    assert (TESTS / "reliability" / "faults.py").exists()
    assert "reliability.faults" in subprocess_env()["FEATUREKIT_PLUGINS"]
