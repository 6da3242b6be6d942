"""Experiments on Lance branches and tags: `apply --branch` writes only the variant's columns
under ``tree/<branch>`` and leaves main alone; `--tag` names a version; recipes pin one."""
import json
import os

import lance
import pyarrow as pa
import pytest
from fktest import BASE_SPEC, color_embed_extractor, registry_with

import featurekit

VARIANT = BASE_SPEC.replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >= 4"').replace(
    "features:\n", "features:\n  word_count:\n    extractor: text.word_count\n    inputs: {text: question}\n")


def listing(root: str) -> dict[str, int]:
    """Every file of the table but the branch's own (tree/) and the refs, with its size."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if not rel.startswith(("tree" + os.sep, "_refs" + os.sep)):
                out[rel] = os.path.getsize(path)
    return out


def test_a_branch_apply_leaves_main_untouched_and_writes_only_the_changed_columns(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    before = listing(project.uri)
    main = lance.dataset(project.uri)
    version, schema, values = main.version, main.schema, main.to_table().sort_by("question_id")
    project.write_spec(VARIANT, name="variant.yaml")

    code, out, err = run_cli("apply", "variant.yaml", "--branch", "exp", cwd=project.root)
    assert code == 0, err
    assert f"created branch exp from main version {version}" in out
    assert "word_count: 40 computed" in out and "question_length" not in out  # fresh on the branch: not redone

    assert listing(project.uri) == before                         # main's data files, manifests: the same
    again = lance.dataset(project.uri)
    assert again.version == version and again.schema.equals(schema, check_metadata=True)
    assert again.to_table().sort_by("question_id").equals(values)
    assert "word_count" not in again.schema.names

    branch = lance.dataset(f"{project.uri}/tree/exp")
    got = branch.to_table(columns=["question", "word_count"])
    assert got.column("word_count").to_pylist() == [len(q.split()) for q in got.column("question").to_pylist()]
    changed = {branch.lance_schema.field(c).id() for c in ["word_count", "_fk_word_count", "text_dense", "_fk_text_dense"]}
    own = [d for frag in branch.get_fragments() for d in frag.data_files() if d.base_id is None]
    assert own and all(set(d.fields) <= changed for d in own)    # only the variant's columns were written
    assert sorted(os.listdir(f"{project.uri}/tree/exp/data")) == sorted(d.path for d in own)

    code, out, _ = run_cli("status", "variant.yaml", "--branch", "exp", cwd=project.root)
    assert code == 0 and "(branch exp)" in out and "word_count" in out and "pending 0" in out
    code, out, _ = run_cli("plan", "variant.yaml", "--branch", "exp", cwd=project.root)
    assert code == 0 and "word_count" in out
    code, out, _ = run_cli("slice", "variant.yaml", "text_dense", "--json", "--branch", "exp", cwd=project.root)
    on_branch = sum(json.loads(out)["splits"].values())
    code, out, _ = run_cli("slice", "spec.yaml", "text_dense", "--json", cwd=project.root)
    assert on_branch > sum(json.loads(out)["splits"].values())   # the looser filter, on the branch only

    code, out, _ = run_cli("log", "variant.yaml", "--branch", "exp", cwd=project.root)
    assert code == 0 and out.splitlines()[0].endswith("branch exp")   # the branch's apply, newest first
    assert "branch exp" not in run_cli("log", "spec.yaml", cwd=project.root)[1]

    code, out, _ = run_cli("branches", "spec.yaml", cwd=project.root)
    assert code == 0
    assert f"branch exp: from main version {version}, now version {branch.version}, 40 rows" in out
    assert "  feature word_count: only on the branch" in out
    assert '  slice text_dense: fingerprint differs: definition.where "ocr_token_count >= 8" -> ' \
           '"ocr_token_count >= 4"' in out
    assert "question_length" not in out

    loader = featurekit.dataloader(project.root / "variant.yaml", columns=["word_count"], branch="exp",
                                   batch_size=8, shuffle=False)
    assert sum(len(b["word_count"]) for b in loader) == 40
    with pytest.raises(featurekit.UsageError, match="no column 'word_count'"):
        featurekit.dataloader(project.root / "variant.yaml", columns=["word_count"])


def test_a_second_branch_apply_continues_the_branch(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    project.write_spec(VARIANT, name="variant.yaml")
    assert run_cli("apply", "-q", "variant.yaml", "--branch", "exp", cwd=project.root)[0] == 0
    project.add_rows(10, start=40)
    before = listing(project.uri)
    code, out, err = run_cli("apply", "variant.yaml", "--branch", "exp", cwd=project.root)
    assert code == 0, err
    assert "created branch" not in out and "ingested 10 row(s)" in out and "word_count: 10 computed" in out
    assert listing(project.uri) == before
    assert lance.dataset(project.uri).count_rows() == 40 and lance.dataset(f"{project.uri}/tree/exp").count_rows() == 50


def test_reading_a_branch_that_does_not_exist_says_which_exist(project, run_cli):
    assert run_cli("apply", "-q", "spec.yaml", cwd=project.root)[0] == 0
    code, _, err = run_cli("status", "spec.yaml", "--branch", "nope", cwd=project.root)
    assert code == 2
    assert "has no branch 'nope' (branches: none); create it with 'featurekit apply SPEC --branch nope'" in err
    code, _, err = run_cli("apply", "spec.yaml", "--branch", "a/b", cwd=project.root)
    assert code == 2 and "branch name 'a/b' must be 1-100 ASCII letters" in err
    assert run_cli("apply", "spec.yaml", "--branch", "main", cwd=project.root)[0] == 2


def test_apply_tag_names_the_version_it_left(project, run_cli):
    code, out, _ = run_cli("apply", "spec.yaml", "--tag", "v1", cwd=project.root)
    version = lance.dataset(project.uri).version
    assert code == 0 and f"tagged version {version} as v1" in out
    assert lance.dataset(project.uri).tags.list()["v1"]["version"] == version
    project.add_rows(5, start=40)
    code, _, err = run_cli("apply", "spec.yaml", "--tag", "v1", cwd=project.root)
    assert code == 2 and f"tag 'v1' already exists (version {version})" in err
    assert lance.dataset(project.uri).version == version          # refused before anything was written
    code, out, _ = run_cli("apply", "spec.yaml", "--tag", "v2", cwd=project.root)
    assert code == 0 and lance.dataset(project.uri, version="v2").count_rows() == 45
    code, out, _ = run_cli("apply", "-q", "spec.yaml", "--tag", "v2-again", cwd=project.root)  # nothing to do:
    assert code == 0 and "tagged version" in out                   # the current version is tagged
    assert run_cli("apply", "spec.yaml", "--tag", "featurekit-writer", cwd=project.root)[0] == 2

    project.write_spec(VARIANT, name="variant.yaml")
    code, out, _ = run_cli("apply", "variant.yaml", "--branch", "exp", "--tag", "exp-1", cwd=project.root)
    assert code == 0 and "of branch exp as exp-1" in out
    tag = lance.dataset(project.uri).tags.list()["exp-1"]
    assert tag["branch"] == "exp"
    code, out, _ = run_cli("branches", "spec.yaml", cwd=project.root)
    assert "  exp-1: branch exp version" in out and "  v1: version" in out


# -- recipes pinned to a version or a tag ----------------------------------------------------

PINNED = """\
featurekit: 1
name: probe
table: {db: data, name: t}
source: {format: jsonl, path: "raw/*.jsonl", key: id}
features:
  emb:
    extractor: acme.embed
    inputs: {text: question}
