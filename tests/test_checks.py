"""`checks:` (issue 25): each check fails on a table built to break it and passes on a clean
one; apply exits 1 naming the failing keys and keeps the data; warnings exit 0; `check --json`
is stable; status shows the last apply's results."""
import json

import lance
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fktest import Project, registry_with

import featurekit

SPEC = """\
featurekit: 1
name: checks
table: {{db: data, name: t}}
source: {{format: jsonl, path: "raw/*.jsonl", key: id}}
features:
  ident:
    extractor: sql
    params: {{expr: "id", type: int64}}
    checks: {ident}
  half:
    extractor: sql
    params: {{expr: "id / 2", type: int64}}
    checks: {half}
  score_f:
    extractor: sql
    params: {{expr: "score", type: int64}}
    checks: {score_f}
  label:
    extractor: sql
    params: {{expr: "kind", type: string}}
    checks: {label}
  ratio:
    extractor: sql
    params: {{expr: "CAST(id AS DOUBLE) / 2", type: float64}}
    checks: {ratio}
  small:
    extractor: sql
    params: {{expr: "CAST(id AS TINYINT UNSIGNED)", type: uint8}}
    checks: {small}
slices:
  s:
    where: "ident >= 0"
    split: {{seed: {seed}, fractions: {{train: 0.5, val: 0.5}}}}
    checks: {s}
"""

ROWS = 20


def spec_text(seed: int = 0, **checks: str) -> str:
    return SPEC.format(seed=seed, **{k: checks.get(k, "[]") for k in ("ident", "half", "score_f", "label", "ratio", "small", "s")})


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    path = tmp_path / "raw" / "rows.jsonl"
    path.parent.mkdir(parents=True)
    # score is NULL for every 4th row (25%); kind cycles a, b, c
    path.write_text("".join(json.dumps({"id": i, "score": None if i % 4 == 0 else i, "kind": "abc"[i % 3]}) + "\n"
                            for i in range(ROWS)))
    return p


def results(report, check):
    return [r for r in report.results if r.check == check]


FEATURE_CASES = [
    # feature, checks, failing rows (0: passes), the keys named
    ("ident", "[not_null]", 0, []),
    ("score_f", "[not_null]", 5, [0, 4, 8, 12, 16]),
    ("ident", "[unique]", 0, []),
    ("half", "[unique]", 20, list(range(10))),
    ("ident", "[{range: {min: 0, max: 19}}]", 0, []),
    ("ident", "[{range: {min: 2, max: 17}}]", 4, [0, 1, 18, 19]),
    ("ident", "[{range: {max: 17}}]", 2, [18, 19]),
    ("label", "[{accepted_values: [a, b, c]}]", 0, []),
    ("label", "[{accepted_values: [a, b]}]", 6, [2, 5, 8, 11, 14, 17]),
    ("ident", "[{accepted_values: [0, 1, 2]}]", 17, list(range(3, 13))),
    ("score_f", "[{max_null_fraction: 0.25}]", 0, []),
    ("score_f", "[{max_null_fraction: 0.2}]", 5, [0, 4, 8, 12, 16]),
    ("ident", "[{max_null_fraction: 0}]", 0, []),
    ("score_f", "[{max_null_fraction: 0}]", 5, [0, 4, 8, 12, 16]),
    ("ident", "[{range: {min: 0.5}}]", 1, [0]),
    ("ident", "[{range: {min: -0.5, max: 18.5}}]", 1, [19]),
    ("ratio", "[{range: {min: 0, max: 9.5}}]", 0, []),
    ("ratio", "[{range: {min: 0.5, max: 9}}]", 2, [0, 19]),
    ("ratio", "[{accepted_values: [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5, 9]}]",
     1, [19]),
    # literals within a narrow or unsigned column's type (Lance refuses others)
    ("small", "[{range: {min: -5, max: 300}}]", 0, []),
    ("small", "[{range: {min: -5, max: 10}}]", 9, list(range(11, 20))),
    ("small", "[{range: {max: -1}}]", 20, list(range(10))),
    ("small", "[{accepted_values: [-1, 1, 2, 1000]}]", 18, [0] + list(range(3, 12))),
]


