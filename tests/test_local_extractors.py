"""Extractors from plain functions in a spec's `plugins:` files (`@featurekit.extractor`).

They register through the same hook as an installed plugin's extractors (so `featurekit plugins`
lists them and validate checks them like any other), run in worker processes and on the
Geneva engine, and their fingerprint covers their code: a real edit makes `plan` say the
feature is stale because its code changed; a comment, formatting or docstring edit does not.
Values are checked against Python computing the same thing row by row.
"""
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap

import lance
import pyarrow as pa
import pytest
import yaml

import featurekit

FEATURES_PY = '''\
import os

import pyarrow as pa
import pyarrow.compute as pc

import featurekit

VOWELS = "aeiou"


def unrelated():
    return 1


@featurekit.extractor(inputs={"text": "string"}, output=pa.int32())
def vowels(text, *, letters: str = VOWELS, weight: int = 1):
    """Vowels in each text, times weight."""
    return pa.array([weight * sum(c in letters for c in (t or "")) for t in text.to_pylist()], pa.int32())


@featurekit.extractor(inputs={"text": "string"}, output={"upper": pa.string(), "words": pa.int64()},
                      name="shapes.of_text")
def shape(text):
    return {"upper": pc.utf8_upper(text), "words": pc.list_value_length(pc.utf8_split_whitespace(text))}


@featurekit.extractor(inputs={"n": "integer"}, output=pa.int64())
def pid(n):
    return pa.array([os.getpid()] * len(n), pa.int64())
'''

TEXTS = ["a banana split", "why", "", None, "queue of ideas", "rhythm and blues", "aeiou aeiou"]
ROWS = [{"id": i, "q": TEXTS[i % len(TEXTS)]} for i in range(40)]


def vowels_of(text, letters="aeiou", weight=1):
    return weight * sum(c in letters for c in (text or ""))


def write_project(root, features=None, code=FEATURES_PY, plugins=("features.py",), engine="local",
                  fragment_rows=10):
    root.mkdir(parents=True, exist_ok=True)
    (root / "features.py").write_text(code)
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    features = features or {
        "v": {"extractor": "features.vowels", "inputs": {"text": "q"}, "params": {"weight": 2}},
        "s": {"extractor": "shapes.of_text", "inputs": {"text": "q"}, "outputs": {"upper": "q_upper", "words": "q_words"}},
        "upper_len": {"extractor": "text.length", "inputs": {"text": "q_upper"}},
    }
    spec = {"featurekit": 1, "name": "local", "plugins": list(plugins),
            "table": {"db": "data", "name": "t", "fragment_rows": fragment_rows}, "engine": engine,
            "source": {"format": "jsonl", "path": "rows.jsonl", "key": "id"}, "features": features}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "spec.yaml"


def table(spec) -> pa.Table:
    return lance.dataset(str(spec.parent / "data" / "t.lance")).to_table().sort_by("id")


def featurekit_metadata(field) -> dict:
    return {k: v for k, v in (field.metadata or {}).items() if k.startswith(b"featurekit.")}  # Geneva adds its own


def edit(spec, old: str, new: str) -> None:
    path = spec.parent / "features.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_local_function_feature_applies_like_any_extractor(tmp_path, run_cli):
    spec = write_project(tmp_path)
    code, out, err = run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    t = table(spec)
    texts = t.column("q").to_pylist()
    assert t.column("v").to_pylist() == [vowels_of(q, weight=2) for q in texts]
    assert t.column("q_upper").to_pylist() == [None if q is None else q.upper() for q in texts]
    assert t.column("q_words").to_pylist() == [None if q is None else len(q.split(" ")) for q in texts]
    assert t.column("upper_len").to_pylist() == [None if q is None else len(q) for q in texts]
    md = {k.decode(): v.decode() for k, v in t.schema.field("v").metadata.items()}
    assert md["featurekit.extractor"] == "features.vowels" and md["featurekit.params"] == '{"weight": 2}'
    assert md["featurekit.version"].startswith("code:")
    assert pa.types.is_int32(t.schema.field("v").type) and pa.types.is_int64(t.schema.field("q_words").type)
    assert featurekit.plan(spec).is_noop

    code, out, _ = run_cli("plugins", "spec.yaml", "--json", cwd=tmp_path)
    local = [p for p in json.loads(out)["plugins"] if p["name"] == "features.py"]
    assert code == 0 and local == [{"name": "features.py", "distribution": "local file", "version": None,
                                    "extractors": ["features.pid", "features.vowels", "shapes.of_text"]}]
    code, out, _ = run_cli("plugins", "spec.yaml", cwd=tmp_path)
    assert "features.py (local file)\n  extractors: features.pid, features.vowels, shapes.of_text" in out


