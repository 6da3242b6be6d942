"""Issue 12, item 3 (and 7): keyed ingest notices source rows that changed, files replaced
at the same path, files that appear after being missing and rows gone from the source;
exactly the rows concerned are rewritten and recomputed, and a `touch` changes nothing."""
import os

import pytest

from featurekit.errors import RunError

from .conftest import TALLY

FEATURES = {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}},
            "bsum": {"extractor": "faults.byte_sum", "inputs": {"data": "image"}}}


def _rows(n=12):
    return [{"id": i, "question": "q" * (i + 1) + "?", "image_path": f"img/{i}.bin"} for i in range(n)]


@pytest.fixture
def drift(proj):
    (proj.root / "img").mkdir()
    for i in range(12):
        (proj.root / "img" / f"{i}.bin").write_bytes(bytes([i, 1, 2]))
    proj.write(FEATURES, _rows(), source={"files": {"image": "image_path"}}, table={"fragment_rows": 4})
    assert proj.apply().ok
    return proj


def _only_new_fragments_and_deletions(before: dict, after: dict) -> list[int]:
    """Every fragment that existed keeps its data files; returns the new fragments."""
    for frag_id, files in before.items():
        assert after.get(frag_id, files) == files, f"fragment {frag_id} had data files rewritten"
    return sorted(set(after) - set(before))


def test_a_changed_row_is_rewritten_alone_and_only_its_features_recomputed(drift):
    before, version = drift.data_files(), drift.version()
    rows = _rows()
    rows[5]["question"] = "what changed here?"
    drift.write_rows(rows)
    plan = drift.plan()
    assert plan.ingest.changed_keys == (5,) and plan.ingest.new_rows == 0
    assert "    1 changed row(s) to update (their features are recomputed): keys 5" in plan.render()
    result = drift.apply()
    assert result.ok and result.run.ingested == 1
    assert {n: (f.computed, f.failed) for n, f in result.run.features.items()} == {"qlen": (1, 0), "bsum": (1, 0)}
    assert len(_only_new_fragments_and_deletions(before, drift.data_files())) == 1
    table = drift.rows("id", "question", "qlen", "bsum")
    assert [r["id"] for r in table] == list(range(12))
    assert table[5] == {"id": 5, "question": "what changed here?", "qlen": 18, "bsum": 8}
    assert all(r["qlen"] == len(r["question"]) for r in table)
    assert drift.apply().run is None and drift.version() > version


def test_an_image_replaced_at_the_same_path_updates_that_row(drift):
    before = drift.data_files()
    (drift.root / "img" / "3.bin").write_bytes(bytes([200, 1]))
    plan = drift.plan()
    assert plan.ingest.changed_keys == (3,)
    result = drift.apply()
    assert {n: f.computed for n, f in result.run.features.items()} == {"qlen": 1, "bsum": 1}
    assert len(_only_new_fragments_and_deletions(before, drift.data_files())) == 1
    assert [r["bsum"] for r in drift.rows("id", "bsum")] == [i + 3 for i in range(12) if i != 3][:3] + [201] + \
        [i + 3 for i in range(4, 12)]


def test_touching_every_source_file_writes_no_version_and_reads_nothing_next_time(drift):
    version = drift.version()
    for path in [drift.root / "rows.jsonl", *(drift.root / "img").iterdir()]:
        os.utime(path)
    result = drift.apply()
    assert result.run is None and drift.version() == version
    assert drift.plan().ingest.changed is False  # remembered beside the table, no version for it
    assert drift.apply().run is None and drift.version() == version


def test_a_missing_file_is_named_retried_and_ingested_once_it_appears(proj):
    (proj.root / "img").mkdir()
    for i in (0, 1, 3):
        (proj.root / "img" / f"{i}.bin").write_bytes(bytes([i]))
    proj.write(FEATURES, _rows(4), source={"files": {"image": "image_path"}})
    first = proj.apply()
    assert first.run.ingested == 3 and first.run.skipped_rows == {"unreadable file": 1}
    version = proj.version()
    assert "skip 1 row(s): unreadable file (keys 2)" in proj.plan().render()
    assert proj.apply().run is None and proj.version() == version  # retried, still missing: no version
    (proj.root / "img" / "2.bin").write_bytes(bytes([2, 2]))
    result = proj.apply()  # the source itself was not touched
    assert result.run.ingested == 1 and result.run.features["bsum"].computed == 1
    assert [r["bsum"] for r in proj.rows("id", "bsum")] == [0, 1, 4, 3]
    assert proj.apply().run is None


def test_rows_gone_from_the_source_are_reported_and_deleted_only_with_prune(drift):
    drift.write_rows([r for r in _rows() if r["id"] not in (2, 7)])
    plan = drift.plan()
    assert plan.ingest.gone_keys == (2, 7)
    assert "2 row(s) no longer in the source, kept (apply --prune deletes them): keys 2, 7" in plan.render()
    assert drift.apply().run is None and drift.dataset().count_rows() == 12
    assert "to delete (--prune)" in drift.plan(prune=True).render()
    result = drift.apply(prune=True)
    assert result.ok and [r["id"] for r in drift.rows("id")] == [0, 1, 3, 4, 5, 6, 8, 9, 10, 11]
    assert drift.apply(prune=True).run is None


def test_on_change_ignore_keeps_the_table_and_error_refuses(drift):
    version = drift.version()
    rows = _rows()
    rows[1]["question"] = "edited?"
    drift.write_rows(rows)
    drift.write(FEATURES, source={"files": {"image": "image_path"}, "on_change": "ignore"},
                table={"fragment_rows": 4})
    assert "1 changed row(s) ignored (source.on_change: ignore): keys 1" in drift.plan().render()
    assert drift.apply().run is None and drift.version() == version
    drift.write(FEATURES, source={"files": {"image": "image_path"}, "on_change": "error"},
                table={"fragment_rows": 4})
    with pytest.raises(RunError, match=r"1 source row\(s\) changed since they were ingested \(keys 1\) and "
                                       r"source.on_change is 'error'"):
        drift.apply()
    assert drift.version() == version
    TALLY["bad_inputs"] += 1
