"""Issue 21, N22: a UTF-8 byte order mark at the start of a source file is not part of the
first row (it used to cost that row as "not valid JSON") nor of the first column's name."""
import pytest

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("fmt, body", [
    ("jsonl", b'{"id": 1, "question": "a"}\n{"id": 2, "question": "bb"}\n{"id": 3, "question": "ccc"}\n'),
    # a byte that is not UTF-8 sends the file down the line-by-line path, where the BOM was lost
    ("jsonl", b'{"id": 1, "question": "a"}\n{"id": 2, "question": "b\xff"}\n{"id": 3, "question": "ccc"}\n'),
    ("csv", b"id,question\n1,a\n2,bb\n3,ccc\n"),
    ("csv", b"id,question\n1,a\n2,b\xff\n3,ccc\n"),
])
def test_n22_a_bom_keeps_the_first_row_and_the_first_column_name(proj, fmt, body):
    proj.write(CHEAP, source={"format": fmt, "path": f"rows.{fmt}"})
    (proj.root / f"rows.{fmt}").write_bytes(BOM + body)
    done = proj.cli("apply", "spec.yaml")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = proj.rows("id", "question", "n")
    assert [r["id"] for r in rows][0] == 1 and rows[0]["question"] == "a" and rows[0]["n"] == 1
    assert [r["id"] for r in rows] == ([1, 3] if b"\xff" in body else [1, 2, 3])
    assert "\ufeff" not in "".join(proj.dataset().schema.names)
