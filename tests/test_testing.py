"""check_extractor must fail, with a clear message, on each broken contract."""
import pyarrow as pa
import pytest
from pydantic import BaseModel

import featurekit
from featurekit.builtin.text import QuestionType, TextLength
from featurekit.testing import check_extractor


class Good(featurekit.Extractor):
    name = "t.good"
    inputs = {"text": pa.string()}

    def output_type(self):
        return pa.int32()

    def __call__(self, batch):
        return pa.array([len(t or "") for t in batch.column("text").to_pylist()], pa.int32())


class WrongType(Good):
    name = "t.wrongtype"

    def __call__(self, batch):
        return pa.array(["x"] * batch.num_rows)


class WrongLength(Good):
    name = "t.wronglength"

    def __call__(self, batch):
        return pa.array([1], pa.int32())


class LaxParams(Good):
    name = "t.lax"

    class Params(BaseModel):
        size: int = 1


class BatchDependent(Good):
    name = "t.batchdep"

    def __call__(self, batch):
        return pa.array([batch.num_rows] * batch.num_rows, pa.int32())


class Unstable(Good):
    name = "t.unstable"
    calls = 0

    def __call__(self, batch):
        Unstable.calls += 1
        return pa.array([Unstable.calls] * batch.num_rows, pa.int32())


class NoName(Good):
    name = "noplugin"


def test_builtins_pass():
    assert check_extractor(TextLength)["value"].to_pylist() == [28, 0, 9]
    assert check_extractor(QuestionType)["value"].to_pylist() == ["what", "other", "how many"]
    check_extractor(Good)


@pytest.mark.parametrize("cls,message", [
    (WrongType, "t.wrongtype returned string, but declares int32"),
    (WrongLength, "t.wronglength returned 1 values for the 3 rows it was given"),
    (LaxParams, "t.lax: Params must reject unknown keys (model_config extra='forbid')"),
    (BatchDependent, "t.batchdep: row 0 computed alone differs from the same row in a batch (output 'value')"),
    (Unstable, "t.unstable: output 'value' differs between two identical calls"),
    (NoName, "NoName.name must be '<plugin>.<thing>', not 'noplugin'"),
])
def test_broken_contracts_are_caught(cls, message):
    with pytest.raises(AssertionError) as info:
        check_extractor(cls)
    assert message in str(info.value)


def test_featurekit_project_fixture_builds_applies_and_reads(featurekit_project):
    import types
    mod = types.ModuleType("good_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Good])
    featurekit_project.plugins = [mod]
    featurekit_project.write({"n": {"extractor": "t.good", "inputs": {"text": "q"}}},
                             rows=[{"id": 2, "q": "banana"}, {"id": 1, "q": None}])
    assert featurekit_project.plan().step("n").action == "create"
    assert featurekit_project.apply().ok
    assert featurekit_project.table().column("n").to_pylist() == [0, 6]


class Reports(Good):
    """Reports rows it cannot compute with featurekit.RowErrors."""

    name = "t.reports"

    def __call__(self, batch):
        return featurekit.RowErrors.map(lambda t: len(t) if "bad" not in t else int("x"),
                                        batch.column("text").to_pylist(), pa.int32())


class ReportsInBatchOnly(Good):
    name = "t.batchonly"

    def __call__(self, batch):
        texts = batch.column("text").to_pylist()
        errors = ["bad batch" if len(texts) > 1 and i == 0 else None for i in range(len(texts))]
        return featurekit.RowErrors(pa.array([len(t or "") for t in texts], pa.int32()), errors)


class ShortErrors(Good):
    name = "t.shorterrors"

    def __call__(self, batch):
        return featurekit.RowErrors(pa.array([1] * batch.num_rows, pa.int32()), [None])


def test_row_errors_form_passes_and_failed_rows_are_null():
    out = check_extractor(Reports, batch={"text": ["ok", "bad row", "fine"]})
    assert out["value"].to_pylist() == [2, None, 4]


@pytest.mark.parametrize("cls,message", [
    (ReportsInBatchOnly, "t.batchonly: row 0 failed in its batch but not alone"),
    (ShortErrors, "t.shorterrors returned RowErrors with 1 errors for 3 rows"),
])
def test_row_errors_form_broken(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_extractor(cls, batch={"text": ["a", "bb", "ccc"]})
