"""Issue 12, item 6: reserved names, type conflicts, the failure rate over the feature's
rows, workers capped at the machine, and metadata that tells the truth mid-recompute."""
import json

import pyarrow as pa
import pytest

import featurekit
from featurekit.api import load_spec
from featurekit.engine.local import LocalEngine
from featurekit.errors import SpecError

from .conftest import TALLY, registry

QLEN = {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}}}


def test_a_source_column_with_the_reserved_prefix_is_refused_and_nothing_written(proj):
    proj.write(QLEN, [{"id": 1, "question": "q?", "_fk_qlen": "computed"}])
    TALLY["bad_inputs"] += 1
    with pytest.raises(SpecError, match=r"column '_fk_qlen' starts with '_fk_', which featurekit reserves"):
        proj.apply()
    result = proj.cli("apply", "spec.yaml")
    assert result.returncode == 2 and "nothing was written" in result.stderr
    assert proj.version() is None


@pytest.mark.parametrize("source", [{"key": "_fk_id"}, {"files": {"_fk_blob": "path"}}])
def test_reserved_names_in_the_source_spec_are_spec_errors(proj, source):
    proj.write(QLEN, [{"id": 1, "question": "q?"}], source=source)
    with pytest.raises(SpecError, match="which featurekit reserves"):
        load_spec(proj.spec, registry=registry())


def test_a_feature_cannot_take_the_name_of_the_source_hash_column(proj):
    proj.write({"source": QLEN["qlen"]}, [{"id": 1, "question": "q?"}])
    with pytest.raises(SpecError, match="featurekit keeps each row's source hash in _fk_source"):
        load_spec(proj.spec, registry=registry())


def test_a_key_that_is_int_in_one_file_and_string_in_another_skips_those_rows_with_a_clear_message(proj):
    proj.write_rows([{"id": 1, "question": "a?"}, {"id": 2, "question": "b?"}], "a.jsonl")
    proj.write_rows([{"id": "x", "question": "c?"}, {"id": "y", "question": "d?"}], "b.jsonl")
    proj.write(QLEN, source={"path": "*.jsonl"})
    TALLY["bad_inputs"] += 1
    from featurekit.ingest.prepare import prepare_ingest
    [issue] = prepare_ingest(load_spec(proj.spec, registry=registry()), None).issues
    assert issue.message == (f"type conflict: column 'id' is string in {proj.root / 'b.jsonl'} but int64 in "
                             f"{proj.root / 'a.jsonl'}; 2 row(s) skipped ('x', 'y')")
    result = proj.apply()
    assert result.ok and result.run.ingested == 2 and result.run.skipped_rows == {"type conflict": 2}
    assert "skip 2 row(s): type conflict" in proj.plan().render()


def test_a_type_conflict_with_the_table_across_applies_skips_rows_not_the_apply(proj):
    proj.write(QLEN, [{"id": 1, "question": "a?", "score": 3}])
    assert proj.apply().ok
    proj.write_rows([{"id": 1, "question": "a?", "score": 3}, {"id": 2, "question": "b?", "score": "high"},
                     {"id": 3, "question": "c?", "score": 4.0}, {"id": 4, "question": "d?", "score": 4.5}])
    TALLY["bad_inputs"] += 2
    result = proj.apply()
    assert result.ok and result.run.ingested == 1 and result.run.skipped_rows == {"type conflict": 2}
    assert proj.rows("id", "score") == [{"id": 1, "score": 3}, {"id": 3, "score": 4}]


def test_rows_whose_values_change_type_within_a_file_are_skipped(proj):
    (proj.root / "rows.jsonl").write_text('{"id": 1, "question": "a?"}\n{"id": 2, "question": ["not", "text"]}\n'
                                          '{"id": 3, "question": "c?"}\n{"id": 99999999999999999999999, '
                                          '"question": "d?"}\n')
    proj.write(QLEN)
    TALLY["bad_inputs"] += 2
    result = proj.apply()
    assert result.ok and result.run.skipped_rows == {"type conflict": 2}
    assert [r["id"] for r in proj.rows("id")] == [1, 3]


