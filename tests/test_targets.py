"""Targets: one spec, a folder and the local engine for development, a bucket for production.

`--target` (or FEATUREKIT_TARGET, else the first target) picks which `table`, `engine` and
`source` paths apply; `validate` checks every target. The production table lives on moto's
S3 server (tests/fktest.py), reached only through the target's storage options.
"""
import json
import uuid

import lance
import pytest
import yaml

import featurekit

ROWS = [{"id": i, "q": "x" * (i % 7 + 1)} for i in range(30)]


def write_project(root, s3=None, prefix="p", **extra_targets):
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "raw" / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "raw" / "sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:5]))
    targets = {"dev": {"table": {"db": "dev-data"}, "engine": "local", "source": {"path": "raw/sample.jsonl"}}}
    if s3 is not None:
        targets["prod"] = {"table": {"db": f"s3://{s3.bucket}/{prefix}", "storage_options": dict(s3.spec_options)},
                           "source": {"path": "raw/all.jsonl"}}
    targets.update(extra_targets)
    spec = {"featurekit": 1, "name": "targets",
            "table": {"db": "data", "name": "t", "fragment_rows": 10},
            "source": {"format": "jsonl", "path": "raw/none-*.jsonl", "key": "id"},
            "features": {"qlen": {"extractor": "text.length", "inputs": {"text": "q"}}},
            "targets": targets}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "spec.yaml"


def lengths(ds) -> dict:
    t = ds.to_table(columns=["id", "qlen"]).sort_by("id")
    return dict(zip(t.column("id").to_pylist(), t.column("qlen").to_pylist()))


def test_target_prod_applies_to_s3_and_dev_to_a_folder_from_one_spec(s3, tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    prefix = f"targets-{uuid.uuid4().hex[:8]}"
    write_project(tmp_path, s3, prefix)

    code, out, err = run_cli("apply", "-q", "spec.yaml", "--target", "prod", cwd=tmp_path)
    assert code == 0, err
    assert "ingested 30 row(s)" in out
    assert not (tmp_path / "dev-data").exists() and not (tmp_path / "data").exists()
    assert any(k.startswith(f"{prefix}/t.lance/_versions/") for k in s3.keys(prefix))
    prod = lance.dataset(f"s3://{s3.bucket}/{prefix}/t.lance", storage_options=s3.options)
    assert lengths(prod) == {r["id"]: len(r["q"]) for r in ROWS}

    code, out, err = run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)  # the first target: dev
    assert code == 0, err
    assert "ingested 5 row(s)" in out
    dev = lance.dataset(str(tmp_path / "dev-data" / "t.lance"))
    assert lengths(dev) == {r["id"]: len(r["q"]) for r in ROWS[:5]}

    # FEATUREKIT_TARGET picks prod for every command, --target overrides it; prod is up to date
    monkeypatch.setenv("FEATUREKIT_TARGET", "prod")
    code, out, _ = run_cli("status", "spec.yaml", "--json", cwd=tmp_path)
    assert code == 0 and json.loads(out)["table"].startswith(f"s3://{s3.bucket}/{prefix}/")
    assert featurekit.plan(tmp_path / "spec.yaml").is_noop
    code, out, _ = run_cli("status", "spec.yaml", "--target", "dev", "--json", cwd=tmp_path)
    assert code == 0 and json.loads(out)["table"] == "dev-data/t.lance"
    assert featurekit.load_spec(tmp_path / "spec.yaml", target="dev").table_uri == str(tmp_path / "dev-data" / "t.lance")
    assert lance.dataset(f"s3://{s3.bucket}/{prefix}/t.lance", storage_options=s3.options).version == prod.version


def test_validate_checks_every_target_and_points_into_the_target(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    write_project(tmp_path, prod={"table": {"name": "bad/name"}, "engine": {"kind": "genva"}})
    code, out, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2
    text = (tmp_path / "spec.yaml").read_text().splitlines()
    name_line = next(i for i, t in enumerate(text, 1) if "name: bad/name" in t)
    kind_line = next(i for i, t in enumerate(text, 1) if "kind: genva" in t)
    assert err.splitlines() == [
        f"spec.yaml:{name_line}:13: targets.prod.table.name: table name 'bad/name' must be 1-128 ASCII letters, "
        "digits, '_', '.' or '-', starting with a letter, digit or '_', without '/' or '..'",
        f"spec.yaml:{kind_line}:7: targets.prod.engine: unknown engine 'genva'; run 'featurekit plugins' to list "
        "the installed engines",
        "2 problems found; nothing was written"]
    # the dev target alone is fine; apply with the default target (dev) works too
    code, out, _ = run_cli("validate", "spec.yaml", "--target", "dev", cwd=tmp_path)
    assert (code, out) == (0, "spec.yaml: ok (1 feature, 0 slices, 0 recipes; target dev)\n")
    assert run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)[0] == 0


def test_every_target_valid_is_one_ok_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    write_project(tmp_path, prod={"table": {"db": "prod-data"}, "source": {"path": "raw/all.jsonl"}})
    code, out, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert (code, out, err) == (0, "spec.yaml: ok (1 feature, 0 slices, 0 recipes; targets dev, prod)\n", "")


def test_an_unknown_target_is_a_usage_error(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    write_project(tmp_path)
    code, _, err = run_cli("plan", "spec.yaml", "--target", "staging", cwd=tmp_path)
    assert code == 2
    assert err == "error: spec.yaml: --target staging: unknown target; the spec's targets: dev\n"
    monkeypatch.setenv("FEATUREKIT_TARGET", "staging")
    code, _, err = run_cli("plan", "spec.yaml", cwd=tmp_path)
    assert (code, err) == (2, "error: spec.yaml: FEATUREKIT_TARGET staging: unknown target; the spec's targets: dev\n")
    assert not (tmp_path / "dev-data").exists()


def test_target_on_a_spec_without_targets(tmp_path, run_cli, monkeypatch):
    spec = yaml.safe_load(write_project(tmp_path).read_text())
    del spec["targets"]
    spec["source"]["path"] = "raw/all.jsonl"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    code, _, err = run_cli("plan", "spec.yaml", "--target", "prod", cwd=tmp_path)
    assert code == 2 and "--target prod: this spec has no targets:" in err
    monkeypatch.setenv("FEATUREKIT_TARGET", "prod")  # set for a shell of several projects: ignored here
    code, out, _ = run_cli("plan", "spec.yaml", cwd=tmp_path)
    assert code == 0 and "data/t.lance" in out


@pytest.mark.parametrize("target,message", [
    ({"tabel": {"db": "x"}}, "targets.prod.tabel: unknown key 'tabel'; valid keys: table, engine, source"),
    ({"source": {"key": "other"}}, "targets.prod.source.key: unknown key 'key'; valid keys: path, files_root"),
])
def test_a_target_is_strict(tmp_path, run_cli, monkeypatch, target, message):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    write_project(tmp_path, prod=target)
    code, _, err = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert code == 2 and message in err, err


def test_a_target_name_is_an_identifier(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("FEATUREKIT_TARGET", raising=False)
    write_project(tmp_path, **{"prod-eu": {"table": {"db": "eu"}}})
    code, _, err = run_cli("validate", "spec.yaml", "--target", "dev", cwd=tmp_path)
    assert code == 2 and "targets: target name 'prod-eu' must be letters, digits and _, not starting with a digit" in err
