"""The README's plugin example runs as written, and every hook is documented."""
import re
import sys
import textwrap
import types
from pathlib import Path

import featurekit.plugins.hookspecs as hookspecs

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
    for path in ("specs/easyvqa-qwen.yaml", "examples/make_easyvqa.py", "examples/make_tiny_qwen.py",
                 "specs/textvqa-qwen.yaml", "examples/make_sample.py", "plugins/featurekit-image",
                 "plugins/featurekit-qwen", "constraints.txt"):
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


def test_readme_read_snippet_runs_on_a_table_with_null_hiddens(project, capsys):
    """The README's read recipe on a table where rows outside the slice have NULL hiddens
    (what broke the old recipe: 'zero_copy_only was True')."""
    import lance
    import numpy as np
    import pyarrow as pa

    import featurekit
    from conftest import BASE_SPEC, registry_with

    class Hiddens(featurekit.Extractor):
        name = "acme.hiddens"
        inputs = {"n": "integer"}

        def output_type(self):
            return pa.list_(pa.float16(), 6)

        def output_metadata(self):
            return {"shape": "[3, 2]"}

        def __call__(self, batch):
            return pa.array([[float(n)] * 6 for n in batch.column("n").to_pylist()], pa.list_(pa.float16(), 6))

    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  vision_tower_hiddens:\n    tier: 3\n"
                                                "    extractor: acme.hiddens\n    inputs: {n: question_id}\n"
                                                "    only: text_dense\nslices:\n")
                              .replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >= 8"\n'
                                       '    split: {fractions: {train: 0.5, val: 0.5}}'))
    reg = registry_with(Hiddens)
    assert featurekit.apply(spec, registry=reg).ok
    code = python_block_with("featurekit.read(").replace('"specs/textvqa-qwen.yaml"', "SPEC")
    ns = {"SPEC": featurekit.load_spec(spec, registry=reg)}
    exec(compile(code, "README:read", "exec"), ns)
    t = lance.dataset(project.uri).to_table(filter="text_dense = 'val'", columns=["question_id"])
    want = sorted(t.column("question_id").to_pylist())
    got = ns["out"]
    assert sorted(got["question_id"].tolist()) == want and len(want) > 0
    assert tuple(got["vision_tower_hiddens"].shape) == (len(want), 3, 2)
    ids = got["question_id"].numpy()
    assert np.array_equal(got["vision_tower_hiddens"].numpy()[:, 0, 0], ids.astype(np.float16))
    whole = featurekit.read(ns["SPEC"], ["vision_tower_hiddens"], format="numpy")
    assert whole.skipped == 40 - lance.dataset(project.uri).count_rows(filter="text_dense IS NOT NULL")
    # torch tensors own writable memory (no read-only Arrow buffers underneath)
    got["vision_tower_hiddens"][0, 0, 0] = 7
    got["question_id"][0] = -1
    again = featurekit.read(ns["SPEC"], ["question_id", "vision_tower_hiddens"], slice="text_dense", split="val",
                            format="torch")
    assert -1 not in again["question_id"].tolist() and float(again["vision_tower_hiddens"].min()) >= 0
    # a split the slice does not have is an error, as for the loader
    import pytest

    from featurekit.errors import UsageError
    with pytest.raises(UsageError, match="slice 'text_dense' has no split 'tst' \\(it has: train, val\\)"):
        featurekit.read(ns["SPEC"], ["question_id"], slice="text_dense", split="tst")
