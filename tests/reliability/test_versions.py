"""Issue 12, item 7: a Lance version only for a real change."""
import os

from .conftest import TALLY

QLEN = {"qlen": {"extractor": "text.length", "inputs": {"text": "question"}}}


def test_touching_the_source_leaves_the_version_unchanged(proj):
    proj.write(QLEN, [{"id": i, "question": f"q{i}?"} for i in range(5)])
    assert proj.apply().ok
    version = proj.version()
    os.utime(proj.root / "rows.jsonl")
    assert proj.cli("apply", "-q", "spec.yaml").returncode == 0
    assert proj.version() == version
    assert "nothing to do" in proj.plan().render()


def test_the_same_rows_in_a_new_file_write_nothing(proj):
    rows = [{"id": i, "question": f"q{i}?"} for i in range(5)]
    proj.write(QLEN, rows, source={"path": "*.jsonl"})
    assert proj.apply().ok
    version = proj.version()
    proj.write_rows(rows[:3], "copy.jsonl")
    TALLY["bad_inputs"] += 1  # three duplicate keys
    assert proj.apply().run is None and proj.version() == version


def test_a_retry_that_fails_the_same_way_writes_no_version(proj):
    proj.write({"r": {"extractor": "faults.raises", "inputs": {"text": "question"},
                      "on_error": {"max_failure_rate": 0.5}}},
               [{"id": i, "question": "BOOM" if i == 1 else "q?"} for i in range(4)])
    assert proj.apply().ok
    version, files = proj.version(), proj.data_files()
    again = proj.apply()
    assert again.run.features["r"].failed == 1 and proj.version() == version
    assert proj.data_files() == files
    assert len(os.listdir(os.path.join(proj.uri, "data"))) == sum(len(f) for f in files.values())  # no stray file