def test_editing_the_body_plans_stale_with_the_reason_and_a_comment_does_not(tmp_path):
    spec = write_project(tmp_path)
    assert featurekit.apply(spec).ok

    # comments, formatting, the docstring, an unrelated function: nothing to recompute
    edit(spec, '    """Vowels in each text, times weight."""\n',
         '    """Counts vowels (documented differently)."""\n    # a comment explaining the count\n')
    edit(spec, "for t in text.to_pylist()], pa.int32())", "for t in text.to_pylist()],\n                    pa.int32())  # ok")
    edit(spec, "def unrelated():\n    return 1", "def unrelated():\n    return 2")
    plan = featurekit.plan(spec)
    assert plan.is_noop, plan.render()

    # the body: stale, and plan says it is the function's code
    edit(spec, "weight * sum(", "weight * 10 * sum(")
    plan = featurekit.plan(spec)
    step = plan.step("v")
    line = (tmp_path / "features.py").read_text().splitlines().index("@featurekit.extractor(inputs={\"text\": \"string\"}, "
                                                                      "output=pa.int32())") + 1
    assert step.action == "recompute"
    assert len(step.reasons) == 1 and step.reasons[0].startswith(f"code changed: function vowels (features.py:{line}), code:")
    assert "code changed: function vowels" in plan.render()
    assert plan.step("s").action == "none" and plan.step("upper_len").action == "none"
    assert featurekit.apply(spec).ok
    assert table(spec).column("v").to_pylist() == [20 * vowels_of(q) for q in table(spec).column("q").to_pylist()]
    assert featurekit.plan(spec).is_noop

    # a module-level constant the function uses is part of its code
    edit(spec, 'VOWELS = "aeiou"', 'VOWELS = "aeiouy"')
    assert featurekit.plan(spec).step("v").action == "recompute"
    assert featurekit.apply(spec).ok
    assert table(spec).column("v").to_pylist() == [20 * vowels_of(q, "aeiouy") for q in table(spec).column("q").to_pylist()]


def test_local_functions_run_in_worker_processes(tmp_path):
    features = {"v": {"extractor": "features.vowels", "inputs": {"text": "q"}, "params": {"letters": "ab"},
                      "resources": {"workers": 2, "timeout": 60}},
                "p": {"extractor": "features.pid", "inputs": {"n": "id"}, "resources": {"workers": 2, "timeout": 60}}}
    spec = write_project(tmp_path, features)
    result = featurekit.apply(spec)
    assert result.ok
    t = table(spec)
    assert t.column("v").to_pylist() == [vowels_of(q, "ab") for q in t.column("q").to_pylist()]
    pids = set(t.column("p").to_pylist())
    assert os.getpid() not in pids and len(pids) >= 1  # computed by the pool's processes, not this one


def test_the_class_pickles_as_its_source_and_is_rebuilt_without_the_file(tmp_path):
    """What a spawned worker or a Ray worker on another machine does: no spec folder, no file."""
    spec = write_project(tmp_path)
    project = featurekit.load_spec(spec)
    f = project.features["v"]
    blobs = [pickle.dumps((f.extractor_cls, f.params))]
    try:
        import cloudpickle  # how Ray ships Geneva's UDF
        blobs.append(cloudpickle.dumps((f.extractor_cls, f.params)))
    except ImportError:
        pass
    (tmp_path / "features.py").unlink()
    script = textwrap.dedent("""
        import pickle, sys
        import pyarrow as pa
        cls, params = pickle.loads(sys.stdin.buffer.read())
        out = cls(params)(pa.record_batch([pa.array(["banana", None, "queue"])], names=["text"]))
        print(cls.name, cls.version, params.weight, out.to_pylist())
    """)
    for blob in blobs:
        run = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert run.returncode == 0, run.stderr.decode()
        assert run.stdout.decode().split(" ", 3) == ["features.vowels", f.extractor_cls.version, "2", "[6, 0, 8]\n"]


