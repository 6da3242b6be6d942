"""Issue 21, N9: one writer lock per table whatever its path is spelled like (symlinked folder,
``file://`` URI, relative or absolute), and no ingest ever duplicates a key, whatever happened
before."""
import os

import lance
import pyarrow as pa
import pytest
import yaml

from featurekit.errors import LockHeld
from featurekit.table.lock import lock_path, table_lock
from featurekit.table.ref import TableRef

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
ROWS = [{"id": i, "question": f"q{i}"} for i in range(30)]


def test_n9_every_spelling_of_a_table_takes_one_lock(proj, tmp_path, monkeypatch):
    real = tmp_path / "data" / "t.lance"
    real.mkdir(parents=True)
    (tmp_path / "alias").mkdir()
    os.symlink("../data/t.lance", tmp_path / "alias" / "t.lance")  # the issue's `db: alias`
    monkeypatch.chdir(tmp_path)
    spellings = [str(real), "data/t.lance", f"file://{real}", str(tmp_path / "alias" / "t.lance"),
                 "alias/t.lance", f"file://{tmp_path}/alias/t.lance", f"{tmp_path}/data/./t.lance"]
    assert {TableRef(s).identity for s in spellings} == {str(real.resolve())}
    assert {lock_path(s) for s in spellings} == {real.resolve().parent / ".t.lance.featurekit-lock"}
    with table_lock(TableRef("alias/t.lance")):
        for other in spellings:
            with pytest.raises(LockHeld, match="is writing"):
                with table_lock(TableRef(other)):
                    pass


def test_n9_object_store_spellings_share_one_identity():
    assert {TableRef(u).identity for u in ["s3://bkt/a/t.lance", "s3://bkt/a//t.lance/", "s3a://bkt/a/./t.lance",
                                           "S3://bkt/a/t.lance"]} == {"s3://bkt/a/t.lance"}
    assert TableRef("s3://bkt/a/t.lance").identity != TableRef("s3://bkt/b/t.lance").identity


def test_n9_a_table_written_via_file_uri_applies_by_its_plain_path(proj):
    proj.write(CHEAP, ROWS[:10])
    spec = proj.spec_data
    spec["table"]["db"] = f"file://{proj.root / 'data'}"
    proj.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    first = proj.cli("apply", "-q", "spec.yaml")
    assert first.returncode == 0, first.stderr
    # an earlier featurekit kept a file:// table's lock as a dataset folder of the lock file's name
    old_lock = proj.root / "data" / ".t.lance.featurekit-lock"
    old_lock.unlink()
    old_lock.mkdir()
    proj.write(CHEAP, ROWS[:20])  # db: data, the plain relative path
    second = proj.cli("apply", "-q", "spec.yaml")
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    assert [r["id"] for r in proj.rows("id")] == list(range(20))


def test_n9_a_table_holding_a_key_twice_is_refused_with_the_keys_and_nothing_is_written(proj):
    proj.write(CHEAP, ROWS)
    assert proj.apply().ok
    race = proj.dataset().to_table(columns=["id", "question", "_fk_source"]).slice(0, 3)  # an earlier race's rows
    lance.write_dataset(race, proj.uri, mode="append")
    before = proj.version()
    proj.write_rows(ROWS + [{"id": 99, "question": "new"}])  # whatever the source says now
    done = proj.cli("apply", "-q", "spec.yaml")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "holds 3 key(s) more than once (0, 1, 2)" in done.stderr
    assert 'delete("id IN (0, 1, 2)")' in done.stderr and "then run apply again" in done.stderr
    assert proj.version() == before
    # the remedy the message gives works: the rows go in once
    lance.dataset(proj.uri).delete("id IN (0, 1, 2)")
    assert proj.cli("apply", "-q", "spec.yaml").returncode == 0
    ids = [r["id"] for r in proj.rows("id")]
    assert ids == sorted(set(ids)) and len(ids) == 31


def test_n9_an_ingest_refuses_keys_another_writer_added_since_it_read_the_table(proj):
    from featurekit.errors import CommitConflict
    from featurekit.ingest.prepare import prepare_ingest
    from featurekit.ingest.write import ingest
    from featurekit.planning.project import project_of
    from featurekit.table.handle import Table

    from .conftest import registry
    proj.write(CHEAP, ROWS[:10])
    assert proj.apply().ok
    proj.write_rows(ROWS[:20])
    project = project_of(proj.spec, registry(), None)
    table = Table.of(project)
    prepared = prepare_ingest(project, table.dataset)
    assert prepared.new_rows.num_rows == 10
    other = proj.dataset().to_table(columns=["id", "question", "_fk_source"]).slice(0, 1)
    lance.write_dataset(pa.table({"id": [15], "question": ["x"], "_fk_source": other["_fk_source"]}), proj.uri,
                        mode="append")  # a writer around the lock
    before = proj.version()
    with pytest.raises(CommitConflict, match=r"holds 1 of the keys this apply would append \(15\)"):
        ingest(table, prepared, fragment_rows=100, commit_rows=100)
    assert proj.version() == before