slices:
  all_rows:
    split: {by: id, seed: 0, fractions: {train: 0.7, val: 0.3}}
recipes:
  probe:
    trainer: linear_probe
    slice: all_rows
    split: train
    columns: {features: emb, label: answer}
    params: {steps: 4, lr: 0.2, batch_size: 16}
    output: runs/probe
    table: PIN
"""


Embed = color_embed_extractor()


def _rows(root, n, start=0):
    colors = ["red", "green", "blue"]
    with open(root / "raw" / "a.jsonl", "a") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"id": i, "question": f"what color is {colors[i % 3]}", "answer": colors[i % 3]}) + "\n")


@pytest.fixture
def probe(tmp_path, monkeypatch):
    import featurekit.plugins.registry
    reg = registry_with(Embed)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (tmp_path / "raw").mkdir()
    _rows(tmp_path, 60)
    return tmp_path


@pytest.mark.parametrize("pin", ["{tag: first}", "{version: VERSION}"])
def test_a_pinned_recipe_reads_its_version_after_the_table_moved_on(probe, run_cli, pin):
    (probe / "spec.yaml").write_text(PINNED.replace("\n    table: PIN", ""))
    assert run_cli("apply", "-q", "spec.yaml", "--tag", "first", cwd=probe)[0] == 0
    first = lance.dataset(str(probe / "data" / "t.lance"))
    _rows(probe, 30, start=60)
    assert run_cli("apply", "-q", "spec.yaml", cwd=probe)[0] == 0
    (probe / "spec.yaml").write_text(PINNED.replace("PIN", pin.replace("VERSION", str(first.version))))
    train_rows = first.count_rows(filter="all_rows = 'train'")

    loader = featurekit.dataloader(probe / "spec.yaml", recipe="probe", batch_size=16)
    assert (loader.version, loader.num_rows) == (first.version, train_rows)
    assert featurekit.dataloader(probe / "spec.yaml", recipe="probe", version=None).num_rows == train_rows

    pytest.importorskip("torch")
    code, out, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q", cwd=probe)
    assert code == 0, err
    run_dir = probe / "runs" / "probe" / (probe / "runs" / "probe" / "LATEST").read_text().strip()
    table = json.loads((run_dir / "manifest.json").read_text())["table"]
    assert table["version"] == first.version and table["pinned"] and table["behind_spec"] == []


def test_a_recipe_pin_must_be_one_of_version_or_tag(probe, run_cli):
    (probe / "spec.yaml").write_text(PINNED.replace("PIN", "{version: 3, tag: x}"))
    code, _, err = run_cli("validate", "spec.yaml", cwd=probe)
    assert code == 2 and "recipes.probe.table: give version: N or tag: NAME (exactly one)" in err
    (probe / "spec.yaml").write_text(PINNED.replace("PIN", "{tag: nope}"))
    assert run_cli("apply", "-q", "spec.yaml", cwd=probe)[0] == 0
    with pytest.raises(featurekit.UsageError, match="has no tag 'nope'"):
        featurekit.dataloader(probe / "spec.yaml", recipe="probe")


class Wide(featurekit.Extractor):
    """64 floats a row: stored in Lance's plain layout, which the loader reads with preadv."""

    name = "acme.wide"
    inputs = {"text": "string"}

    def output_type(self):
        return pa.list_(pa.float32(), 64)

    def __call__(self, batch):
        return pa.array([[float((len(q) * k) % 13) for k in range(64)] for q in batch.column("text").to_pylist()],
                        pa.list_(pa.float32(), 64))


