import pytest
from broken_specs import CASES
from fktest import BASE_SPEC


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_spec_reports_every_problem_with_its_place(project, run_cli, text, expected):
    project.write_spec(text)
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    lines = err.splitlines()
    assert lines[:-1] == expected
    n = len(expected)
    assert lines[-1] == f"{n} problem{'s' if n != 1 else ''} found; nothing was written"
    assert "Traceback" not in err
    assert not (project.root / "data").exists()


def test_there_are_at_least_25_broken_specs():
    assert len(CASES) >= 25


def test_valid_spec(project, run_cli):
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert (code, err) == (0, "")
    assert out == "spec.yaml: ok (3 features, 1 slice, 0 recipes)\n"


def test_problems_from_several_files_are_reported_together(project, run_cli):
    project.write_spec(BASE_SPEC.replace("featurekit: 1", "featurekit: 3"), "a.yaml")
    project.write_spec(BASE_SPEC.replace("text.count", "text.cuont"), "b.yaml")
    code, out, err = run_cli("validate", "a.yaml", "b.yaml", "spec.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines() == [
        "a.yaml:1:13: featurekit: unsupported spec format version 3; this featurekit reads version 1",
        "b.yaml:15:16: features.ocr_token_count.extractor: unknown extractor 'text.cuont'; "
        "did you mean 'text.count'?",
        "2 problems found; nothing was written",
    ]
    assert out == "spec.yaml: ok (3 features, 1 slice, 0 recipes)\n"