BROKEN = [
    ("missing-file", None, ["nope.py"], "nope.vowels",
     ["spec.yaml:{plugin}:3: plugins[0]: nope.py: no such file (looked for nope.py); plugins: paths are relative "
      "to the spec's folder",
      "spec.yaml:{extractor}:16: features.v.extractor: unknown extractor 'nope.vowels' (plugin 'nope' failed to "
      "load: nope.py:1: no such file)"]),
    ("syntax-error", "import featurekit\n\ndef f(:\n    pass\n", None, "features.vowels",
     ["features.py:3:7: plugins[0]: syntax error: invalid syntax",
      "spec.yaml:{extractor}:16: features.v.extractor: unknown extractor 'features.vowels' (plugin 'features' "
      "failed to load: features.py:3: syntax error: invalid syntax)"]),
    ("bare-decorator", "import featurekit\n\n\n@featurekit.extractor\ndef vowels(text):\n    return text\n", None,
     "features.vowels",
     ["features.py:4:1: plugins[0]: running it failed: write @featurekit.extractor(inputs={...}, output=<Arrow "
      "type>), with its arguments: it declares the inputs' and the output's types"]),
    ("params-not-keyword-only", "import pyarrow as pa\nimport featurekit\n\n\n"
     "@featurekit.extractor(inputs={'text': 'string'}, output=pa.int32())\ndef vowels(text, weight=1):\n"
     "    return text\n", None, "features.vowels",
     ["features.py:5:1: plugins[0]: running it failed: @featurekit.extractor on 'vowels': its positional "
      "parameters (text, weight) must be the inputs (text); make params keyword-only: def vowels(text, *, ...)"]),
    ("output-not-arrow", "import featurekit\n\n\n@featurekit.extractor(inputs={'text': 'string'}, output=int)\n"
     "def vowels(text):\n    return text\n", None, "features.vowels",
     ["features.py:4:1: plugins[0]: running it failed: @featurekit.extractor on 'vowels': output must be an "
      "Arrow type (output=pa.int32(), or output={'a': pa.int32(), 'b': pa.string()}), not <class 'int'>"]),
    ("import-error", "import featurekit\nimport not_a_module_here\n", None, "features.vowels",
     ["features.py:2:1: plugins[0]: running it failed: ModuleNotFoundError: No module named 'not_a_module_here'"]),
    ("exit-in-file", "import sys\nsys.exit(3)\n", None, "features.vowels",
     ["features.py:2:1: plugins[0]: running it failed: SystemExit: 3"]),
    ("name-clash", "import pyarrow as pa\nimport featurekit\n\n\n"
     "@featurekit.extractor(inputs={'text': 'string'}, output=pa.int32(), name='text.length')\n"
     "def vowels(text):\n    return text\n", None, "text.length",
     ["features.py:5:1: plugins[0]: extractor 'text.length' (function vowels) is already registered by plugin "
      "'featurekit.builtin.text'; give it another name with @featurekit.extractor(name=...)"]),
    ("param-not-validatable", "import pyarrow as pa\nimport featurekit\n\n\n"
     "@featurekit.extractor(inputs={'text': 'string'}, output=pa.int32())\n"
     "def vowels(text, *, like: pa.Array = None):\n    return text\n", None, "features.vowels",
     ["features.py:5:1: plugins[0]: @featurekit.extractor on 'vowels': its keyword-only parameters cannot be "
      "params: Unable to generate pydantic-core schema for <class 'pyarrow.lib.Array'>. Set "
      "`arbitrary_types_allowed=True` in the model_config to ignore this error or implement "
      "`__get_pydantic_core_schema__` on your type to fully support it."]),
    ("not-python", None, ["features.txt"], "features.vowels",
     ["spec.yaml:{plugin}:3: plugins[0]: 'features.txt' is not a .py file; plugins: lists Python files holding "
      "@featurekit.extractor functions",
      "spec.yaml:{extractor}:16: features.v.extractor: unknown extractor 'features.vowels'; run 'featurekit "
      "plugins' to list the installed extractors"]),
]


