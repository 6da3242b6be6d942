import json
import subprocess
import sys

import pytest
from fktest import BASE_SPEC

import featurekit

CHAIN = BASE_SPEC.replace("slices:\n", """\
  qtype_len:
    extractor: text.length
    inputs: {text: question_type}
slices:
""")


def test_select_ancestors_and_descendants(project):
    proj = featurekit.load_spec(project.write_spec(CHAIN))
    g = proj.graph
    assert g.select(["qtype_len"]) == {"feature:qtype_len"}
    assert g.select(["+qtype_len"]) == {"feature:qtype_len", "feature:question_type"}
    assert g.select(["question_type+"]) == {"feature:question_type", "feature:qtype_len"}
    assert g.select(["ocr_token_count+"]) == {"feature:ocr_token_count", "slice:text_dense"}
    assert g.select(["question_length,ocr_token_count"]) == {"feature:question_length", "feature:ocr_token_count"}
    with pytest.raises(featurekit.UsageError) as info:
        g.select(["nope"])
    assert str(info.value).startswith("--select: unknown name 'nope'; known: ")


def test_graph_formats(project, run_cli):
    project.write_spec(CHAIN)
    code, out, _ = run_cli("graph", "spec.yaml", cwd=project.root)
    assert code == 0
    assert "feature qtype_len (tier 1)\n  <- feature question_type (tier 1)" in out
    assert "slice text_dense\n  <- feature ocr_token_count (tier 1)" in out
    code, out, _ = run_cli("graph", "spec.yaml", "--format", "mermaid")
    assert out.startswith("graph LR\n")
    assert "  feature__question_type --> feature__qtype_len" in out
    assert "  col__question --> feature__question_type" in out
    code, out, _ = run_cli("graph", "spec.yaml", "--format", "dot")
    assert '"feature:question_type" -> "feature:qtype_len";' in out and out.rstrip().endswith("}")


def test_plan_without_a_table_says_every_feature_is_new(project, run_cli):
    code, out, _ = run_cli("plan", "spec.yaml", cwd=project.root)
    assert code == 0
    assert out.splitlines()[:4] == [
        "plan for textvqa-test: table data/textvqa.lance (new table)",
        "  source: 1 file(s), 40 new row(s) to append",
        "  + ocr_token_count (tier 1): new column(s) ocr_token_count: compute 40 row(s)",
        "      new feature",
    ]
    assert "  + question_length (tier 1): new column(s) question_length: compute 40 row(s)" in out
    code, out, _ = run_cli("plan", "spec.yaml", "--json")
    data = json.loads(out)
    assert [f["action"] for f in data["features"]] == ["create", "create", "create"]
    assert data["ingest"]["new_rows"] == 40 and data["table_exists"] is False


def test_every_command_has_help_with_an_example(run_cli):
    for command in ("validate", "plan", "apply", "status", "graph", "plugins", "schema"):
        code, out, _ = run_cli(command, "--help")
        assert code == 0
        assert "Example: featurekit " + command in out


def test_schema_includes_extractor_params(run_cli):
    code, out, _ = run_cli("schema")
    schema = json.loads(out)
    feature = schema["$defs"]["FeatureSpec"]
    assert "text.question_type" in feature["properties"]["extractor"]["examples"]
    assert "text.question_type" in schema["then"]["properties"]["features"]["additionalProperties"]["properties"][
        "extractor"]["enum"]  # the installed ones only, unless the spec has plugins: files
    assert feature["additionalProperties"] is False
    assert schema["additionalProperties"] is False


HEAVY = ("torch", "transformers", "geneva", "ray", "lancedb")


@pytest.mark.parametrize("args", [["--help"], ["validate", "spec.yaml"], ["plan", "spec.yaml"]])
def test_fast_paths_import_no_heavy_modules(project, args):
    code = (f"import sys; from featurekit.cli import main; rc = main({args!r}); "
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]; print(bad); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_the_json_schema_accepts_a_valid_spec_and_rejects_mistakes():
    import jsonschema
    import yaml
    from fktest import BASE_SPEC

    from featurekit.commands.schema import spec_schema
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry

    schema = spec_schema(Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False)))
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(BASE_SPEC)
    assert list(validator.iter_errors(good)) == []
    bad = yaml.safe_load(BASE_SPEC.replace("extractor: text.length", "extractor: text.lenght")
                         .replace("inputs: {text: question}\n  ocr", "inputs: {txt: question}\n  ocr"))
    bad["owner"] = "me"
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert any("'text.lenght' is not one of" in m for m in messages)
    assert any("'owner' was unexpected" in m for m in messages)


def test_a_spec_with_nothing_to_do_says_why(tmp_path, run_cli):
    (tmp_path / "a.yaml").write_text("featurekit: 1\nname: x\ntable: {db: data, name: t}\n")
    code, out, _ = run_cli("apply", "a.yaml", cwd=tmp_path)
    assert code == 0
    assert out.splitlines()[-1] == "the table does not exist and the spec has no source: add source: to create it"
    assert run_cli("graph", "a.yaml")[1] == "(no features, slices or recipes)\n"
    assert not (tmp_path / "data" / "t.lance").exists()


def yaml_specs_in_readme() -> list[str]:
    """Every YAML block of the README that is a whole spec."""
    import re
    from pathlib import Path
    text = (Path(__file__).parent.parent / "README.md").read_text()
    return [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "featurekit: 1" in b]


def test_the_json_schema_accepts_every_form_the_spec_does():
    """Every spec in specs/ and in the README, plus the engine shorthand and the mapping form."""
    from pathlib import Path

    import jsonschema
    import yaml

    from featurekit.commands.schema import spec_schema
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry

    registry = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=True))
    validator = jsonschema.Draft202012Validator(spec_schema(registry))
    texts = [p.read_text() for p in sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))]
    texts += yaml_specs_in_readme()
    assert len(texts) >= 3
    for text in texts:
        data = yaml.safe_load(text)
        for engine in ("local", {"kind": "local", "checkpoint_seconds": 5}, None):
            if engine is not None:
                data["engine"] = engine
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(data)]
            assert errors == [], text.splitlines()[0]


def test_quiet_apply_prints_nothing_when_nothing_changed(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    assert run_cli("apply", "-q", "spec.yaml") == (0, "", "")
    code, out, err = run_cli("apply", "spec.yaml")
    assert out.splitlines()[-1] == "nothing to do: everything is up to date"


def test_outside_a_terminal_long_features_print_progress_lines(capsys):
    from featurekit.engine import FeatureRun
    from featurekit.progress import PlainReporter
    reporter = PlainReporter(every=0.0)  # a line at every update (the default is every 10 s)
    reporter.feature_started("hiddens", 100)
    reporter.rows_done("hiddens", 40)
    reporter.rows_done("hiddens", 60)
    reporter.feature_finished(FeatureRun("hiddens", computed=100, seconds=1.0))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "hiddens: computing 100 row(s)"
    assert lines[1].startswith("hiddens: 40/100 rows, ") and ", eta " in lines[1]
    assert lines[2].startswith("hiddens: 100/100 rows, ") and "eta" not in lines[2]
    assert lines[3] == "hiddens: 100 computed, 0 failed in 1.0s (100 rows/s)"
