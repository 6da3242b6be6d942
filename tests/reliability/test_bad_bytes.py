"""Issue 12, item 1: bytes that are not UTF-8 never reach the table; the row is skipped and
reported (file, line, column), the other rows go in, and every column stays readable."""
import lance
import pyarrow as pa
import pyarrow.parquet as pq

from .conftest import TALLY

QLEN = {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}}}


def test_a_non_utf8_byte_in_jsonl_skips_that_row_only_and_a_fixed_source_goes_in(proj):
    (proj.root / "rows.jsonl").write_bytes(b'{"id": 1, "question": "ok?"}\n'
                                           b'{"id": 2, "question": "caf\xe9?"}\n'
                                           b'{"id": 3, "question": "why?"}\n')
    proj.write(QLEN)
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert result.ok and result.run.ingested == 2
    assert result.run.skipped_rows == {"not UTF-8 text": 1}
    assert [r["id"] for r in proj.rows()] == [1, 3]  # readable, validated in full
    out = proj.cli("plan", "spec.yaml").stdout
    assert "skip 1 row(s): not UTF-8 text" in out
    code = proj.cli("apply", "spec.yaml")
    assert code.returncode == 0 and "Traceback" not in code.stderr
    (proj.root / "rows.jsonl").write_bytes(b'{"id": 1, "question": "ok?"}\n{"id": 2, "question": "caf\xc3\xa9?"}\n'
                                           b'{"id": 3, "question": "why?"}\n')
    result = proj.apply()
    assert result.run.ingested == 1
    assert proj.rows("id", "question", "qlen")[1] == {"id": 2, "question": "café?", "qlen": 5}


def test_the_issue_names_file_line_and_column(proj):
    from featurekit.ingest.prepare import prepare_ingest
    (proj.root / "rows.jsonl").write_bytes(b'{"id": 1, "question": "ok?"}\n\n'
                                           b'{"id": 2, "question": "caf\xe9?"}\n'
                                           b'{"id": 3, "question": "bad \\ud800 escape"}\n')
    proj.write(QLEN)
    TALLY["bad_inputs"] += 2
    from featurekit.api import load_spec

    from .conftest import registry
    issues = prepare_ingest(load_spec(proj.spec, registry=registry()), None).issues
    assert [(i.where.rsplit("/", 1)[-1], i.message) for i in issues] == [
        ("rows.jsonl:3", "not UTF-8 text: column 'question': byte 0xe9 at position 27; fix the file's encoding"),
        ("rows.jsonl:4", "not UTF-8 text: column 'question' holds an unpaired surrogate escape (like \\ud800)")]


def test_a_csv_with_a_bad_byte_keeps_its_column_text(proj):
    (proj.root / "rows.csv").write_bytes(b"id,question\n1,ok?\n2,caf\xe9?\n3,\"two\nlines\"\n")
    proj.write(QLEN, source={"format": "csv", "path": "rows.csv"})
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert result.ok and result.run.skipped_rows == {"not UTF-8 text": 1}
    assert proj.dataset().schema.field("question").type == pa.string()
    assert proj.rows("id", "question", "qlen") == [{"id": 1, "question": "ok?", "qlen": 3},
                                                   {"id": 3, "question": "two\nlines", "qlen": 9}]
    out = proj.cli("plan", "spec.yaml").stdout
    assert "skip 1 row(s): not UTF-8 text" in out


def test_invalid_utf8_in_parquet_is_caught_before_writing(proj):
    offsets = pa.array([0, 3, 5, 8], pa.int32()).buffers()[1]
    question = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"ok?\xe9\xe9why")])
    pq.write_table(pa.table({"id": [1, 2, 3], "question": question}), proj.root / "rows.parquet")
    proj.write(QLEN, source={"format": "parquet", "path": "rows.parquet"})
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert result.ok and result.run.skipped_rows == {"not UTF-8 text": 1}
    assert [r["question"] for r in proj.rows()] == ["ok?", "why"]


def test_an_extractor_returning_bad_text_fails_its_feature_and_writes_nothing_unreadable(proj):
    proj.write({"bad": {"extractor": "faults.bad_text", "inputs": {"text": "question"}}},
               [{"id": i, "question": f"q{i}?"} for i in range(4)])
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert not result.ok and "malformed string values" in result.run.features["bad"].error
    table = lance.dataset(proj.uri).to_table()
    table.validate(full=True)
    assert table.column("bad").null_count == 4
