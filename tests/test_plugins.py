import subprocess
import sys
import types

import pyarrow as pa
import pytest
from fktest import BASE_SPEC, registry_with

import featurekit
from featurekit.plugins.discovery import make_plugin_manager
from featurekit.plugins.registry import Registry


class Vowels(featurekit.Extractor):
    name = "acme.vowels"
    inputs = {"text": pa.string()}

    class Params(featurekit.Extractor.Params):
        letters: str = "aeiou"

    def output_type(self):
        return pa.int32()

    def __call__(self, batch):
        return pa.array([sum(c in self.params.letters for c in (t or "")) for t in
                         batch.column("text").to_pylist()], pa.int32())


def plugin_module(name, *classes):
    mod = types.ModuleType(name)
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: list(classes))
    return mod


def test_builtins_register_through_the_hooks():
    reg = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False))
    assert reg.names("extractor") == ["sql", "text.count", "text.length", "text.question_type", "text.word_count"]
    assert reg.names("trainer") == ["linear_probe"]
    assert reg.names("source") == ["csv", "hf", "jsonl", "lance", "parquet", "tsv"]
    assert reg.names("engine") == ["local"]
    assert reg.get("extractor", "text.length").plugin == "featurekit.builtin.text"


def test_inline_plugin_validates_in_a_spec(project):
    reg = registry_with(Vowels, name="acme")
    spec = project.write_spec(BASE_SPEC.replace("extractor: text.length", "extractor: acme.vowels"))
    proj = featurekit.load_spec(spec, registry=reg)
    assert proj.features["question_length"].extractor_cls is Vowels


def test_two_plugins_claiming_one_name_is_an_error_naming_both(project):
    class Other(Vowels):
        pass

    reg = Registry.from_plugin_manager(make_plugin_manager(
        plugins=[plugin_module("acme", Vowels), plugin_module("copycat", Other)]))
    with pytest.raises(featurekit.PluginError) as info:
        featurekit.load_spec(project.spec, registry=reg)
    assert str(info.value) == ("extractor 'acme.vowels' is registered by two plugins: 'acme' and 'copycat'; "
                               "uninstall or rename one")


def test_a_plugin_that_fails_to_import_is_reported_and_breaks_nothing(project, run_cli, monkeypatch, tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "broken_plugin")
    code, out, err = run_cli("--help")
    assert code == 0 and "validate" in out
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 0
    code, out, err = run_cli("plugins")
    assert code == 0
    assert "broken_plugin: FAILED to load: ImportError: needs torch" in err


def test_unknown_extractor_mentions_the_plugin_that_failed(project, run_cli, monkeypatch, tmp_path):
    (tmp_path / "acme.py").write_text("raise ImportError('No module named torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "acme")
    project.write_spec(BASE_SPEC.replace("extractor: text.length", "extractor: acme.vowels"))
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines()[0] == (
        "spec.yaml:12:16: features.question_length.extractor: unknown extractor 'acme.vowels' "
        "(plugin 'acme' failed to load: ImportError: No module named torch)")


def test_plugins_json_lists_builtins(run_cli):
    import json
    code, out, err = run_cli("plugins", "--json")
    data = json.loads(out)
    text = next(p for p in data["plugins"] if p["name"] == "featurekit.builtin.text")
    assert text["extractors"] == ["text.count", "text.length", "text.question_type", "text.word_count"]
    assert data["failed"] == [] and data["conflicts"] == []


PLUGIN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "featurekit-acme"
version = "0.3.0"
dependencies = ["featurekit"]

[project.entry-points.featurekit]
acme = "featurekit_acme"
"""

PLUGIN_MODULE = '''\
import pyarrow as pa
import featurekit


class VowelCount(featurekit.Extractor):
    name = "acme.vowels"
    version = "1"
    inputs = {"text": pa.string()}

    class Params(featurekit.Extractor.Params):
        letters: str = "aeiou"

    def output_type(self):
        return pa.int32()

    def __call__(self, batch):
        return pa.array([sum(c in self.params.letters for c in (t or "")) for t in
                         batch.column("text").to_pylist()], pa.int32())


@featurekit.hookimpl
def featurekit_register_extractors():
    return [VowelCount]
'''


def test_an_external_distribution_installed_with_pip_is_found_through_its_entry_point(project, tmp_path):
    """The one test that looks at real entry points: build, install, use, uninstall."""
    dist = tmp_path / "featurekit-acme"
    (dist / "featurekit_acme").mkdir(parents=True)
    (dist / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (dist / "featurekit_acme" / "__init__.py").write_text(PLUGIN_MODULE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(dist)], check=True)
    try:
        env = {k: v for k, v in __import__("os").environ.items() if k != "FEATUREKIT_DISABLE_PLUGIN_AUTOLOAD"}
        out = subprocess.run([sys.executable, "-m", "featurekit", "plugins"], capture_output=True, text=True,
                             env=env, check=True).stdout
        assert "acme (featurekit-acme 0.3.0)\n  extractors: acme.vowels" in out
        project.write_spec(BASE_SPEC.replace("extractor: text.length", "extractor: acme.vowels"))
        res = subprocess.run([sys.executable, "-m", "featurekit", "validate", "spec.yaml"], cwd=project.root,
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        res = subprocess.run([sys.executable, "-m", "featurekit", "apply", "-q", "spec.yaml"], cwd=project.root,
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        values = project.dataset().to_table(columns=["question", "question_length"]).to_pylist()
        assert all(r["question_length"] == sum(c in "aeiou" for c in r["question"]) for r in values)
    finally:
        subprocess.run(pip + ["uninstall", "-y", "featurekit-acme"], check=True)


def test_a_release_that_adds_a_defaulted_param_recomputes_nothing(project):
    """The fingerprint covers params as written: a new param with a default does not make
    every stored row stale."""
    from pydantic import Field

    class Newer(Vowels):
        class Params(Vowels.Params):
            ignore_case: bool = Field(False, description="added in a later release")

    spec = project.write_spec(BASE_SPEC.replace("extractor: text.length", "extractor: acme.vowels"))
    assert featurekit.apply(spec, registry=registry_with(Vowels, name="acme")).ok
    plan = featurekit.plan(spec, registry=registry_with(Newer, name="acme"))
    assert plan.step("question_length").action == "none"


def test_runtime_params_are_recorded_but_not_fingerprinted(project):
    class Threaded(Vowels):
        class Params(Vowels.Params):
            threads: int = featurekit.runtime_field(1, description="how many threads, not what they compute")

    reg = registry_with(Threaded, name="acme")
    spec = project.write_spec(BASE_SPEC.replace("extractor: text.length", "extractor: acme.vowels"))
    assert featurekit.apply(spec, registry=reg).ok
    spec = project.write_spec(BASE_SPEC.replace("extractor: text.length",
                                                "extractor: acme.vowels\n    params: {threads: 4}"))
    step = featurekit.plan(spec, registry=reg).step("question_length")
    assert step.action == "none" and "threads (default) -> 4" in step.reasons[0]
    spec = project.write_spec(BASE_SPEC.replace("extractor: text.length",
                                                "extractor: acme.vowels\n    params: {letters: ae}"))
    assert featurekit.plan(spec, registry=reg).step("question_length").action == "recompute"