@pytest.mark.parametrize("feature,checks,failing,keys", FEATURE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{'fails' if c[2] else 'passes'}" for c in FEATURE_CASES])
def test_each_feature_check_fails_on_a_table_built_to_break_it_and_passes_on_a_clean_one(
        project, feature, checks, failing, keys):
    spec = project.write_spec(spec_text(**{feature: checks}))
    result = featurekit.apply(spec)
    [r] = result.run.checks.results
    assert (r.name, r.column, r.rows, r.failing, list(r.keys)) == (feature, feature, ROWS, failing, keys)
    assert r.outcome == ("fail" if failing else "pass")
    assert result.ok is not bool(failing)
    again = featurekit.check(spec)  # the same on the table as it stands
    assert again.results[0].to_dict() == r.to_dict() and again.ok is not bool(failing)


def _train_rows(seed: int) -> int:
    from test_slices import split_of
    return sum(split_of(i, seed, {"train": 0.5, "val": 0.5}) == "train" for i in range(ROWS))


def test_slice_row_counts_and_split_shares(project):
    seed = next(s for s in range(100) if _train_rows(s) != ROWS // 2)
    train = _train_rows(seed)
    off = abs(train / ROWS - 0.5)
    checks = (f"[{{min_rows: {ROWS}}}, {{min_rows: {ROWS + 1}}}, {{min_rows: {train}, split: train}}, "
              f"{{min_rows: {train + 1}, split: train}}, {{split_tolerance: {off + 0.01}}}, "
              f"{{split_tolerance: {off - 0.01 if off > 0.011 else off / 2}}}, no_leaks]")
    spec = project.write_spec(spec_text(seed=seed, s=checks))
    report = featurekit.apply(spec).run.checks
    assert [(r.check, r.outcome, r.failing) for r in report.results] == [
        ("min_rows", "pass", 0), ("min_rows", "fail", 1), ("min_rows", "pass", 0), ("min_rows", "fail", 1),
        ("split_tolerance", "pass", 0), ("split_tolerance", "fail", 2), ("no_leaks", "pass", 0)]
    assert report.results[1].detail == f"{ROWS} rows in the slice (at least {ROWS + 1} wanted)"


def test_no_leaks_fails_once_a_new_row_bridges_two_splits(tmp_path):
    from test_slices import SPEC as CURATION_SPEC
    from test_slices import split_of, write
    project = Project(tmp_path)
    spec = project.write_spec(CURATION_SPEC.replace("max_distance: 3}}", "max_distance: 2}}")
                              + "    checks: [no_leaks]\n")
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    a = next(f"a{k}" for k in range(1000) if split_of(f"a{k}", 7, fractions) == "train")
    b = next(f"b{k}" for k in range(1000) if split_of(f"b{k}", 7, fractions) == "val")
    write(project, [{"id": 1, "image_id": a, "question": "what is it?", "h": 0},
                    {"id": 2, "image_id": b, "question": "who is it?", "h": 0b1111}], "a.jsonl")
    assert featurekit.apply(spec).run.checks.ok
    write(project, [{"id": 3, "image_id": "c", "question": "how many?", "h": 0b0011}], "b.jsonl")
    result = featurekit.apply(spec)
    [r] = result.run.checks.results
    assert (r.check, r.outcome, r.failing, r.keys) == ("no_leaks", "fail", 1, ("3",))
    assert not result.ok
    assert featurekit.check(spec).results[0].outcome == "fail"  # read back from the apply log


def test_a_failing_apply_exits_1_names_the_keys_and_keeps_the_data(project, run_cli):
    project.write_spec(spec_text(score_f="[not_null]"))
    code, out, err = run_cli("apply", "spec.yaml", "-q", cwd=project.root)
    assert code == 1
    assert ("error: check not_null failed on feature score_f: 5 of 20 rows are NULL; keys: 0, 4, 8, 12, 16 "
            "(the data is kept)") in err.splitlines()
    assert "  FAIL  feature score_f: not_null: 5 of 20 rows are NULL; keys: 0, 4, 8, 12, 16" in out.splitlines()
    values = lance.dataset(project.root / "data" / "t.lance").to_table(columns=["id", "score_f"]).to_pydict()
    assert dict(zip(values["id"], values["score_f"])) == {i: None if i % 4 == 0 else i for i in range(ROWS)}
    assert featurekit.plan(project.spec).is_noop  # kept and up to date: the next apply recomputes nothing
    code, out, err = run_cli("check", "spec.yaml", cwd=project.root)
    assert code == 1


def test_more_than_ten_failing_rows_name_ten_keys(project, run_cli):
    project.write_spec(spec_text(ident="[{range: {max: 3}}]"))
    code, out, err = run_cli("apply", "spec.yaml", "-q", cwd=project.root)
    assert code == 1
    assert ("  FAIL  feature ident: range: 16 of 20 rows outside [, 3]; keys: 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 ..."
            in out.splitlines())


def test_a_warning_exits_0_and_is_reported(project, run_cli):
    project.write_spec(spec_text(score_f="[{not_null: true, severity: warn}]", ident="[unique]"))
    code, out, err = run_cli("apply", "spec.yaml", "-q", cwd=project.root)
    assert code == 0, err
    assert "  WARN  feature score_f: not_null: 5 of 20 rows are NULL; keys: 0, 4, 8, 12, 16" in out.splitlines()
    code, out, err = run_cli("check", "spec.yaml", cwd=project.root)
    assert code == 0
    assert out.splitlines()[0] == "checks on version 10: 1 passed, 0 failed, 1 warning(s)"
    code, out, err = run_cli("status", "spec.yaml", cwd=project.root)
    assert "last apply's checks on version 10: 1 passed, 0 failed, 1 warning(s)" in out.splitlines()
    assert "  WARN  feature score_f: not_null: 5 of 20 rows are NULL; keys: 0, 4, 8, 12, 16" in out.splitlines()
    status = featurekit.status(project.spec)
    assert status.checks["version"] == 10 and [r["outcome"] for r in status.checks["results"]] == ["pass", "warn"]


def test_check_json_is_stable(project, run_cli):
    project.write_spec(spec_text(half="[unique]", score_f="[{not_null: , severity: warn}]", s="[{min_rows: 100}]"))
    run_cli("apply", "spec.yaml", "-q", cwd=project.root)
    code, out, err = run_cli("check", "spec.yaml", "--json", cwd=project.root)
    assert code == 1
    assert out == EXPECTED_JSON
    assert run_cli("check", "spec.yaml", "--json", cwd=project.root)[1] == out


EXPECTED_JSON = """\
{
  "checks": [
    {
      "check": "unique",
      "column": "half",
      "detail": "20 of 20 rows share 10 value(s)",
      "failing": 20,
      "keys": [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9
      ],
      "kind": "feature",
      "name": "half",
      "outcome": "fail",
      "rows": 20,
      "severity": "error"
    },
    {
      "check": "not_null",
      "column": "score_f",
      "detail": "5 of 20 rows are NULL",
      "failing": 5,
      "keys": [
        0,
        4,
        8,
        12,
        16
      ],
      "kind": "feature",
      "name": "score_f",
      "outcome": "warn",
      "rows": 20,
      "severity": "warn"
    },
    {
      "check": "min_rows",
      "column": "s",
      "detail": "20 rows in the slice (at least 100 wanted)",
      "failing": 80,
      "keys": [],
      "kind": "slice",
      "name": "s",
      "outcome": "fail",
      "rows": 20,
      "severity": "error"
    }
  ],
  "counts": {
    "fail": 2,
    "pass": 0,
    "skipped": 0,
    "warn": 1
  },
  "ok": false,
  "version": 10
}
"""



class Pair(featurekit.Extractor):
    """Two outputs: the row's id and its id halved."""

    name = "acme.pair"
    inputs = {"id": pa.int64()}

    def output_types(self):
        return {"same": pa.int64(), "halved": pa.int64()}

    def __call__(self, batch):
        ids = batch.column("id")
        return {"same": ids, "halved": pc.divide(ids, 2)}


PAIR = "  pair:\n    extractor: acme.pair\n    inputs: {id: id}\n    outputs: {same: p_same, halved: p_half}\n" \
       "    checks: %s\nslices:\n"


def test_a_multi_output_check_runs_on_its_output_or_on_each(project):
    reg = registry_with(Pair)
    spec = project.write_spec(spec_text().replace("slices:\n", PAIR % "[unique, {unique: , output: same}]"))
    report = featurekit.apply(spec, registry=reg).run.checks
    assert [(r.column, r.outcome, r.failing) for r in report.results] == [
        ("p_same", "pass", 0), ("p_half", "fail", 20), ("p_same", "pass", 0)]


def test_validate_names_an_unknown_output(project):
    reg = registry_with(Pair)
    spec = project.write_spec(spec_text().replace("slices:\n", PAIR % "[{unique: , output: twice}]"))
    problems = featurekit.validate(spec, registry=reg).problems
    assert [str(p).replace(str(project.root) + "/", "") for p in problems] == [
        "spec.yaml:34:33: features.pair.checks[0].output: feature 'pair' has no output 'twice'; its outputs: same, "
        "halved"]


def test_check_without_checks_or_without_a_table(project, run_cli):
    project.write_spec(spec_text())
    code, out, err = run_cli("check", "spec.yaml", cwd=project.root)
    assert code == 1 and "does not exist yet; run 'featurekit apply' first" in err
    run_cli("apply", "spec.yaml", "-q", cwd=project.root)
    code, out, err = run_cli("check", "spec.yaml", cwd=project.root)
    assert (code, out) == (0, "checks on version 10: none (add checks: to features and slices)\n")
    assert featurekit.status(project.spec).checks == {}


def test_the_json_schema_takes_checks_as_names_or_mappings():
    import jsonschema
    import yaml

    from featurekit.commands.schema import spec_schema
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    validator = jsonschema.Draft202012Validator(
        spec_schema(Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False))))
    checks = dict(ident="[not_null, unique, {range: {min: 0, max: 19}, severity: warn}]",
                  label="[{accepted_values: [a, b, c]}]", s="[no_leaks, {min_rows: 1, split: train}]")
    assert list(validator.iter_errors(yaml.safe_load(spec_text(**checks)))) == []
    for bad in (dict(ident="[range]"), dict(ident="[no_leaks]"), dict(s="[not_null]"), dict(ident="[{ranges: 1}]")):
        assert list(validator.iter_errors(yaml.safe_load(spec_text(**bad)))), bad
