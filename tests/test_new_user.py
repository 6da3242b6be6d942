"""What a new user tripped on (issue 20, "Tried as a new user would"): each item's output,
checked as the user reads it. Real Lance tables in tmp_path."""
import json

import pytest
from fktest import BASE_SPEC, registry_with

import featurekit


def edit_and_drop(project) -> None:
    """The source loses its last two rows (keys 38, 39) and key 3's question is edited."""
    path = project.root / "raw" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()][:38]
    rows[3]["question"] = "Which brand is the laptop computer?"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# -- 5: prunes and edits are counted as such in plan, apply and log -------------------------

def test_prune_and_edits_are_counted_as_such_in_plan_apply_and_log(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    edit_and_drop(project)
    code, out, _ = run_cli("plan", "spec.yaml", "--prune")
    assert code == 0
    assert "  ~ question_length (tier 1): 1 edited row(s) to compute again\n" in out
    assert "new row(s) to fill" not in out
    plan = featurekit.plan(project.spec, prune=True)
    assert [(s.new_rows, s.changed_rows, s.rows) for s in plan.features] == [(0, 1, 1)] * 3
    assert [(f.state, f.pending) for f in featurekit.status(project.spec).features] == [("incomplete", 1)] * 3
    code, out, err = run_cli("apply", "spec.yaml", "--prune")
    assert code == 0, err
    assert "  ingested 0 new row(s), updated 1 edited row(s), deleted 2 row(s) gone from the source\n" in out
    assert project.dataset().count_rows() == 38
    code, out, _ = run_cli("log", "spec.yaml")
    assert out.splitlines()[1].startswith("    ingested 0 new, 1 updated, 2 deleted; ocr_token_count 1 computed")
    entry = json.loads(run_cli("log", "spec.yaml", "--json")[1])[0]
    assert entry["ingest_rows"] == {"new": 0, "updated": 1, "deleted": 2}
    # new rows alone read as before
    project.add_rows(2, start=100, file="raw/more.jsonl")
    code, out, _ = run_cli("apply", "spec.yaml")
    assert "  ingested 2 row(s)\n" in out
    assert run_cli("log", "spec.yaml")[1].splitlines()[1].startswith("    ingested 2; ")


# -- 6: check_extractor treats a raising row as the engine does; write(rows=) takes bytes ---

class PickyLength(featurekit.Extractor):
    """Raises on a row it cannot read, as the docs allow (like PIL on a broken image)."""

    name = "t.picky"
    inputs = {"text": "string"}

    def output_type(self):
        import pyarrow as pa
        return pa.int32()

    def __call__(self, batch):
        import pyarrow as pa
        texts = batch.column("text").to_pylist()
        if any(t is not None and t.startswith("broken") for t in texts):
            raise ValueError("cannot identify this input")
        return pa.array([len(t or "") for t in texts], pa.int32())


def test_check_extractor_fails_a_raising_row_as_the_engine_does():
    from featurekit.testing import check_extractor
    out = check_extractor(PickyLength, batch={"text": ["ok", "broken one", "fine"]})
    assert out["value"].to_pylist() == [2, None, 4]
    with pytest.raises(AssertionError, match=r"t.picky: every row of the sample batch failed \(row 0: ValueError: "
                                             r"cannot identify this input\); give a batch with rows it can compute"):
        check_extractor(PickyLength, batch={"text": ["broken", "broken too"]})


class ByteCount(featurekit.Extractor):
    name = "t.bytecount"
    inputs = {"blob": "binary"}

    def output_type(self):
        import pyarrow as pa
        return pa.int64()

    def __call__(self, batch):
        import pyarrow as pa
        return pa.array([len(b) for b in batch.column("blob").to_pylist()], pa.int64())


def test_the_project_fixture_writes_rows_holding_bytes(featurekit_project):
    import types
    mod = types.ModuleType("bytes_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [ByteCount])
    featurekit_project.plugins = [mod]
    featurekit_project.write({"n": {"extractor": "t.bytecount", "inputs": {"blob": "blob"}}},
                             rows=[{"id": 1, "blob": b"\x00\x01\x02"}, {"id": 2, "blob": b"ab"}])
    assert featurekit_project.apply().ok
    assert featurekit_project.table().column("n").to_pylist() == [3, 2]


# -- 9: slice --json types, the gallery's groups, validate's plurals ------------------------

DEDUPE_SPEC = """\
featurekit: 1
name: dedupe
table: {db: data, name: t}
source: {format: jsonl, path: "raw/*.jsonl", key: id}
features:
  qlen:
    extractor: text.length
    inputs: {text: question}
slices:
  kept:
    dedupe: {by: [question], near: {column: h, max_distance: 3}}
"""


def dedupe_project(tmp_path):
    """Rows 0-2: one question, hashes 0, 0 (exact copy of row 0) and 0b101 (2 bits away);
    rows 3-4: another question, far hashes. Expected: one group, keeper 0, removed 1 and 2."""
    rows = [{"id": 0, "question": "what is it?", "h": 0}, {"id": 1, "question": "what is it?", "h": 0},
            {"id": 2, "question": "what is it?", "h": 5}, {"id": 3, "question": "who?", "h": 2 ** 40 - 1},
            {"id": 4, "question": "who?", "h": 7}]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "spec.yaml").write_text(DEDUPE_SPEC)
    return tmp_path


def test_slice_json_keys_have_the_key_columns_type(tmp_path, run_cli):
    root = dedupe_project(tmp_path)
    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[0] == 0
    report = json.loads(run_cli("slice", "spec.yaml", "kept", "--json")[1])
    assert report["groups"] == [{"keeper": 0, "removed": [1, 2], "near": 1, "exact": 1, "size": 3}]


def test_the_gallery_says_exact_or_near_and_how_far(tmp_path, run_cli):
    root = dedupe_project(tmp_path)
    assert run_cli("apply", "-q", "spec.yaml", cwd=root)[0] == 0
    code, _, err = run_cli("slice", "spec.yaml", "kept", "--gallery", "g.html")
    assert code == 0, err
    page = (root / "g.html").read_text()
    assert "<p class=meta>3 rows: the keeper, 1 exact duplicate, 1 near duplicate</p>" in page
    assert "near duplicates</p>" not in page
    assert "<span class=meta>exact duplicate</span>" in page
    assert "<span class=meta>near duplicate, 2 bits from the keeper</span>" in page


def test_validate_counts_in_words_that_agree(tmp_path, run_cli):
    root = dedupe_project(tmp_path)
    code, out, err = run_cli("validate", "spec.yaml", cwd=root)
    assert code == 0, err
    assert "1 slice" in out and "1 slices" not in out and "1 features" not in out


# -- 10: bench: realistic Parquet row groups, a sequential Parquet case, small columns said ---

class Wide(featurekit.Extractor):
    """A 512-float row (2 kB) per question: a column worth timing."""

    name = "t.wide"
    inputs = {"n": "integer"}

    def output_type(self):
        import pyarrow as pa
        return pa.list_(pa.float32(), 512)

    def __call__(self, batch):
        import pyarrow as pa
        return pa.array([[float(n)] * 512 for n in batch.column("n").to_pylist()], pa.list_(pa.float32(), 512))


def test_bench_parquet_has_real_row_groups_and_a_sequential_case(project):
    import lance

    from featurekit.commands.bench import bench, write_parquet
    reg = registry_with(Wide)
    project.add_rows(120, start=40)
    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  wide:\n    extractor: t.wide\n"
                                                "    inputs: {n: question_id}\nslices:\n"))
    assert featurekit.apply(spec, registry=reg).ok
    result = bench(spec, rows=150, registry=reg)
    assert result.columns == {"wide": "wide"} and result.row_bytes == 2048
    parquet = {m.name: m for m in result.measures if m.name.startswith("Parquet")}
    assert list(parquet) == ["Parquet, same shuffled order", "Parquet, sequential"]
    assert all(m.rows == 150 and m.note == "uncompressed, 150 row(s) a row group" for m in parquet.values())
    ds = lance.dataset(project.uri)
    ids = ds.to_table(columns=[], with_row_id=True).column("_rowid").to_numpy()[:150]
    import pyarrow.parquet as pq
    path = str(project.root / "copy.parquet")
    write_parquet(ds, ids, ["wide"], path, 100)  # groups of the size asked, even above 64 rows
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 50]