def test_missing_file(project, run_cli):
    code, out, err = run_cli("validate", "nope.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines()[0] == "nope.yaml:1:1: (file): no such file"


def test_plan_and_apply_refuse_a_broken_spec_and_write_nothing(project, run_cli):
    project.write_spec(BASE_SPEC.replace("text.count", "text.cuont"))
    for command in ("plan", "apply"):
        code, out, err = run_cli(command, "spec.yaml", cwd=project.root)
        assert code == 2
        assert "unknown extractor 'text.cuont'" in err
    assert not (project.root / "data").exists()


def test_bad_params_for_an_extractor_name_the_key_and_the_expected_type(project, run_cli):
    import types

    import pyarrow as pa

    import featurekit
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry

    class Hash(featurekit.Extractor):
        name = "test.hash"
        inputs = {"text": pa.string()}

        class Params(featurekit.Extractor.Params):
            hash_size: int = 8

        def output_type(self):
            return pa.int64()

        def __call__(self, batch):
            return pa.array([0] * batch.num_rows, pa.int64())

    mod = types.ModuleType("test_hash_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Hash])
    registry = Registry.from_plugin_manager(make_plugin_manager(plugins=[mod]))
    spec = project.write_spec(BASE_SPEC.replace(
        "    extractor: text.length\n", "    extractor: test.hash\n    params: {hash_size: big}\n"))
    with pytest.raises(featurekit.SpecError) as info:
        featurekit.load_spec(spec, registry=registry)
    assert [str(p).split(": ", 1)[1] for p in info.value.problems] == [
        "features.question_length.params.hash_size: input should be a valid integer, unable to parse string "
        "as an integer (got 'big')"]
    assert info.value.problems[0].line == 13


def test_a_fresh_clone_without_the_data_validates_everything_else(project, run_cli):
    """No source file yet: exit 0 and say what waited; --strict fails on it; apply says why not."""
    import shutil
    shutil.rmtree(project.root / "raw")
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "spec.yaml: ok (3 features, 1 slice, 0 recipes)",
        "  waited for the data: spec.yaml:8:9: source.path: no file matches 'raw/*.jsonl' (paths are relative "
        "to the spec's folder): the source's columns, their types and the filters over them were not checked"]
    code, out, err = run_cli("validate", "--strict", "spec.yaml")
    assert code == 2 and err.splitlines()[0].startswith("spec.yaml:8:9: source.path: no file matches 'raw/*.jsonl'")
    project.write_spec(BASE_SPEC.replace("extractor: text.count", "extractor: text.cuont"))
    code, out, err = run_cli("validate", "spec.yaml")  # what can be checked still is
    assert code == 2 and "unknown extractor 'text.cuont'" in err
    project.write_spec(BASE_SPEC)
    code, out, err = run_cli("apply", "spec.yaml")
    assert code == 2 and err == "error: no file matches 'raw/*.jsonl' (paths are relative to the spec's folder): " \
                                "nothing to apply yet\n"
    assert not (project.root / "data").exists()


def test_problems_of_every_section_are_reported_in_one_run(project, run_cli):
    """A typo'd key, bad params or a bad split no longer hide the other problems of the same
    feature or slice, nor those of later sections."""
    project.write_spec(BASE_SPEC
                       .replace("    extractor: text.question_type\n", "    teir: 2\n    extractor: text.nope\n")
                       .replace("    extractor: text.count\n    inputs: {items: ocr_tokens}\n",
                                "    extractor: text.count\n    inputs: {items: question}\n    params: {colour: red}\n")
                       .replace('where: "ocr_token_count >= 8"',
                                'where: "ocr_token_countt >= 8"\n    split: {fractions: {train: 0.6, val: 0.5}}'))
    code, _, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    for wanted in ("features.ocr_token_count.inputs.items: type mismatch: column 'question' is string",
                   "features.ocr_token_count.params.colour: unknown key 'colour'",
                   "features.question_type.teir: unknown key 'teir'",
                   "features.question_type.extractor: unknown extractor 'text.nope'",
                   "slices.text_dense.where: unknown column 'ocr_token_countt'",
                   "slices.text_dense.split.fractions: fractions must add up to 1"):
        assert wanted in err, wanted


def test_one_run_reports_every_mistake_at_every_stage(project, run_cli):
    """Issue 20, item 3: an unknown input name, an unknown param, a broken `where` and an
    unknown split column, all in one run (the `where` used to wait for the others)."""
    project.write_spec(BASE_SPEC
                       .replace("inputs: {text: question}\n  ocr", "inputs: {txt: question}\n  ocr")
                       .replace("    inputs: {items: ocr_tokens}\n", "    inputs: {items: ocr_tokens}\n"
                                                                      "    params: {colour: red}\n")
                       .replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >="\n'
                                '    split: {by: imageid, fractions: {train: 0.5, val: 0.5}}'))
    code, _, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines() == [
        "spec.yaml:13:13: features.question_length.inputs: text.length needs input 'text' (string); "
        "add 'text: <column>'",
        "spec.yaml:13:14: features.question_length.inputs.txt: text.length has no input 'txt'; its inputs: text",
        "spec.yaml:17:14: features.ocr_token_count.params.colour: unknown key 'colour'",
        "spec.yaml:23:12: slices.text_dense.where: invalid SQL filter: cannot parse ocr_token_count >=: '>=' needs "
        "an expression after it, found the end of the expression (at character 19)",
        "spec.yaml:24:17: slices.text_dense.split.by: unknown column 'imageid': not in the table, the source or any "
        "feature's outputs; did you mean 'image_id'?",
        "5 problems found; nothing was written",
    ]


@pytest.mark.parametrize("change,first", [
    (("  name: textvqa\n", "  name: a/b\n"), "spec.yaml:5:9: table.name: table name 'a/b' must be 1-128 ASCII"),
    (("  key: question_id\n", "  key: question_id\n  on_change: maybe\n"),
     "spec.yaml:10:14: source.on_change: input should be 'update', 'ignore' or 'error' (got 'maybe')"),
])
def test_a_bad_table_or_source_does_not_hide_the_features_problems(project, run_cli, change, first):
    project.write_spec(BASE_SPEC.replace(*change).replace("extractor: text.count", "extractor: text.cuont"))
    code, _, err = run_cli("validate", "spec.yaml", cwd=project.root)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 3 and lines[0].startswith(first), lines
    assert "features.ocr_token_count.extractor: unknown extractor 'text.cuont'" in lines[1]
