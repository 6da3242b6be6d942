"""Issue 21, N10: on an object store, a writer whose lease ran out while it was paused
(SIGSTOP) and another apply took the lock cannot commit when it wakes: its next commit fails
with `LockLost`, and the table holds the other writer's rows only (moto's S3 server)."""
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pyarrow as pa
import pytest

from featurekit.errors import LockLost
from featurekit.table.handle import Table
from featurekit.table.lease import WRITER_PROPERTY, held
from featurekit.table.lock import table_lock
from featurekit.table.ref import TableRef

from .conftest import subprocess_env

LEASE = 2.0

# A writer that takes the lock, reads the table, waits for a line on stdin (paused there by the
# test), then appends the keys it prepared.
WRITER = textwrap.dedent("""
    import json, sys
    import pyarrow as pa
    from featurekit.errors import FeaturekitError
    from featurekit.table.handle import Table
    from featurekit.table.lock import table_lock
    from featurekit.table.ref import TableRef
    uri, options = sys.argv[1], json.loads(sys.argv[2])
    ref = TableRef(uri, tuple(sorted(options.items())))
    try:
        with table_lock(ref):
            table = Table(ref)
            table.dataset
            print("locked", flush=True)
            sys.stdin.readline()
            table.write(pa.table({"id": list(range(10, 20)), "who": ["paused"] * 10}))
    except FeaturekitError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
""")


@pytest.fixture
def s3_ref(s3, monkeypatch):
    monkeypatch.setenv("FEATUREKIT_LOCK_LEASE_SECONDS", str(LEASE))
    return TableRef(f"s3://{s3.bucket}/n10-{uuid.uuid4().hex[:8]}/t.lance", tuple(sorted(s3.options.items())))


def _rows(ref):
    ds = Table(ref).require()
    return sorted(ds.to_table().to_pylist(), key=lambda r: r["id"])


