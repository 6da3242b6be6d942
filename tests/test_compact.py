"""Issue 13: `featurekit compact` merges small fragments and removes old versions, keeping
tagged and run-manifest-pinned versions readable; the next apply is a no-op."""
import json

import lance
from fktest import registry_with
from test_efficiency import Counting

import featurekit
from featurekit import compact

SPEC = """\
featurekit: 1
name: compact
table: {db: data, name: t, fragment_rows: 10}
source: {format: jsonl, path: raw/*.jsonl, key: id}
features:
  n:
    extractor: acme.counting
    inputs: {text: text}
  emb:
    extractor: text.length
    inputs: {text: text}
slices:
  s: {where: "n >= 0"}
recipes:
  r:
    trainer: linear_probe
    slice: s
    columns: {features: v, label: text}
    output: runs
"""


def write_rows(root, file, start, n):
    (root / "raw").mkdir(exist_ok=True)
    (root / "raw" / file).write_text("".join(json.dumps({"id": i, "text": f"t{i}", "v": [i, 1.0]}) + "\n"
                                             for i in range(start, start + n)))


def test_compact_keeps_tagged_and_manifest_pinned_versions_and_the_next_apply_is_a_no_op(tmp_path, run_cli):
    reg = registry_with(Counting)
    (tmp_path / "spec.yaml").write_text(SPEC)
    write_rows(tmp_path, "a.jsonl", 0, 25)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    uri = str(tmp_path / "data" / "t.lance")
    tagged = lance.dataset(uri).version
    lance.dataset(uri).tags.create("keep", tagged)
    expected_tagged = lance.dataset(uri, version=tagged).to_table(columns=["id", "n"]).sort_by("id")
    for k in range(3):  # small appends: small fragments and more versions
        write_rows(tmp_path, f"b{k}.jsonl", 100 + 3 * k, 3)
        featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    pinned = lance.dataset(uri).version
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"table": {"uri": uri, "version": pinned}}))
    expected_pinned = lance.dataset(uri, version=pinned).to_table(columns=["id", "n"]).sort_by("id")
    write_rows(tmp_path, "c.jsonl", 200, 2)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    latest = lance.dataset(uri)
    values = latest.to_table(columns=["id", "n", "_fk_n", "s"]).sort_by("id")
    fragments = len(latest.get_fragments())

    project = featurekit.load_spec(tmp_path / "spec.yaml", registry=reg)
    dry = compact(project, older_than="0s", dry_run=True)
    assert lance.dataset(uri).version == latest.version and dry.bytes_freed > 0  # nothing changed
    result = compact(project, older_than="0s")
    assert result.bytes_freed >= dry.bytes_freed > 0  # plus the files compaction replaced
    assert result.fragments_merged >= 4 and result.fragments_after < fragments
    assert result.tags_created == ["featurekit-run-r-20260101-000000"]
    ds = lance.dataset(uri)
    kept = sorted(v["version"] for v in ds.versions())
    assert kept == sorted({tagged, pinned, ds.version}), kept
    assert lance.dataset(uri, version=tagged).to_table(columns=["id", "n"]).sort_by("id").equals(expected_tagged)
    assert lance.dataset(uri, version=pinned).to_table(columns=["id", "n"]).sort_by("id").equals(expected_pinned)
    assert ds.to_table(columns=["id", "n", "_fk_n", "s"]).sort_by("id").equals(values)
    Counting.seen = []
    assert featurekit.apply(tmp_path / "spec.yaml", registry=reg).run is None  # a no-op after compaction
    assert featurekit.plan(tmp_path / "spec.yaml", registry=reg).is_noop
    # a feature still fills by DataReplacement on compacted fragments
    write_rows(tmp_path, "d.jsonl", 300, 4)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    assert Counting.seen == [f"t{i}" for i in range(300, 304)]
    t = lance.dataset(uri).to_table(columns=["text", "n"])
    assert t.column("n").to_pylist() == [len(x) * 7 for x in t.column("text").to_pylist()]


def test_compact_cli_dry_run_and_bad_duration(tmp_path, run_cli, monkeypatch):
    reg = registry_with(Counting)
    import featurekit.plugins.registry
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (tmp_path / "spec.yaml").write_text(SPEC)
    write_rows(tmp_path, "a.jsonl", 0, 5)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    code, out, err = run_cli("compact", "spec.yaml", "--older-than", "0s", "--dry-run", cwd=tmp_path)
    assert code == 0, err
    assert "old versions to remove:" in out and "would free" in out
    code, out, err = run_cli("compact", "spec.yaml", "--older-than", "soon", cwd=tmp_path)
    assert code == 2 and "--older-than 'soon': give a number and a unit" in err


def test_compact_keeps_the_version_a_branch_starts_from_and_a_recipe_pins(tmp_path):
    reg = registry_with(Counting)
    (tmp_path / "spec.yaml").write_text(SPEC)
    write_rows(tmp_path, "a.jsonl", 0, 12)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    uri = str(tmp_path / "data" / "t.lance")
    write_rows(tmp_path, "b.jsonl", 50, 3)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg, branch="exp")  # the branch starts from main's latest
    base = lance.dataset(uri).branches.list()["exp"]["parent_version"]
    on_branch = lance.dataset(str(tmp_path / "data" / "t.lance" / "tree" / "exp")).to_table(columns=["id", "n"])
    write_rows(tmp_path, "c.jsonl", 80, 3)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)
    recipe_pin = lance.dataset(uri).version
    expected_pin = lance.dataset(uri, version=recipe_pin).to_table(columns=["id", "n"]).sort_by("id")
    (tmp_path / "spec.yaml").write_text(SPEC.replace("    output: runs\n",
                                                     f"    output: runs\n    table: {{version: {recipe_pin}}}\n"))
    write_rows(tmp_path, "d.jsonl", 90, 3)
    featurekit.apply(tmp_path / "spec.yaml", registry=reg)

    project = featurekit.load_spec(tmp_path / "spec.yaml", registry=reg)
    result = compact(project, older_than="0s")
    assert result.versions_kept[base] == "branch exp starts here"
    assert f"featurekit-recipe-r-v{recipe_pin}" in result.tags_created
    ds = lance.dataset(uri)
    assert sorted(v["version"] for v in ds.versions()) == sorted({base, recipe_pin, ds.version})
    assert lance.dataset(uri, version=recipe_pin).to_table(columns=["id", "n"]).sort_by("id").equals(expected_pin)
    # the branch still reads every row, those it shares with main included
    branch = lance.dataset(str(tmp_path / "data" / "t.lance" / "tree" / "exp")).to_table(columns=["id", "n"])
    assert branch.sort_by("id").equals(on_branch.sort_by("id"))
    assert branch.num_rows == 15