@pytest.mark.parametrize("code,plugins,extractor,expected", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_plugin_file_is_a_spec_error_at_its_place(tmp_path, run_cli, code, plugins, extractor, expected):
    features = {"v": {"extractor": extractor, "inputs": {"text": "q"}}}
    spec = write_project(tmp_path, features, code=code or FEATURES_PY, plugins=plugins or ["features.py"])
    lines = spec.read_text().splitlines()
    at = {"plugin": lines.index("plugins:") + 2, "extractor": lines.index(f"    extractor: {extractor}") + 1}
    code, out, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2
    got = err.splitlines()
    assert got[:len(expected)] == [e.replace("{plugin}", str(at["plugin"])).replace("{extractor}", str(at["extractor"]))
                                   for e in expected]
    if expected[0].startswith("features.py") and extractor.startswith("features."):  # the file failed to load:
        assert got[1].endswith(f"(plugin 'features' failed to load: {expected[0].split(': ', 1)[0][:-2]}: "
                               f"{expected[0].split(': ', 2)[2]})")  # its features say why
    assert got[-1].endswith("found; nothing was written")
    assert code == run_cli("apply", "spec.yaml", cwd=tmp_path)[0] and not (tmp_path / "data").exists()


def test_params_are_validated_like_any_extractors(tmp_path, run_cli):
    features = {"v": {"extractor": "features.vowels", "inputs": {"text": "q"}, "params": {"weight": "heavy", "lettres": "x"}},
                "w": {"extractor": "features.vowels", "inputs": {"txt": "q"}}}
    write_project(tmp_path, features)
    code, _, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [
        "spec.yaml:20:15: features.v.params.weight: input should be a valid integer, unable to parse string as an "
        "integer (got 'heavy')",
        "spec.yaml:21:7: features.v.params.lettres: unknown key 'lettres'; valid keys: letters, weight",
        "spec.yaml:25:7: features.w.inputs: features.vowels needs input 'text' (string); add 'text: <column>'",
        "spec.yaml:25:7: features.w.inputs.txt: features.vowels has no input 'txt'; its inputs: text",
        "4 problems found; nothing was written"]


def test_two_files_cannot_define_one_name(tmp_path, run_cli):
    write_project(tmp_path)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "features.py").write_text(FEATURES_PY)
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    spec["plugins"].append("more/features.py")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    code, _, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2
    assert err.splitlines()[0] == ("more/features.py:15:1: plugins[1]: extractor 'features.vowels' (function vowels) "
                                   "is already registered by plugin file 'features.py'; give it another name with "
                                   "@featurekit.extractor(name=...)")


def test_the_decorated_function_stays_a_function():
    @featurekit.extractor(inputs={"text": "string"}, output=pa.int64())
    def length(text, *, plus: int = 0):
        return pa.array([len(t) + plus for t in text.to_pylist()])

    assert length(pa.array(["ab", "c"]), plus=1).to_pylist() == [3, 2]


@pytest.mark.slow
def test_a_local_function_feature_applies_on_geneva_as_on_the_local_engine(tmp_path, monkeypatch):
    """Functions from the spec's own file run on Geneva's workers (v and s: one wave, one job at a time on 2 CPUs),
    and a code change there makes the feature stale and recomputed. featurekit's Ray is private
    (address="local"), so this test needs no xdist group: it may run beside the Geneva modules."""
    pytest.importorskip("geneva")
    pytest.importorskip("featurekit_geneva")
    monkeypatch.setenv("FEATUREKIT_PLUGINS", "featurekit_geneva")  # the engine; entry points are off in tests
    features = {"v": {"extractor": "features.vowels", "inputs": {"text": "q"}, "params": {"weight": 3}},
                "s": {"extractor": "shapes.of_text", "inputs": {"text": "q"}}}
    local = write_project(tmp_path / "local", features, fragment_rows=len(ROWS))
    gen = write_project(tmp_path / "geneva", features, engine={"kind": "geneva", "concurrency": 1, "local_cpus": 2},
                        fragment_rows=len(ROWS))  # one fragment: one writer a job
    assert featurekit.apply(local).ok
    import ray

    from featurekit_geneva.cluster import HEAD_RESOURCE, local_memory, worker_runtime_env
    # one Ray for both Geneva applies (the engine uses a Ray this process started, and leaves it
    # running): a Ray start and a fresh Ray's slower first job, once instead of twice
    ray.init(address="local", num_cpus=2, resources={HEAD_RESOURCE: 1}, include_dashboard=False, log_to_driver=False,
             **local_memory(), runtime_env=worker_runtime_env())
    try:
        _geneva_applies_as_local(local, gen)
    finally:
        ray.shutdown()