def test_bench_on_a_spec_without_large_columns_says_so(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    code, out, err = run_cli("bench", "spec.yaml")
    assert code == 2 and out == ""
    assert err.startswith("error: nothing large to measure: spec.yaml's features are scalars and short values "
                          "(ocr_token_count, question_length, question_type); bench measures reading the large")
    code, out, err = run_cli("bench", "spec.yaml", "--columns", "question_length", "--rows", "16", "-q")
    assert code == 0, err
    assert "16 rows x 4 bytes of question_length" in out and "0.00 " not in out and " 0.0 kB" not in out
    assert "note: a row of these columns is 4 bytes: the rates measure per-batch overhead" in out


# -- 11: a model that does not load, a feature dropped from the spec ------------------------

class NoModel(featurekit.Extractor):
    name = "t.nomodel"
    inputs = {"text": "string"}

    def output_type(self):
        import pyarrow as pa
        return pa.int32()

    def setup(self):
        raise OSError("models/nope: no such model folder")

    def __call__(self, batch):
        import pyarrow as pa
        return pa.array([1] * batch.num_rows, pa.int32())


def no_model_project(project, monkeypatch):
    import featurekit.plugins.registry
    reg = registry_with(NoModel)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    project.write_spec(BASE_SPEC.replace("slices:\n", "  nomodel:\n    extractor: t.nomodel\n"
                                         "    inputs: {text: question}\nslices:\n"))


def test_apply_sample_with_a_model_that_does_not_load_is_a_clean_error(project, run_cli, monkeypatch):
    no_model_project(project, monkeypatch)
    assert run_cli("apply", "-q", "spec.yaml", "--select", "question_length", cwd=project.root)[0] == 0
    code, out, err = run_cli("apply", "spec.yaml", "--sample", "4")
    assert code == 1
    assert "Traceback" not in out + err
    assert "  nomodel: failed: t.nomodel setup failed: OSError: models/nope: no such model folder" in out
    assert "  question_type " in out  # the other features are still sampled


def test_a_feature_whose_model_failed_reports_nothing_reused():
    from featurekit.engine import FeatureRun
    from featurekit.progress import work_line
    failed = FeatureRun("vision", computed=0, failed=0, error="setup failed", rows=8, distinct=1, reused=8)
    assert "reused" not in work_line(failed)
    ok = FeatureRun("vision", computed=8, failed=0, rows=8, distinct=1, reused=7)
    assert work_line(ok) == " (8 rows, 1 distinct inputs; 7 reused)"
    # rows that took an equal input's row error count as reused too: the summary says what the log records
    some_failed = FeatureRun("v", computed=175, failed=25, rows=200, distinct=16, reused=184)
    assert work_line(some_failed) == " (200 rows, 16 distinct inputs; 184 reused)"


def test_the_apply_summary_and_its_log_count_the_same_reused_rows(tmp_path, run_cli):
    """A local function raising on some inputs, rows with equal inputs: the summary line and the
    apply log agree on rows, distinct inputs and reused rows."""
    (tmp_path / "features.py").write_text(
        "import pyarrow as pa\nimport featurekit\n\n\n"
        "@featurekit.extractor(inputs={'text': 'string'}, output=pa.int32(), reuse_values=True)\n"
        "def flaky(text):\n"
        "    return featurekit.RowErrors.map(lambda t: len(t) if 'dog' not in t else 1 / 0, text.to_pylist(), pa.int32())\n")
    texts = ["a dog", "a cat", "a cow", "a hen"]
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"id": {i}, "q": "{texts[i % 4]}"}}\n' for i in range(40)))
    (tmp_path / "spec.yaml").write_text("featurekit: 1\nname: r\nplugins: [features.py]\ntable: {db: data, name: t}\n"
                                        "source: {format: jsonl, path: rows.jsonl, key: id}\n"
                                        "features:\n  f: {extractor: features.flaky, inputs: {text: q}}\n")
    code, out, _ = run_cli("apply", "spec.yaml", cwd=tmp_path)
    assert code == 1  # a quarter of the rows failed: over the default max_failure_rate
    entry = featurekit.log(tmp_path / "spec.yaml").entries[-1]["features"]["f"]
    assert (entry["rows"], entry["distinct"], entry["reused"], entry["failed"]) == (40, 4, 36, 10), entry
    assert "  f: 30 computed, 10 failed" in out and "(40 rows, 4 distinct inputs; 36 reused" in out, out


def test_a_feature_dropped_from_the_spec_shows_the_values_it_still_holds(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    project.write_spec(BASE_SPEC.replace("  question_type:\n    extractor: text.question_type\n"
                                         "    inputs: {text: question}\n", ""))
    code, out, _ = run_cli("status", "spec.yaml")
    assert "  question_type    orphaned    computed 40, failed 0, pending 0\n" \
           "      not in the spec: its columns and values stay until 'featurekit apply --prune' drops them\n" in out


def test_apply_with_a_model_that_does_not_load_reuses_nothing(project, run_cli, monkeypatch):
    no_model_project(project, monkeypatch)
    code, out, err = run_cli("apply", "spec.yaml", cwd=project.root)
    assert code == 1 and "Traceback" not in out + err
    assert "error: feature 'nomodel': t.nomodel setup failed: OSError: models/nope: no such model folder" in err
    line = next(line for line in out.splitlines() if line.startswith("  nomodel: "))
    assert line.startswith("  nomodel: 0 computed") and "reused" not in line
    assert line.endswith("; the feature failed (error below)")