def test_n10_a_writer_paused_past_its_lease_cannot_commit_after_another_took_the_lock(s3, s3_ref, tmp_path):
    with table_lock(s3_ref):
        Table(s3_ref).write(pa.table({"id": list(range(10)), "who": ["first"] * 10}))
    env = {**subprocess_env(), "FEATUREKIT_LOCK_LEASE_SECONDS": str(LEASE)}
    err = open(tmp_path / "paused.err", "w")
    paused = subprocess.Popen([sys.executable, "-c", WRITER, s3_ref.uri, json.dumps(s3.options)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert paused.stdout.readline().strip() == "locked", (tmp_path / "paused.err").read_text()
        paused.send_signal(signal.SIGSTOP)
        time.sleep(LEASE * 1.5)  # its lease runs out: no renewal while it is stopped
        with table_lock(s3_ref):  # taken over
            table = Table(s3_ref)
            version = table.write(pa.table({"id": list(range(10, 20)), "who": ["taker"] * 10}))
            assert table.dataset.read_transaction(version).transaction_properties[WRITER_PROPERTY] == \
                str(held(s3_ref.identity).generation)
            paused.send_signal(signal.SIGCONT)
            paused.stdin.write("go\n")
            paused.stdin.flush()
            assert paused.wait(60) == 1  # refused while the taker still holds the lock
    finally:
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
            paused.kill()
        err.close()
    message = (tmp_path / "paused.err").read_text()
    assert "LockLost: the writer lock on" in message and "was taken over" in message, message
    assert "nothing more of it is in the table" in message and "Traceback" not in message, message
    rows = _rows(s3_ref)
    assert [r["id"] for r in rows] == list(range(20))
    assert {r["who"] for r in rows} == {"first", "taker"}


def test_n10_a_lost_lease_is_refused_inside_lances_commit(s3, s3_ref):
    """The fence runs in Lance's commit (its commit_lock), not only before it: a lease lost
    between the data files and the manifest still commits nothing."""
    with table_lock(s3_ref):
        Table(s3_ref).write(pa.table({"id": [0], "who": ["first"]}))
    with pytest.raises(LockLost, match="nothing more of it is in the table"):
        with table_lock(s3_ref):
            lease = held(s3_ref.identity)
            table = Table(s3_ref)
            before = table.version
            data = pa.table({"id": [1], "who": ["late"]})

            def lose_after_the_data_files():
                yield from data.to_batches()
                lease.expires = 0.0  # its lease ran out while the files were written
            table.write(pa.RecordBatchReader.from_batches(data.schema, lose_after_the_data_files()))
    assert Table(s3_ref).version == before and [r["id"] for r in _rows(s3_ref)] == [0]


def test_n10_an_apply_stopped_past_its_lease_is_refused_when_it_resumes(s3, proj, monkeypatch):
    """The issue's run, end to end: apply A on S3 is stopped (SIGSTOP) mid-fill past its lease,
    apply B takes the lock over and finishes; A, continued, commits nothing more and exits 1."""
    import lance

    from .conftest import stop, wait_until
    monkeypatch.setenv("FEATUREKIT_LOCK_LEASE_SECONDS", str(LEASE))
    prefix = f"n10-{uuid.uuid4().hex[:8]}"
    rows = [{"id": i, "question": f"q{i}" + "q" * (i % 7)} for i in range(120)]
    proj.write({"slow": {"extractor": "faults.slow_length", "inputs": {"text": "question"},
                         "params": {"seconds": 0.04}}}, rows,
               table={"db": f"s3://{s3.bucket}/{prefix}", "fragment_rows": 20,
                      "storage_options": dict(s3.spec_options)})
    uri = f"s3://{s3.bucket}/{prefix}/t.lance"

    def filled() -> int:
        try:
            return lance.dataset(uri, storage_options=s3.options).count_rows(filter="slow IS NOT NULL")
        except (OSError, ValueError):
            return 0
    first = proj.start("apply", "-q", "spec.yaml")
    try:
        assert wait_until(lambda: filled() > 0, 60), stderr_of_path(first)
        first.send_signal(signal.SIGSTOP)
        time.sleep(LEASE * 1.5)
        second = proj.cli("apply", "-q", "spec.yaml", timeout=120)
        assert second.returncode == 0, second.stderr
        first.send_signal(signal.SIGCONT)
        code = first.wait(60)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            stop(first, signal.SIGKILL)
    err = stderr_of_path(first)
    assert code == 1 and "Traceback" not in err, err
    assert "was taken over" in err and ("nothing more of it is in the table" in err or "later ones were refused" in err), err
    table = lance.dataset(uri, storage_options=s3.options).to_table(columns=["id", "slow"]).to_pylist()
    assert sorted(r["id"] for r in table) == list(range(120))
    assert all(r["slow"] == len(rows[r["id"]]["question"]) for r in table)


def stderr_of_path(proc) -> str:
    return proc.err_path.read_text()


def test_n10_a_version_committed_by_a_later_holder_fences_an_earlier_one(s3, s3_ref):
    """Defence in depth: whatever the tag says, a writer does not build on a version a later
    holder (a larger generation in its transaction properties) committed."""
    import lance
    with table_lock(s3_ref):
        Table(s3_ref).write(pa.table({"id": [0], "who": ["first"]}))
    with pytest.raises(LockLost):
        with table_lock(s3_ref):
            lease = held(s3_ref.identity)
            table = Table(s3_ref)
            assert table.exists  # the handle reads the table before the later holder commits
            lance.write_dataset(pa.table({"id": [1], "who": ["later"]}), s3_ref.uri, mode="append",
                                storage_options=s3.options,
                                transaction_properties={WRITER_PROPERTY: str(lease.generation + 1)})
            table.write(pa.table({"id": [2], "who": ["earlier"]}))
    assert [r["who"] for r in _rows(s3_ref)] == ["first", "later"]
