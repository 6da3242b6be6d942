"""`apply --sample N`: each feature runs on N rows, nothing is committed, and the estimate
of the real apply's time holds (compared as a ratio with the real apply on the same table)."""
import json
import os

import lance
import pyarrow as pa
import pytest
from fktest import registry_with

import featurekit

WORK = 10_000  # iterations a row: about a millisecond of pure-Python CPU


class Busy(featurekit.Extractor):
    """CPU-bound: a fixed amount of arithmetic per row."""

    name = "acme.busy"
    inputs = {"text": "string"}

    def output_type(self):
        return pa.int64()

    def __call__(self, batch):
        out = []
        for q in batch.column("text").to_pylist():
            x = len(q)
            for _ in range(WORK):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            out.append(x)
        return pa.array(out, pa.int64())


class Wide(featurekit.Extractor):
    """64 floats from an upstream feature's value."""

    name = "acme.wide"
    inputs = {"n": "integer"}

    def output_type(self):
        return pa.list_(pa.float32(), 64)

    def __call__(self, batch):
        return pa.array([[float((n or 0) % (k + 2)) for k in range(64)] for n in batch.column("n").to_pylist()],
                        pa.list_(pa.float32(), 64))


SPEC = """\
featurekit: 1
name: sample
table: {db: data, name: t, fragment_rows: 250}
source: {format: jsonl, path: rows.jsonl, key: id}
features:
  qlen:
    extractor: text.length
    inputs: {text: q}
  busy:
    extractor: acme.busy
    inputs: {text: q}
    resources: {workers: 1}
  wide:
    extractor: acme.wide
    inputs: {n: qlen}
"""


@pytest.fixture
def sampled(tmp_path, monkeypatch):
    import featurekit.plugins.registry
    reg = registry_with(Busy, Wide)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"id": i, "q": "row " * (i % 9 + 1) + str(i)}) + "\n"
                                                 for i in range(2000)))
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path


def files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_sample_commits_nothing_and_its_estimate_is_within_2x_of_the_real_apply(sampled, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", "--select", "qlen", cwd=sampled)[0] == 0  # the table, without busy
    uri = str(sampled / "data" / "t.lance")
    version, before = lance.dataset(uri).version, files(sampled)

    code, out, err = run_cli("apply", "spec.yaml", "--sample", "300", "--select", "busy", cwd=sampled)
    assert code == 0, err
    assert "sampled 300 row(s)" in out and "8 fragment(s)); nothing was written" in out
    assert "busy" in out and "rows to compute" in out and "wide" not in out
    assert lance.dataset(uri).version == version and files(sampled) == before

    report = featurekit.api.sample(sampled / "spec.yaml", 300, select=["busy"])
    (busy,) = report.features
    assert busy.rows == 300 and busy.rows_to_compute == 2000 and busy.workers == 1 and busy.failed == 0
    assert 0 < busy.bytes_per_row < 24                            # an int64 and its state, as Lance encodes them
    result = featurekit.apply(sampled / "spec.yaml", select=["busy"])
    real = result.run.features["busy"].seconds
    ratio = busy.estimated_seconds / real
    assert 0.5 <= ratio <= 2.0, (busy.estimated_seconds, real)


def test_sample_counts_each_distinct_input_once_as_the_apply_does(sampled):
    (sampled / "rows.jsonl").write_text("".join(json.dumps({"id": i, "q": "row " * (i % 9 + 1)}) + "\n"
                                                for i in range(2000)))    # 9 distinct questions
    featurekit.apply(sampled / "spec.yaml", select=["qlen"])
    report = featurekit.api.sample(sampled / "spec.yaml", 300, select=["busy"])
    (busy,) = report.features
    assert (busy.rows, busy.inputs, busy.rows_to_compute, busy.inputs_to_compute) == (300, 9, 2000, 9)
    assert "2,000 rows, 9 distinct inputs: the extractor runs once per input" in report.render()
    per_input = busy.seconds / 9
    assert busy.estimated_seconds == pytest.approx(busy.setup_seconds + 9 * per_input)
    result = featurekit.apply(sampled / "spec.yaml", select=["busy"])
    assert result.run.features["busy"].passed == 9


def test_sample_runs_a_chain_of_new_features_on_the_same_rows(sampled, run_cli):
    code, out, err = run_cli("apply", "spec.yaml", "--sample", "50", "--select", "qlen,wide", cwd=sampled)
    assert code == 0, err
    assert "from the source" in out and "not created yet" in out    # no table: the source's rows
    assert not (sampled / "data").exists()
    report = featurekit.api.sample(sampled / "spec.yaml", 50, select=["qlen", "wide"])
    by_name = {f.name: f for f in report.features}
    assert set(by_name) == {"qlen", "wide"} and by_name["wide"].failed == 0  # wide read qlen's sample values
    assert 64 * 4 <= by_name["wide"].bytes_per_row < 64 * 4 + 80
    assert by_name["wide"].estimated_bytes == pytest.approx(by_name["wide"].bytes_per_row * 2000)


def test_sample_of_an_up_to_date_table_has_nothing_to_run(sampled, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", "--select", "qlen", cwd=sampled)[0] == 0
    code, out, _ = run_cli("apply", "spec.yaml", "--sample", "10", "--select", "qlen", cwd=sampled)
    assert code == 0 and "nothing to compute: every selected feature is up to date" in out
    code, out, err = run_cli("apply", "spec.yaml", "--sample", "10", "--dry-run", cwd=sampled)
    assert code == 2 and "--sample runs nothing for real" in err