def test_the_loader_reads_a_branchs_inherited_files_straight_from_mains_data_folder(probe, run_cli, monkeypatch):
    import featurekit.plugins.registry
    np = pytest.importorskip("numpy")
    reg = registry_with(Embed, Wide)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    spec = PINNED.replace("\n    table: PIN", "").replace("extractor: acme.embed", "extractor: acme.wide")
    (probe / "spec.yaml").write_text(spec)
    assert run_cli("apply", "-q", "spec.yaml", cwd=probe)[0] == 0
    variant = spec.replace("features:\n", "features:\n  qlen:\n    extractor: text.length\n    inputs: {text: question}\n")
    (probe / "variant.yaml").write_text(variant)
    assert run_cli("apply", "-q", "variant.yaml", "--branch", "b", cwd=probe)[0] == 0
    loader = featurekit.dataloader(probe / "variant.yaml", columns=["emb"], branch="b", shuffle=False, batch_size=64)
    assert loader.reads[0].locations is not None                  # main's files, found through the base path
    main_data = str(probe / "data" / "t.lance" / "data")
    assert all(f.startswith(main_data) for f in loader.reads[0].locations.files)
    got = np.concatenate([b["emb"].numpy() for b in loader])
    want = lance.dataset(str(probe / "data" / "t.lance" / "tree" / "b")).to_table(columns=["emb"]).column(0)
    assert np.array_equal(got, np.asarray(want.combine_chunks().flatten()).reshape(len(want), 64))
    monkeypatch.chdir("/")  # the branch was made from a relative path: it still reads from anywhere
    assert lance.dataset(str(probe / "data" / "t.lance" / "tree" / "b")).to_table().num_rows == 60
