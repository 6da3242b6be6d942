import csv
import json

import lance
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fktest import registry_with

import featurekit

SPEC = """\
featurekit: 1
name: sources
table: {{db: data, name: t}}
source: {{format: {fmt}, path: "{path}", key: id}}
features:
  qlen: {{extractor: text.length, inputs: {{text: question}}}}
"""
ROWS = [{"id": i, "question": q} for i, q in enumerate(["what is this?", "how many?", "is it red?"])]


def write(fmt, root):
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), root / "rows.parquet")
        return "rows.parquet"
    if fmt == "csv":
        with open(root / "rows.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["id", "question"])
            w.writeheader()
            w.writerows(ROWS)
            fh.write("99,too,many,fields\n")
        return "rows.csv"
    lance.write_dataset(pa.Table.from_pylist(ROWS), str(root / "rows.lance"))
    return "rows.lance"


@pytest.mark.parametrize("fmt", ["parquet", "csv", "lance"])
def test_builtin_sources_ingest_and_compute(tmp_path, fmt):
    path = write(fmt, tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC.format(fmt=fmt, path=path))
    result = featurekit.apply(tmp_path / "spec.yaml")
    assert result.run.ingested == 3
    expected_skips = {"expected 2 fields, got 4": 1} if fmt == "csv" else {}
    assert result.run.skipped_rows == expected_skips
    t = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table().sort_by("id")
    assert t.column("qlen").to_pylist() == [len(r["question"]) for r in ROWS]
    assert featurekit.apply(tmp_path / "spec.yaml").plan.is_noop


def test_cheap_tiers_run_first(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "rows.parquet")
    (tmp_path / "spec.yaml").write_text(SPEC.format(fmt="parquet", path="rows.parquet").replace(
        "  qlen:", "  a_type: {tier: 3, extractor: text.question_type, inputs: {text: question}}\n  qlen:"))
    plan = featurekit.plan(tmp_path / "spec.yaml")
    assert [s.name for s in plan.features] == ["qlen", "a_type"]


def test_hugging_face_image_columns_feed_image_extractors(tmp_path):
    """`datasets` writes images to Parquet as struct<bytes: binary, path: string>: accepted
    wherever an image is, the bytes handed to the extractor."""
    import lance
    import pyarrow as pa
    import pyarrow.parquet as pq

    import featurekit

    class ByteLen(featurekit.Extractor):
        name = "acme.bytelen"
        inputs = {"image": "binary"}

        def output_type(self):
            return pa.int64()

        def __call__(self, batch):
            return pa.array([None if b is None else len(b) for b in batch.column("image").to_pylist()], pa.int64())

    images = pa.array([{"bytes": b"\x89PNG" + b"x" * i, "path": f"{i}.png"} for i in range(5)] + [None],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"id": list(range(6)), "image": images}), tmp_path / "raw" / "hf.parquet")
    (tmp_path / "spec.yaml").write_text(
        "featurekit: 1\nname: hf\ntable: {db: data, name: t}\n"
        "source: {format: parquet, path: raw/hf.parquet, key: id}\n"
        "features:\n  n:\n    extractor: acme.bytelen\n    inputs: {image: image}\n")
    assert featurekit.apply(tmp_path / "spec.yaml", registry=registry_with(ByteLen)).ok
    t = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table(columns=["id", "n"]).sort_by("id")
    assert t.column("n").to_pylist() == [4, 5, 6, 7, 8, None]


def test_csv_and_tsv_options_are_read_and_validated(tmp_path, run_cli):
    import lance

    import featurekit
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.tsv").write_text("1\twhat is it?\tNA\n2\twho, then?\tx\n")
    (tmp_path / "raw" / "b.csv").write_text("id;q\n3;'semi;colon'\n")
    spec = ("featurekit: 1\nname: t\ntable: {{db: data, name: {name}}}\n"
            "source: {{format: {fmt}, path: raw/{file}, key: id, options: {options}}}\n"
            "features:\n  n:\n    extractor: text.length\n    inputs: {{text: q}}\n")
    (tmp_path / "tsv.yaml").write_text(spec.format(name="t1", fmt="tsv", file="a.tsv", options=
                                                   "{header: false, column_names: [id, q, other], null_values: [NA]}"))
    assert featurekit.apply(tmp_path / "tsv.yaml").ok
    t = lance.dataset(str(tmp_path / "data" / "t1.lance")).to_table().sort_by("id")
    assert t.column("q").to_pylist() == ["what is it?", "who, then?"] and t.column("other").to_pylist() == [None, "x"]
    (tmp_path / "csv.yaml").write_text(spec.format(name="t2", fmt="csv", file="b.csv",
                                                   options="{delimiter: ';', quote_char: \"'\"}"))
    assert featurekit.apply(tmp_path / "csv.yaml").ok
    assert lance.dataset(str(tmp_path / "data" / "t2.lance")).to_table().column("n").to_pylist() == [10]
    (tmp_path / "bad.yaml").write_text(spec.format(name="t3", fmt="csv", file="b.csv",
                                                   options="{delimiter: ';;', sep: x, header: false}"))
    code, out, err = run_cli("validate", "bad.yaml", cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [
        "bad.yaml:4:70: source.options.delimiter: string should have at most 1 character (got ';;')",
        "bad.yaml:4:76: source.options.sep: unknown key 'sep'; valid keys: delimiter, quote_char, header, "
        "column_names, null_values",
        "2 problems found; nothing was written"]


def test_a_featurekit_table_as_a_lance_source_brings_its_data_not_its_features(project, tmp_path):
    import featurekit
    assert featurekit.apply(project.spec).ok
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.yaml").write_text(
        f"featurekit: 1\nname: copy\ntable: {{db: data, name: c}}\n"
        f"source: {{format: lance, path: {project.uri}, key: question_id}}\n"
        "features:\n  qwords:\n    extractor: text.word_count\n    inputs: {text: question}\n")
    result = featurekit.apply(other / "spec.yaml")
    assert result.ok and result.plan.orphans == ()
    import lance
    names = lance.dataset(str(other / "data" / "c.lance")).schema.names
    assert "question_length" not in names and "_fk_question_length" not in names and "text_dense" not in names
    assert {"question", "answer", "qwords"} <= set(names)


