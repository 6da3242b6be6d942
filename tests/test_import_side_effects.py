"""Importing featurekit changes nothing in the importing program: no environment variable,
no warning filter. The `featurekit` command decides what its users see (Lance's per-commit
log line is hidden there), and Lance's fork warning is silenced only around the fork."""
import json
import os
import subprocess
import sys
import textwrap

CHECK_IMPORT = """
import json, os, warnings
import numpy, pyarrow, lance, pydantic, yaml  # libraries' own filters (numpy adds some) are theirs
env, filters = dict(os.environ), list(warnings.filters)
import featurekit, featurekit.api, featurekit.table.metadata, featurekit.engine.local, featurekit.training.dataloader, featurekit.table.handle
featurekit.plan  # the lazily imported API
print(json.dumps({"env": {k: v for k, v in os.environ.items() if env.get(k) != v},
                  "filters": len(warnings.filters) - len(filters)}))
"""

APPLY_WITH_WORKERS = """
import json, sys, warnings
import featurekit
filters = list(warnings.filters)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    inner = list(warnings.filters)
    result = featurekit.apply(sys.argv[1])
    assert list(warnings.filters) == inner
print(json.dumps({"ok": result.ok, "workers": result.run.features["slow"].computed,
                  "warnings": [str(w.message) for w in seen], "filters_same": list(warnings.filters) == filters}))
"""


def _run(code: str, *args: str, cwd=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LANCE_LOG"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_featurekit_sets_no_environment_variable_and_no_warning_filter():
    assert _run(CHECK_IMPORT) == {"env": {}, "filters": 0}


def test_worker_processes_fork_without_lances_warning_and_without_a_global_filter(tmp_path):
    plugin = tmp_path / "slowplug.py"
    plugin.write_text(textwrap.dedent("""
        import pyarrow as pa
        import featurekit

        class Slow(featurekit.Extractor):
            name = "slow.len"
            inputs = {"text": "string"}
            def output_type(self):
                return pa.int64()
            def __call__(self, batch):
                return pa.array([len(t) for t in batch.column("text").to_pylist()], pa.int64())

        @featurekit.hookimpl
        def featurekit_register_extractors():
            return [Slow]
    """))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"id": i, "q": "x" * i}) + "\n" for i in range(40)))
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        featurekit: 1
        name: forks
        table: {db: data, name: t, fragment_rows: 10}
        source: {format: jsonl, path: rows.jsonl, key: id}
        features:
          slow: {extractor: slow.len, inputs: {text: q}, resources: {workers: 2}}
    """))
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import os; os.environ['FEATUREKIT_PLUGINS'] = 'slowplug'\n"
    out = _run(code + APPLY_WITH_WORKERS, str(tmp_path / "spec.yaml"), cwd=tmp_path)
    assert out["ok"] and out["workers"] == 40
    assert not [w for w in out["warnings"] if "fork" in w]
    assert out["filters_same"]


def test_the_command_hides_lances_per_commit_warning(project):
    env = {k: v for k, v in os.environ.items() if k != "LANCE_LOG"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    out = subprocess.run([sys.executable, "-m", "featurekit", "apply", "-q", "spec.yaml"], capture_output=True,
                         text=True, env=env, cwd=project.root, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "DataReplacement" not in out.stderr and "WARN" not in out.stderr
