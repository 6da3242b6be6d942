"""Input keys (the content key of shared values) on the data small fixtures miss: a key must
name every input and every byte of it, and a NULL must never look like an empty value.

The reference is brute force: two rows may share a value exactly when their input values are
equal as Python values (None is not ""). End to end, every row's stored value must equal the
extractor's function of that row's own inputs, computed here in Python.
"""
import itertools
import json

import lance
import pyarrow as pa
from fktest import registry_with

import featurekit
from featurekit.planning.inputkeys import input_hashes

LONG = "x" * 200  # values sharing 200 bytes, differing after: past any short prefix


def combined(question, answer) -> str:
    """What `acme.pair` computes, as plain Python: both inputs, None kept apart from ""."""
    return json.dumps([question, answer])


class Pair(featurekit.Extractor):
    """A two-input extractor: its value depends on both inputs (and on NULL vs "")."""

    name = "acme.pair"
    inputs = {"question": pa.string(), "answer": pa.string()}
    reuse_values = True  # always keyed and shared (a cheap extractor otherwise may not be)
    calls: list = []

    def output_type(self):
        return pa.string()

    def __call__(self, batch):
        pairs = list(zip(batch.column("question").to_pylist(), batch.column("answer").to_pylist()))
        Pair.calls.extend(pairs)
        return pa.array([combined(q, a) for q, a in pairs], pa.string())


# Shared first inputs with different second inputs; NULL beside ""; long shared prefixes.
ROWS = [
    ("what is it?", "stop"), ("what is it?", "exit"), ("what is it?", ""), ("what is it?", None),
    ("", "stop"), (None, "stop"), ("", ""), (None, None), ("", None), (None, ""),
    (LONG + "a", "yes"), (LONG + "b", "yes"), ("q", LONG + "1"), ("q", LONG + "2"),
    (LONG + "a", LONG + "1"), (LONG + "a", LONG + "2"), ("what is it?", "stop"), (LONG + "b", "yes"),
]


def test_keys_are_equal_exactly_when_every_input_value_is_equal():
    batch = pa.table({"question": [q for q, _ in ROWS], "answer": [a for _, a in ROWS]})
    for salt in ("", "fp1"):
        keys = input_hashes(batch, salt).to_pylist()
        for (i, ri), (j, rj) in itertools.combinations(enumerate(ROWS), 2):
            assert (keys[i] == keys[j]) == (ri == rj), (ri, rj)
    assert input_hashes(batch, "fp1").to_pylist() != input_hashes(batch, "fp2").to_pylist()


def test_nulls_empties_and_long_values_of_binary_and_list_inputs_are_told_apart():
    blobs = [None, b"", b"\x00", LONG.encode() + b"a", LONG.encode() + b"b", b"a" * 64 + b"b", b"a" * 64 + b"c"]
    lists = [None, [], [""], [None], ["a"], [LONG + "a"], [LONG + "b"]]
    for values, typ in ((blobs, pa.binary()), (blobs, pa.large_binary()), (lists, pa.list_(pa.string()))):
        keys = input_hashes(pa.table({"v": pa.array(values, typ)})).to_pylist()
        assert len(set(keys)) == len(values), typ


def test_keys_are_blake2b_of_the_documented_message_whichever_path_hashes_them():
    """The stored `_fkin_` keys of earlier applies must keep matching: the key of a row is
    BLAKE2b-128 of salt, NUL, then per input (name order) its JSON name, NUL and its tagged
    value. Built here by hand for text and bytes, and checked on both hashing paths (values
    short enough to assemble column-wise, and values long enough to stream row by row)."""
    import hashlib
    import struct

    def by_hand(salt, question, image):
        m = salt.encode() + b"\x00"
        m += b'"image"\x00' + (b"\x00" if image is None else b"b" + struct.pack("<Q", len(image)) + image)
        m += b'"question"\x00' + (b"\x00" if question is None else
                                   b"s" + struct.pack("<Q", len(question.encode())) + question.encode())
        return hashlib.blake2b(m, digest_size=16).digest()

    rng = __import__("random").Random(3)
    for size in (0, 1, 100, 1023, 1024, 5000):  # across the column-wise limit
        rows = [(rng.choice([None, "", "what is it?", "é" * rng.randint(0, 50)]),
                 rng.choice([None, b"", rng.randbytes(size)])) for _ in range(40)]
        batch = pa.table({"question": pa.array([q for q, _ in rows], pa.string()),
                          "image": pa.array([b for _, b in rows], pa.binary())})
        assert input_hashes(batch, "fp").to_pylist() == [by_hand("fp", q, b) for q, b in rows], size


def write(tmp_path, rows, start=0, file="a.jsonl"):
    (tmp_path / "raw").mkdir(parents=True, exist_ok=True)
    (tmp_path / "raw" / file).write_text("".join(json.dumps({"id": start + i, "question": q, "answer": a}) + "\n"
                                                 for i, (q, a) in enumerate(rows)))
    spec = tmp_path / "spec.yaml"
    spec.write_text("""\
featurekit: 1
name: keys
table: {db: data, name: t, fragment_rows: 5}
source: {format: jsonl, path: raw/*.jsonl, key: id}
features:
  pair:
    extractor: acme.pair
    inputs: {question: question, answer: answer}
""")
    return spec


def stored(tmp_path):
    t = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table(columns=["id", "question", "answer", "pair"])
    return t.sort_by("id").to_pylist()


def test_every_row_holds_the_value_of_its_own_inputs_within_and_across_applies(tmp_path):
    """Rows sharing values share one call; no row ever takes another row's value."""
    reg = registry_with(Pair)
    Pair.calls = []
    result = featurekit.apply(write(tmp_path, ROWS * 4), registry=reg)
    assert result.ok
    rows = stored(tmp_path)
    assert [(r["question"], r["answer"]) for r in rows] == ROWS * 4  # NULL and "" both survive ingest
    assert [r["pair"] for r in rows] == [combined(q, a) for q, a in ROWS * 4]
    assert sorted(Pair.calls, key=repr) == sorted(set(ROWS), key=repr)  # each distinct input pair once
    # new rows whose first input (or long prefix) equals an old row's: computed, never reused
    more = [("what is it?", "open"), (None, "exit"), ("", "exit"), (LONG + "c", "yes"), ("q", LONG + "3"),
            ("what is it?", "exit"), (None, None)]
    Pair.calls = []
    result = featurekit.apply(write(tmp_path, more * 4, start=100, file="b.jsonl"), registry=reg)
    assert result.ok
    rows = stored(tmp_path)
    assert [r["pair"] for r in rows] == [combined(r["question"], r["answer"]) for r in rows]
    assert sorted(Pair.calls, key=repr) == sorted(set(more) - set(ROWS), key=repr)  # the rest read back
