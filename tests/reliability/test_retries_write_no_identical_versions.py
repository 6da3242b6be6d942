"""Issue 21: retrying rows that fail the same way writes no version (it used to write two
identical ones each apply when a slice waited on the failed rows: the slice re-examined its
blocked rows, found them as they were, and committed them and an apply-log entry anyway)."""
import pytest
import yaml


@pytest.mark.parametrize("variant", ["slice", "fragments", "workers"])
def test_a_retry_that_fails_the_same_way_leaves_the_version_alone(proj, variant):
    feature = {"extractor": "faults.raises", "inputs": {"text": "question"}, "on_error": {"max_failure_rate": 0.5}}
    if variant == "workers":
        feature["resources"] = {"workers": 2, "batch_size": 2}
    rows = [{"id": i, "question": "BOOM" if i in (1, 7) else "q?"} for i in range(12)]
    proj.write({"r": feature}, rows, table={"fragment_rows": 4} if variant != "slice" else None)
    if variant == "slice":
        proj.spec_data["slices"] = {"s": {"where": "r > 0"}}
        proj.spec.write_text(yaml.safe_dump(proj.spec_data, sort_keys=False))
    assert proj.apply().ok
    version, files = proj.version(), proj.data_files()
    for _ in range(2):
        again = proj.apply()
        assert again.ok and again.run.features["r"].failed == 2
        assert proj.version() == version and proj.data_files() == files
    if variant == "slice":
        assert proj.dataset().count_rows(filter="_fk_s LIKE '%!blocked%'") == 2
