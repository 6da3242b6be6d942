"""Same-length edits of a source row are seen on re-apply: the source-row hash covers the
content of strings, bytes and list items, not only their lengths.

Every drift test elsewhere changes a value's length; here every edit keeps it. The reference
is brute force: distinct values must get distinct row hashes, and after an edit exactly the
edited keys are planned as changed, re-ingested and recomputed.
"""
import itertools

import lance
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fktest import registry_with

import featurekit
from featurekit.ingest.rowhash import row_hashes

BASE = "what is written on the sign?" + "." * 100  # past 64 bytes


def same_length_edits(text: str) -> list[str]:
    """`text` with one byte replaced at each position, and with two neighbours swapped."""
    out = [text[:i] + ("#" if text[i] != "#" else "$") + text[i + 1:] for i in range(len(text))]
    out += [text[:i] + text[i + 1] + text[i] + text[i + 2:] for i in range(len(text) - 1) if text[i] != text[i + 1]]
    return out


def test_every_same_length_edit_of_a_string_bytes_or_list_changes_the_row_hash():
    texts = [BASE] + same_length_edits(BASE)
    cases = {
        "string": pa.array(texts, pa.string()),
        "large_string": pa.array(texts, pa.large_string()),
        "binary": pa.array([t.encode() for t in texts], pa.binary()),
        "list": pa.array([["stop", t] for t in texts], pa.list_(pa.string())),
        "items_swapped": pa.array([["a" * 70, "b" * 70], ["b" * 70, "a" * 70]], pa.list_(pa.string())),
    }
    for name, values in cases.items():
        hashes = row_hashes(pa.table({"v": values}))
        assert len(set(hashes)) == len(values), name


def test_a_long_value_edited_beyond_the_position_table_changes_the_hash():
    long = "a" * 70_000
    # 65,600 is 64 past the 65,536 positions of the weight table: it must not weigh like position 64
    texts = [long, long[:65_600] + "b" + long[65_601:], long[:64] + "b" + long[65:], "b" + long[1:], long[:-1] + "b"]
    assert len(set(row_hashes(pa.table({"v": texts})))) == 5


def test_values_moved_to_another_column_change_the_hash_and_a_new_null_column_does_not():
    t = pa.table({"question": ["what is it?", "stop"], "answer": ["stop", "what is it?"]})
    swapped = pa.table({"question": ["stop", "what is it?"], "answer": ["what is it?", "stop"]})
    assert row_hashes(t)[0] != row_hashes(swapped)[0] and row_hashes(t)[0] != row_hashes(t)[1]
    with_null = t.append_column("extra", pa.array([None, None], pa.string()))
    assert row_hashes(with_null) == row_hashes(t)  # a column added later, NULL for old rows: they are unchanged
    assert row_hashes(t.append_column("extra", pa.array(["", ""])))[0] != row_hashes(t)[0]  # "" is a value


def test_equal_values_hash_equal_whatever_their_layout():
    a = pa.table({"v": pa.array(["abc", "", None, "x" * 100], pa.string()), "n": [1, 2, 3, 4]})
    b = pa.table({"n": pa.array([1, 2, 3, 4], pa.int32()), "v": pa.array(["abc", "", None, "x" * 100], pa.large_string())})
    chunked = pa.concat_tables([a.slice(0, 1), a.slice(1)])
    assert row_hashes(a) == row_hashes(b) == row_hashes(chunked)


class Checksum(featurekit.Extractor):
    """A value that changes with any byte of the text (its length would not)."""

    name = "acme.checksum"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        return pa.array([None if t is None else sum((i + 1) * b for i, b in enumerate(t.encode()))
                         for t in batch.column("text").to_pylist()], pa.int64())


def checksum(text):
    return sum((i + 1) * b for i, b in enumerate(text.encode()))


SPEC = """\
featurekit: 1
name: edits
table: {db: data, name: t, fragment_rows: 4}
source: {format: parquet, path: rows.parquet, key: id}
features:
  qtype: {extractor: text.question_type, inputs: {text: question}}
  sum: {extractor: acme.checksum, inputs: {text: question}}
"""


def rows(n=10):
    return {"id": list(range(n)),
            "question": [f"what is on sign {i}?" + "." * 80 for i in range(n)],
            "blob": [bytes([i]) * 90 for i in range(n)],
            "tags": [["red", "sign", f"{i}" * 70] for i in range(n)]}


def write(tmp_path, data):
    pq.write_table(pa.table({"id": pa.array(data["id"], pa.int64()), "question": data["question"],
                             "blob": pa.array(data["blob"], pa.binary()), "tags": data["tags"]}),
                   tmp_path / "rows.parquet")
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path / "spec.yaml"


@pytest.fixture
def registry():
    return registry_with(Checksum)


def test_same_length_edits_of_strings_bytes_and_lists_are_reingested_and_recomputed(tmp_path, registry):
    data = rows()
    spec = write(tmp_path, data)
    assert featurekit.apply(spec, registry=registry).ok
    data["question"][1] = data["question"][1].replace("what", "when")      # same length: another question type
    data["question"][6] = data["question"][6][:-1] + "!"                   # the last byte, past 64
    data["blob"][3] = data["blob"][3][:80] + b"\xff" + data["blob"][3][81:]  # one byte of a binary
    data["tags"][8] = ["sign", "red", data["tags"][8][2]]                 # list items swapped
    data["tags"][9] = ["red", "sign", data["tags"][9][2][:-1] + "x"]       # a list item's last byte
    write(tmp_path, data)
    plan = featurekit.plan(spec, registry=registry)
    assert plan.ingest.changed_keys == (1, 3, 6, 8, 9) and plan.ingest.new_rows == 0
    result = featurekit.apply(spec, registry=registry)
    assert result.ok and result.run.ingested == 5
    t = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id").to_pylist()
    assert [r["question"] for r in t] == data["question"]
    assert [r["blob"] for r in t] == data["blob"] and [r["tags"] for r in t] == data["tags"]
    assert [r["qtype"] for r in t] == ["what"] + ["when"] + ["what"] * 8
    assert [r["sum"] for r in t] == [checksum(q) for q in data["question"]]
    assert featurekit.plan(spec, registry=registry).is_noop


@pytest.mark.parametrize("a, b", list(itertools.combinations(["ab", "ba", "aa", "bb"], 2)))
def test_two_letter_values_differ(a, b):
    assert row_hashes(pa.table({"v": [a]})) != row_hashes(pa.table({"v": [b]}))
