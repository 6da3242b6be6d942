"""Issue 21, N11: a DataLoader or `featurekit.read` of an older version holds a reader lease
that `featurekit compact` respects, and compact says what it kept and why."""
import json
import os
import socket
import time

import featurekit
from featurekit.table.readers import live_readers, pin_version, readers_folder
from featurekit.table.ref import TableRef

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}


def _two_versions(proj) -> int:
    proj.write(CHEAP, [{"id": i, "question": f"q{i}"} for i in range(40)], table={"fragment_rows": 10})
    assert proj.apply().ok
    old = proj.version()
    proj.write_rows([{"id": i, "question": f"q{i}"} for i in range(60)])
    assert proj.apply().ok
    assert proj.version() > old
    return old


def test_n11_compact_keeps_the_version_a_live_dataloader_reads_and_says_why(proj):
    old = _two_versions(proj)
    loader = featurekit.DataLoader(proj.uri, columns=["id", "n"], version=old, batch_size=8, pin_memory=False)
    assert [r["version"] for r in live_readers(proj.uri)] == [old]
    done = proj.cli("compact", "spec.yaml", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    assert f"kept version {old}: read by a live reader (DataLoader, " in done.stdout
    assert f"pid {os.getpid()}" in done.stdout, done.stdout
    ids = sorted(i for batch in loader for i in batch["id"].tolist())  # no "Not found" mid-epoch
    assert ids == list(range(40))
    loader.close()
    assert live_readers(proj.uri) == []
    again = proj.cli("compact", "spec.yaml", "--older-than", "0s")
    assert again.returncode == 0 and f"kept version {old}" not in again.stdout, again.stdout
    assert old not in [v["version"] for v in proj.dataset().versions()]


def test_n11_read_holds_its_version_only_while_it_reads(proj, monkeypatch):
    old = _two_versions(proj)
    import featurekit.training.read as reading
    seen, real = [], reading._read

    def watching(*args, **kwargs):
        seen.extend(r["version"] for r in live_readers(proj.uri))
        return real(*args, **kwargs)
    monkeypatch.setattr(reading, "_read", watching)
    result = featurekit.read(proj.spec, ["id"], version=old, format="arrow")
    assert result.version == old and result.data.num_rows == 40
    assert seen == [old] and live_readers(proj.uri) == []


def test_n11_a_dead_readers_lease_does_not_pin(proj, monkeypatch):
    old = _two_versions(proj)
    folder = readers_folder(TableRef(proj.uri))
    folder.mkdir(parents=True, exist_ok=True)
    record = {"version": str(old), "holder": "x", "what": "DataLoader", "host": socket.gethostname()}
    (folder / "dead.json").write_text(json.dumps({**record, "heartbeat": str(time.time()), "pid": "999999"}))
    (folder / "stale.json").write_text(json.dumps({**record, "heartbeat": str(time.time() - 3600), "pid": "1"}))
    assert live_readers(proj.uri) == [] and not list(folder.glob("*.json"))
    pin = pin_version(TableRef(proj.uri), old, "DataLoader")
    monkeypatch.setenv("FEATUREKIT_READER_LEASE_SECONDS", "1")
    time.sleep(1.5)  # the heartbeat thread beats every 20 s by the default lease: this one lapsed
    assert live_readers(proj.uri) == []
    pin.close()


def test_n11_reader_leases_on_an_object_store(s3):
    import uuid

    import lance
    import pyarrow as pa
    ref = TableRef(f"s3://{s3.bucket}/n11-{uuid.uuid4().hex[:8]}/t.lance", tuple(sorted(s3.options.items())))
    lance.write_dataset(pa.table({"id": [1]}), ref.uri, storage_options=s3.options)
    with pin_version(ref, 1, "DataLoader"):
        readers = live_readers(ref)
        assert [(r["version"], r["what"]) for r in readers] == [(1, "DataLoader")]
    assert live_readers(ref) == []
