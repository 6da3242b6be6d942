"""Issue 21, N18: table metadata edited into something featurekit never writes (not JSON, the
wrong type) reads as unknown: the commands run without a traceback, the damaged feature is
recomputed, the source is read again, and the next apply writes the metadata afresh."""
import json

import pytest

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
ROWS = [{"id": i, "question": f"q{i}"} for i in range(12)]


@pytest.mark.parametrize("schema_meta, field_meta", [
    ({"featurekit.applies": "not json", "featurekit.source": "[1, 2]"}, {"featurekit.params": "{{"}),
    ({"featurekit.applies": json.dumps({"a": 1}), "featurekit.source": "\"x\""},
     {"featurekit.inputs": "[]", "featurekit.input_fingerprints": "7"}),
    ({"featurekit.applies": json.dumps([1, "x", None])}, {"featurekit.runtime_params": "null"}),
])
def test_n18_tampered_metadata_is_read_as_unknown_not_a_traceback(proj, run_cli, schema_meta, field_meta):
    """The commands in this process (an exception would fail the test where a process would
    print a traceback), the last apply as its own process."""
    proj.write(CHEAP, ROWS)
    assert proj.apply().ok
    ds = proj.dataset()
    ds.update_schema_metadata(schema_meta)
    ds.update_field_metadata({"n": field_meta})
    for command in (("status", "spec.yaml"), ("plan", "spec.yaml"), ("log", "spec.yaml")):
        code, _, err = run_cli(*command, cwd=proj.root)
        assert "Traceback" not in err and code in (0, 1), (command, err)
    code, _, err = run_cli("apply", "-q", "spec.yaml", cwd=proj.root)
    assert code == 0 and "Traceback" not in err, err
    assert [r["n"] for r in proj.rows("id", "n")] == [len(r["question"]) for r in ROWS]
    again = proj.cli("apply", "-q", "spec.yaml", timeout=120)  # (a timeout: a process of its own)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    from featurekit.table.metadata import applies, source_signature
    schema = proj.dataset().schema
    assert all(isinstance(e, dict) for e in applies(schema))
    assert source_signature(schema) is None or isinstance(source_signature(schema), dict)
