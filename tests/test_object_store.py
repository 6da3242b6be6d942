"""Tables on an S3-compatible object store (moto's server on loopback, started by the tests):
apply, status, slice, the loader and train run there with the spec's storage options, and
the writer lock is a Lance tag on a lease, not a local file."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from fktest import color_embed_extractor, registry_with

import featurekit

Embed = color_embed_extractor()


def spec_dict(s3, prefix: str, **table) -> dict:
    return {
        "featurekit": 1, "name": "s3-test",
        "table": {"db": f"s3://{s3.bucket}/{prefix}", "name": "t", "fragment_rows": 30,
                  "storage_options": dict(s3.spec_options), **table},
        "source": {"format": "jsonl", "path": "raw/*.jsonl", "key": "id"},
        "features": {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}},
                     "emb": {"extractor": "acme.embed", "inputs": {"text": "question"}}},
        "slices": {"all_rows": {"where": "qlen > 0",
                                "split": {"by": "id", "seed": 0, "fractions": {"train": 0.7, "val": 0.3}}}},
        "recipes": {"probe": {"trainer": "linear_probe", "slice": "all_rows", "split": "train",
                              "columns": {"features": "emb", "label": "answer"},
                              "params": {"steps": 6, "lr": 0.2, "batch_size": 16}, "output": "runs/probe"}},
    }


@pytest.fixture
def s3_project(s3, tmp_path, monkeypatch):
    import featurekit.plugins.registry
    reg = registry_with(Embed)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    colors = ["red", "green", "blue"]
    (tmp_path / "raw").mkdir()
    rows = [{"id": i, "question": f"what color is {colors[i % 3]}", "answer": colors[i % 3]} for i in range(90)]
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_dict(s3, prefix), sort_keys=False))
    return tmp_path, prefix


def test_apply_status_slice_loader_and_train_run_on_an_object_store(s3, s3_project, run_cli):
    pytest.importorskip("torch")
    root, prefix = s3_project
    code, out, err = run_cli("apply", "-q", "spec.yaml", cwd=root)
    assert code == 0, err
    assert "ingested 90 row(s)" in out and "emb: 90 computed" in out
    keys = s3.keys(prefix)
    assert any(k.startswith(f"{prefix}/t.lance/data/") for k in keys)
    assert any(k.startswith(f"{prefix}/t.lance/_versions/") for k in keys)
    assert not (root / "data").exists()                       # nothing local: no table, no lock file, no cache
    assert not [k for k in keys if "featurekit-writer" in k]  # the lock tag is gone after the apply
    assert any(k.startswith(f"{prefix}/.t.lance.featurekit-lock/_versions/") for k in keys)  # its dataset stays

    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[:2] == (0, "")  # up to date: nothing, not even a version
    code, out, _ = run_cli("status", "spec.yaml", cwd=root)
    assert code == 0 and f"s3://{s3.bucket}/{prefix}/t.lance" in out
    assert "qlen" in out and "fresh" in out and "computed 90" in out
    code, out, _ = run_cli("slice", "spec.yaml", "all_rows", "--json", cwd=root)
    report = json.loads(out)
    assert code == 0 and sum(report["splits"].values()) == 90
    code, out, _ = run_cli("slice", "spec.yaml", "all_rows", "--keys", "val", cwd=root)
    assert code == 0 and len(out.split()) == report["splits"]["val"]

    loader = featurekit.dataloader(root / "spec.yaml", recipe="probe", batch_size=16)
    assert loader.num_rows == report["splits"]["train"]
    assert all(r.locations is None for r in loader.reads)     # remote files: read through Lance
    seen = sum(len(b["label"]) for b in loader)
    assert seen == loader.num_rows
    assert next(iter(loader))["features"].shape[1:] == (2, 4)

    code, out, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q", cwd=root)
    assert code == 0, err
    run_dir = (root / "runs" / "probe" / (root / "runs" / "probe" / "LATEST").read_text().strip())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["table"]["uri"] == f"s3://{s3.bucket}/{prefix}/t.lance"
    assert "testing" not in json.dumps(manifest)              # the secret never lands in a record

    # compact on the object store: old versions go, the run's version is tagged and stays readable
    code, out, err = run_cli("compact", "spec.yaml", "--older-than", "0s", cwd=root)
    assert code == 0, err
    assert "old versions removed:" in out and f"tagged featurekit-run-probe-{run_dir.name}" in out
    pinned = manifest["table"]["version"]
    ref = _ref(s3, root)
    import lance
    ds = lance.dataset(ref.uri, storage_options=ref.storage_options)
    assert pinned in {v["version"] for v in ds.versions()}
    assert lance.dataset(ref.uri, version=pinned, storage_options=ref.storage_options).count_rows() == 90
    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[:2] == (0, "")  # still up to date


def test_a_branch_and_a_tag_on_an_object_store(s3, s3_project, run_cli):
    root, prefix = s3_project
    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[0] == 0
    main_keys = s3.keys(f"{prefix}/t.lance/")
    spec = yaml.safe_load((root / "spec.yaml").read_text())
    spec["slices"]["all_rows"]["where"] = "qlen > 14"
    (root / "variant.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    code, out, err = run_cli("apply", "variant.yaml", "--branch", "strict", "--tag", "strict-v1", cwd=root)
    assert code == 0, err
    assert "created branch strict" in out and "as strict-v1" in out
    after = s3.keys(f"{prefix}/t.lance/")
    new = [k for k in after if k not in main_keys]
    assert set(main_keys) <= set(after)
    assert all(k.startswith((f"{prefix}/t.lance/tree/strict/", f"{prefix}/t.lance/_refs/")) for k in new), new
    code, out, _ = run_cli("branches", "spec.yaml", cwd=root)
    assert code == 0 and "branch strict: from main version" in out and "slice all_rows: fingerprint differs" in out


def test_storage_options_name_environment_variables(s3, s3_project, run_cli, monkeypatch):
    root, _ = s3_project
    monkeypatch.delenv("FK_TEST_S3_SECRET")
    code, _, err = run_cli("apply", "spec.yaml", cwd=root)
    assert code == 2
    assert "table.storage_options.aws_secret_access_key: environment variable FK_TEST_S3_SECRET is not set" in err


def test_a_secret_written_into_the_spec_is_refused(s3, s3_project, run_cli):
    root, prefix = s3_project
    spec = spec_dict(s3, prefix)
    spec["table"]["storage_options"]["aws_secret_access_key"] = "hunter2"
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    code, _, err = run_cli("validate", "spec.yaml", cwd=root)
    assert code == 2
    assert ("table.storage_options: aws_secret_access_key: a secret written into the spec ends up in git; "
            "write aws_secret_access_key: ${AWS_SECRET_ACCESS_KEY}") in err


# -- the writer lock on an object store -------------------------------------------------------

def _ref(s3, root):
    from featurekit.api import load_spec
    from featurekit.table.handle import table_ref
    return table_ref(load_spec(root / "spec.yaml"))


def test_a_second_writer_is_refused_while_the_lock_is_held(s3, s3_project, run_cli):
    from featurekit.table.lock import table_lock
    root, _ = s3_project
    assert run_cli("apply", "-q", "spec.yaml", "--select", "qlen", cwd=root)[0] == 0
    with table_lock(_ref(s3, root)):
        code, _, err = run_cli("apply", "spec.yaml", cwd=root)
    assert code == 1
    assert "another featurekit apply (" in err and f"pid {os.getpid()}) is writing s3://" in err
    assert "if it died, the lock is free after" in err
    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[0] == 0   # released: the next apply goes through


HOLD = """
import sys, time
from featurekit.table.handle import TableRef
from featurekit.table.lock import table_lock
ref = TableRef(sys.argv[1], tuple(sorted({k: v for k, v in (a.split("=", 1) for a in sys.argv[2:])}.items())))
with table_lock(ref):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_dead_holders_lock_is_taken_over_when_its_lease_runs_out(s3, s3_project, run_cli, monkeypatch):
    """A holder killed with SIGKILL cannot release its tag: the lease it stopped renewing
    expires, and the next apply takes the lock over."""
    root, _ = s3_project
    assert run_cli("apply", "-q", "spec.yaml", "--select", "qlen", cwd=root)[0] == 0
    ref = _ref(s3, root)
    env = {**os.environ, "FEATUREKIT_LOCK_LEASE_SECONDS": "2", "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, ref.uri, *(f"{k}={v}" for k, v in s3.options.items())],
                              stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        monkeypatch.setenv("FEATUREKIT_LOCK_LEASE_SECONDS", "2")
        code, _, err = run_cli("apply", "spec.yaml", cwd=root)
        assert code == 1 and f"pid {holder.pid}) is writing" in err   # its lease has not run out yet
        time.sleep(2.5)
        code, out, err = run_cli("apply", "-q", "spec.yaml", cwd=root)
        assert code == 0, err
        assert "emb: 90 computed" in out
    finally:
        if holder.poll() is None:
            holder.kill()


def test_two_applies_taking_over_one_dead_lease_do_not_both_win(s3, s3_project, run_cli):
    import threading

    from featurekit.errors import RunError
    from featurekit.table.handle import open_dataset
    from featurekit.table.lease import TagLease
    root, _ = s3_project
    assert run_cli("apply", "-q", "spec.yaml", "--select", "qlen", cwd=root)[0] == 0
    ds = open_dataset(_ref(s3, root))
    dead = TagLease(ds, "t", lease=1.0)
    dead.acquire()
    dead._stop.set()          # it stops renewing, as a dead process would, and never releases
    dead._thread.join()
    time.sleep(1.2)
    won, lost = [], []
    barrier = threading.Barrier(4)

    def take():
        lease = TagLease(open_dataset(_ref(s3, root)), "t", lease=30.0)
        barrier.wait()
        try:
            lease.acquire()
            won.append(lease)
        except RunError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1, (won, lost)
    assert all("another featurekit apply" in m for m in lost)
    won[0].release()
    assert "featurekit-writer" not in ds.tags.list()