SKIP_SPEC = """\
featurekit: 1
name: skipt
table: {db: data, name: t}
source: {format: jsonl, path: "raw/*.jsonl", key: id}
features:
  qlen: {extractor: text.length, inputs: {text: q}}
"""


def test_skipped_source_rows_are_named_with_file_and_line(tmp_path, run_cli):
    (tmp_path / "raw").mkdir()
    (tmp_path / "spec.yaml").write_text(SKIP_SPEC)
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "q": "hello", "tokens": ["a"]}\n')
    assert run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)[0] == 0
    (tmp_path / "raw" / "b.jsonl").write_text('{"id": 3, "q": "x", "tokens": "a b c"}\n{"id": 5, "q": "ok"\n[1, 2]\n')
    code, out, err = run_cli("plan", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    assert "raw/b.jsonl:2: not valid JSON" in out and "raw/b.jsonl:3: not valid JSON: a line must hold a JSON object" in out
    assert "raw/b.jsonl: type conflict: column 'tokens' is string" in out
    code, out, err = run_cli("apply", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    assert "raw/b.jsonl:2: not valid JSON" in out or "raw/b.jsonl:2: not valid JSON" in err


def test_a_source_path_matching_nothing_on_an_existing_table_is_said(tmp_path, run_cli):
    (tmp_path / "raw").mkdir()
    (tmp_path / "spec.yaml").write_text(SKIP_SPEC)
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "q": "hello"}\n')
    assert run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)[0] == 0
    (tmp_path / "moved.yaml").write_text(SKIP_SPEC.replace("raw/*.jsonl", "raw/missing.jsonl"))
    code, out, _ = run_cli("validate", "moved.yaml", cwd=tmp_path)
    assert code == 0 and "no file matches 'raw/missing.jsonl'" in out and "cannot tell which rows left" in out
    code, _, err = run_cli("validate", "--strict", "moved.yaml", cwd=tmp_path)
    assert code == 2 and "moved.yaml:4:" in err
    code, out, _ = run_cli("plan", "moved.yaml", cwd=tmp_path)
    assert code == 0 and "source: no file matches the source path: nothing to ingest" in out
    version = lance.dataset(str(tmp_path / "data" / "t.lance")).version
    code, out, _ = run_cli("apply", "--prune", "moved.yaml", cwd=tmp_path)
    assert code == 0 and lance.dataset(str(tmp_path / "data" / "t.lance")).version == version  # nothing deleted


def test_an_unknown_engine_is_an_error_even_when_there_is_nothing_to_do(tmp_path, run_cli):
    (tmp_path / "raw").mkdir()
    (tmp_path / "spec.yaml").write_text(SKIP_SPEC)
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "q": "hello"}\n')
    assert run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)[0] == 0
    code, _, err = run_cli("apply", "spec.yaml", "--engine", "nope", cwd=tmp_path)
    assert code == 2 and "unknown engine 'nope'" in err


def test_dropping_files_from_the_source_changes_no_row(tmp_path):
    """The stored source hash holds the files' part too; without files: only values compare."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.bin").write_bytes(bytes([i]) * 10)
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps({"id": i, "q": f"q{i}", "image_path": f"imgs/{i}.bin"})
                                                      + "\n" for i in range(3)))
    with_files = SKIP_SPEC.replace("key: id}", "key: id, files: {image: image_path}}")
    (tmp_path / "spec.yaml").write_text(with_files)
    assert featurekit.apply(tmp_path / "spec.yaml").ok
    (tmp_path / "spec.yaml").write_text(SKIP_SPEC)
    plan = featurekit.plan(tmp_path / "spec.yaml")
    assert plan.ingest.changed_keys == () and plan.is_noop


def test_on_skip_error_fails_the_apply_and_writes_nothing(tmp_path, run_cli):
    (tmp_path / "raw").mkdir()
    (tmp_path / "spec.yaml").write_text(SKIP_SPEC.replace("key: id}", "key: id, on_skip: error}"))
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "q": "hello"}\n{"id": 2, "q": "ok"\n')
    code, _, err = run_cli("apply", "spec.yaml", cwd=tmp_path)
    assert code == 1 and "1 source row(s) cannot be ingested and source.on_skip is 'error'" in err
    assert "raw/a.jsonl:2: not valid JSON" in err
    assert not (tmp_path / "data" / "t.lance").exists()
    (tmp_path / "raw" / "a.jsonl").write_text('{"id": 1, "q": "hello"}\n{"id": 2, "q": "ok"}\n')
    assert run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)[0] == 0