def test_the_failure_rate_counts_the_features_rows_so_a_retry_does_not_fail_the_apply(proj):
    rows = [{"id": i, "question": "BOOM" if i == 7 else f"q{i}?"} for i in range(40)]
    proj.write({"r": {"extractor": "faults.raises", "inputs": {"text": "question"},
                      "on_error": {"max_failure_rate": 0.05}}}, rows)
    first = proj.apply()
    assert first.ok and first.run.features["r"].failed == 1
    version = proj.version()
    second = proj.apply()  # retries the failed row, which fails again: 1 of 40, not 1 of 1
    assert second.ok and second.run.features["r"].failed == 1 and second.run.features["r"].error is None
    assert proj.version() == version  # and nothing changed, so no version (item 7)
    proj.write({"r": {"extractor": "faults.raises", "inputs": {"text": "question"},
                      "on_error": {"max_failure_rate": 0.01}}})
    assert "1 of 40 rows failed (2.5% > max_failure_rate 0.01)" in proj.apply().run.features["r"].error


def test_workers_are_capped_at_the_machine(proj):
    from featurekit.lifetime import machine_workers
    proj.write({"n": {**QLEN["qlen"], "resources": {"workers": 100000}}}, [{"id": 1, "question": "q?"}])
    feature = load_spec(proj.spec, registry=registry()).features["n"]
    assert LocalEngine().workers_for(feature, 10 ** 6) == machine_workers()


def test_a_full_disk_is_recognised_in_lance_errors():
    from featurekit.lifetime import disk_full
    assert disk_full(OSError(28, "No space left on device"))
    assert disk_full(RuntimeError("LanceError(IO): Generic LocalFileSystem error: No space left on device "
                                  "(os error 28)"))
    assert not disk_full(OSError(13, "Permission denied"))


class Interrupting(featurekit.Extractor):
    name = "faults.interrupting"
    inputs = {"text": pa.string()}
    budget = 0

    class Params(featurekit.Extractor.Params):
        scale: int = 1

    def output_type(self):
        return pa.int32()

    def __call__(self, batch):
        if Interrupting.budget <= 0:
            raise KeyboardInterrupt
        Interrupting.budget -= 1
        return pa.array([self.params.scale * len(t) for t in batch.column("text").to_pylist()], pa.int32())


def test_while_a_stale_feature_is_recomputed_its_metadata_keeps_the_old_fingerprint(proj):
    import types

    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    inline = types.ModuleType("interrupting_plugin")
    inline.featurekit_register_extractors = featurekit.hookimpl(lambda: [Interrupting])
    reg = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[inline]))
    feature = {"x": {"extractor": "faults.interrupting", "inputs": {"text": "question"}}}
    proj.write(feature, [{"id": i, "question": "q" * i} for i in range(40)], table={"fragment_rows": 10})
    Interrupting.budget = 100
    assert featurekit.apply(proj.spec, registry=reg).ok
    old = load_spec(proj.spec, registry=reg).features["x"].fingerprint
    proj.write({"x": {**feature["x"], "params": {"scale": 2}}}, table={"fragment_rows": 10})
    new = load_spec(proj.spec, registry=reg).features["x"].fingerprint
    Interrupting.budget = 2
    with pytest.raises(KeyboardInterrupt):
        featurekit.apply(proj.spec, registry=reg)
    ds = proj.dataset()
    assert ds.count_rows(filter=f"_fk_x = '{new}'") == 20  # half the rows have the new value ...
    meta = ds.schema.field("x").metadata
    assert meta[b"featurekit.fingerprint"].decode() == old  # ... so the metadata still says the old one
    assert json.loads(meta[b"featurekit.params"]) == {}  # params as written: the default was not
    plan = featurekit.plan(proj.spec, registry=reg)
    assert plan.step("x").action == "recompute" and "params changed: scale (default) -> 2" in plan.render()
    Interrupting.budget = 100
    result = featurekit.apply(proj.spec, registry=reg)
    assert result.run.features["x"].computed == 20  # committed work not redone
    assert proj.dataset().schema.field("x").metadata[b"featurekit.fingerprint"].decode() == new
    assert [r["x"] for r in proj.rows("id", "x")] == [2 * i for i in range(40)]