def _geneva_applies_as_local(local, gen):
    result = featurekit.apply(gen)
    assert result.ok and result.run.features["v"].jobs  # computed by a Geneva backfill
    a, b = table(local), table(gen)
    assert b.column("v").to_pylist() == [vowels_of(q, weight=3) for q in b.column("q").to_pylist()]
    for name in a.schema.names:
        if not name.startswith("_fkin_"):  # input keys: kept by the local engine only
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
            assert featurekit_metadata(a.schema.field(name)) == featurekit_metadata(b.schema.field(name)), name
    edit(gen, "weight * sum(", "(weight + 1) * sum(")
    assert featurekit.plan(gen).step("v").reasons[0].startswith("code changed: function vowels")
    assert featurekit.apply(gen).ok
    assert table(gen).column("v").to_pylist() == [vowels_of(q, weight=4) for q in b.column("q").to_pylist()]


def test_the_json_schema_takes_local_names_only_with_plugin_files(run_cli):
    jsonschema = pytest.importorskip("jsonschema")
    code, out, _ = run_cli("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    spec = {"featurekit": 1, "name": "x", "table": {"db": "data", "name": "t"},
            "features": {"v": {"extractor": "features.vowels", "inputs": {"text": "q"}}}}
    errors = [e.message for e in validator.iter_errors(spec)]
    assert len(errors) == 1 and errors[0].startswith("'features.vowels' is not one of ['sql', 'text.count'")
    assert list(validator.iter_errors({**spec, "plugins": ["features.py"]})) == []


def test_a_function_named_without_its_file_is_suggested_with_it(tmp_path, run_cli):
    """A local function's name is `<file stem>.<function>`: the bare function name gets that suggested."""
    spec = write_project(tmp_path, {"v": {"extractor": "vowels", "inputs": {"text": "q"}}})
    line = spec.read_text().splitlines().index("    extractor: vowels") + 1
    code, _, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2
    assert err.splitlines()[0] == (f"spec.yaml:{line}:16: features.v.extractor: unknown extractor 'vowels'; "
                                   "did you mean 'features.vowels'?")


SCALAR_PY = '''\
import pyarrow as pa

import featurekit


@featurekit.extractor(inputs={"text": "string"}, output=pa.int64())
def total(text):
    return sum(len(t or "") for t in text.to_pylist())
'''


def test_a_function_returning_one_value_for_its_whole_column_says_it_gets_columns(tmp_path, run_cli):
    write_project(tmp_path, {"t": {"extractor": "features.total", "inputs": {"text": "q"}}}, code=SCALAR_PY)
    code, out, err = run_cli("apply", "spec.yaml", cwd=tmp_path)
    assert code == 1
    assert re.search(r"error: feature 't': features.total returned a single int, not one value per row: an "
                     r"extractor receives whole input columns \(\d+ rows in this call\) and returns an array of "
                     r"one value per row\n", err), err
    t = table(tmp_path / "spec.yaml")
    assert "t" not in t.schema.names or t.column("t").null_count == len(ROWS)  # nothing stored as a value


def test_status_says_why_the_last_apply_failed_a_feature_until_it_is_fresh(tmp_path, run_cli):
    """A function breaking its contract fails the whole feature: `status` (and --json) says why,
    from the apply log, until an apply makes the feature fresh."""
    spec = write_project(tmp_path, {"t": {"extractor": "features.total", "inputs": {"text": "q"}}}, code=SCALAR_PY)
    assert run_cli("apply", "spec.yaml", cwd=tmp_path)[0] == 1
    code, out, _ = run_cli("status", "spec.yaml", cwd=tmp_path)
    assert code == 0
    assert re.search(r"\n  t +incomplete +computed 0, failed 0, pending 40\n      the last apply failed it: "
                     r"features.total returned a single int, not one value per row", out), out
    code, out, _ = run_cli("status", "spec.yaml", "--json", cwd=tmp_path)
    (t,) = [f for f in json.loads(out)["features"] if f["name"] == "t"]
    assert t["last_error"].startswith("feature 't': features.total returned a single int")
    edit(spec, "return sum(len(t or \"\") for t in text.to_pylist())", "return [len(t or \"\") for t in text.to_pylist()]")
    assert run_cli("apply", "spec.yaml", cwd=tmp_path)[0] == 0
    code, out, _ = run_cli("status", "spec.yaml", "--json", cwd=tmp_path)
    (t,) = [f for f in json.loads(out)["features"] if f["name"] == "t"]
    assert (t["state"], t["last_error"]) == ("fresh", None)
