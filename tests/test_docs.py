"""The README's plugin example runs as written, and every hook is documented."""
import re
import sys
import textwrap
import types
from pathlib import Path

import featurekit.hookspecs as hookspecs

README = (Path(__file__).parent.parent / "README.md").read_text()


def block_after(marker: str) -> str:
    match = re.search(r"```python\n# " + re.escape(marker) + r"\n(.*?)```", README, re.S)
    assert match, marker
    return match.group(1)


def test_readme_plugin_example_runs(monkeypatch):
    module = types.ModuleType("featurekit_acme")
    exec(compile(block_after("featurekit_acme/__init__.py"), "README:featurekit_acme", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "featurekit_acme", module)
    test_ns: dict = {}
    exec(compile(block_after("tests/test_acme.py"), "README:test_acme", "exec"), test_ns)
    test_ns["test_contract"]()


def test_every_hook_is_documented_here_and_in_the_readme():
    hooks = [n for n in dir(hookspecs) if n.startswith("featurekit_")]
    assert hooks == ["featurekit_register_engines", "featurekit_register_extractors",
                     "featurekit_register_sources", "featurekit_register_trainers"]
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip()
        assert name in README


def test_readme_commands_name_existing_files():
    root = Path(__file__).parent.parent
    for path in ("specs/textvqa-qwen.yaml", "examples/make_sample.py", "examples/make_tiny_qwen.py",
                 "plugins/featurekit-image", "plugins/featurekit-qwen"):
        assert path in README and (root / path).exists()


def test_the_spec_reference_is_generated_from_the_models(run_cli):
    code, out, err = run_cli("schema", "--markdown")
    assert code == 0
    committed = (Path(__file__).parent.parent / "docs" / "reference.md").read_text()
    assert out == committed, "docs/reference.md is stale: FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD=1 " \
                             "featurekit schema --markdown > docs/reference.md"
    assert "| `fragment_rows` | `int` | `8192` |" in out


def python_block_with(needle: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if needle in b]
    assert len(blocks) == 1, needle
    return blocks[0]


def test_readme_duckdb_recipe_reads_a_table_with_float16_hiddens(project, capsys):
    """The README's DuckDB sentence, checked: a float16 column breaks every direct query, and
    the scanner of the other columns it shows works and counts what pylance counts."""
    import duckdb
    import lance
    import pyarrow as pa

    import featurekit
    from conftest import BASE_SPEC, registry_with

    class Hiddens(featurekit.Extractor):
        name = "acme.hiddens"
        inputs = {"text": "string"}

        def output_type(self):
            return pa.list_(pa.float16(), 4)

        def __call__(self, batch):
            return pa.array([[len(t)] * 4 for t in batch.column("text").to_pylist()], pa.list_(pa.float16(), 4))

    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  hiddens:\n    extractor: acme.hiddens\n"
                                                "    inputs: {text: question}\nslices:\n")
                              .replace("text_dense:", "text_dense:\n    split: {fractions: {train: 0.5, val: 0.5}}"))
    assert featurekit.apply(spec, registry=registry_with(Hiddens)).ok
    ds = lance.dataset(project.uri)  # noqa: F841 (the query below names it)
    try:
        duckdb.sql("select count(*) from ds").fetchall()
        raise AssertionError("DuckDB learned float16: update the README")
    except duckdb.NotImplementedException as exc:
        assert "Unsupported Internal Arrow Type e" in str(exc)
    code = textwrap.dedent(python_block_with("duckdb.sql")).replace("specs/data/textvqa_qwen.lance", project.uri)
    capsys.readouterr()
    exec(compile(code, "README:duckdb", "exec"), {})
    shown = capsys.readouterr().out
    counts = lance.dataset(project.uri).to_table(columns=["text_dense"]).column("text_dense").value_counts()
    for row in counts.to_pylist():
        assert f"{row['values'] if row['values'] is not None else 'NULL'}" in shown and str(row["counts"]) in shown
