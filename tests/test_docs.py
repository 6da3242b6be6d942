"""The README's plugin example runs as written, and every hook is documented."""
import re
import sys
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
