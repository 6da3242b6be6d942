"""Specs in git: the apply log records provenance; diff and plan --against compare revisions."""
import json
import subprocess

from fktest import BASE_SPEC

import featurekit


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(root)})


def commit(root, message):
    git(root, "add", "spec.yaml")
    git(root, "commit", "-q", "-m", message)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def test_diff_names_exactly_the_changed_features_and_keys(project, run_cli):
    git(project.root, "init", "-q")
    first = commit(project.root, "first")
    project.write_spec(BASE_SPEC.replace("    inputs: {text: question}\n  ocr_token_count:",
                                         "    inputs: {text: answer}\n  ocr_token_count:")
                       .replace('where: "ocr_token_count >= 8"', 'where: "ocr_token_count >= 4"')
                       .replace("slices:\n", "  answer_words:\n    extractor: text.word_count\n"
                                             "    inputs: {text: answer}\nslices:\n"))
    second = commit(project.root, "second")
    code, out, err = run_cli("diff", "spec.yaml", first, second, "--json", cwd=project.root)
    assert code == 0, err
    changes = {(c["kind"], c["name"]): c for c in json.loads(out)["changes"]}
    assert set(changes) == {("feature", "question_length"), ("feature", "answer_words"), ("slice", "text_dense")}
    assert changes[("feature", "question_length")]["reasons"] == [
        "inputs changed: {'text': 'question'} -> {'text': 'answer'}"]
    assert changes[("feature", "answer_words")]["action"] == "added"
    assert changes[("slice", "text_dense")]["reasons"][0] == 'where changed: "ocr_token_count >= 8" -> ' \
                                                              '"ocr_token_count >= 4"'
    project.write_spec(BASE_SPEC.replace("text.question_type", "text.length"))  # uncommitted
    code, out, err = run_cli("plan", "spec.yaml", "--against", second)
    assert code == 0
    assert out.splitlines()[0] == f"diff {second} -> working copy"
    assert "  ~ feature question_type: changed" in out and "      extractor changed: text.question_type -> " \
                                                             "text.length" in out
    assert not (project.root / "data").exists()  # no data touched


def test_log_shows_each_apply_with_its_commit_and_dirty_flag(project, run_cli):
    git(project.root, "init", "-q")
    sha = commit(project.root, "spec")
    assert featurekit.apply(project.spec).ok
    project.add_rows(3, start=40, file="raw/more.jsonl")
    project.write_spec(BASE_SPEC + "# edited\n")  # modified against the commit
    assert featurekit.apply(project.spec).ok
    code, out, err = run_cli("log", "spec.yaml", "--json", cwd=project.root)
    entries = json.loads(out)
    assert [e["spec_file"]["git"]["dirty"] for e in entries] == [True, False]  # newest first
    assert {e["spec_file"]["git"]["commit"] for e in entries} == {sha}
    assert entries[0]["ingested"] == 3 and entries[0]["features"]["question_length"]["computed"] == 3
    code, text, err = run_cli("log", "spec.yaml")
    assert f"spec {sha[:10]} (modified)" in text.splitlines()[0]
    assert "no apply recorded" not in text  # the two applies account for every version
    # a version another writer made is shown as such
    import lance
    lance.dataset(project.uri).delete("question_id = 40")
    code, text, err = run_cli("log", "spec.yaml")
    first = text.splitlines()[0]
    assert first.startswith(f"v{lance.dataset(project.uri).version}-v{lance.dataset(project.uri).version}  "
                            "no apply recorded: another writer")


def test_no_git_is_said_never_a_failure(project):
    assert featurekit.apply(project.spec).ok
    entry = featurekit.log(project.spec).entries[0]
    assert entry["spec_file"]["git"] is None and "not in a git repository" in entry["spec_file"]["git_note"]


class Scaled(featurekit.Extractor):
    """A vector from the question length; `device` changes no value."""

    name = "acme.scaled"
    inputs = {"text": "string"}

    class Params(featurekit.Extractor.Params):
        factor: int = 2
        device: str = featurekit.runtime_field("auto")

    def output_type(self):
        import pyarrow as pa
        return pa.list_(pa.float32(), 2)

    def __call__(self, batch):
        import pyarrow as pa
        return pa.array([[len(t) * self.params.factor, 1.0] for t in batch.column("text").to_pylist()],
                        pa.list_(pa.float32(), 2))


def test_diff_says_exactly_which_params_recipe_params_and_source_settings_changed(project):
    from fktest import registry_with

    from featurekit import diff
    reg = registry_with(Scaled)
    spec = BASE_SPEC + """\
  probe_rows:
    where: "question_length > 0"
recipes:
  probe:
    trainer: linear_probe
    slice: probe_rows
    columns: {features: scaled, label: answer}
    params: {lr: 0.1, steps: 5}
    output: runs
"""
    spec = spec.replace("slices:\n", "  scaled:\n    extractor: acme.scaled\n    inputs: {text: question}\n"
                                      "    params: {factor: 2}\nslices:\n")
    git(project.root, "init", "-q")
    project.write_spec(spec)
    first = commit(project.root, "first")
    project.write_spec(spec.replace("params: {factor: 2}", "params: {factor: 3, device: cpu}")
                       .replace("params: {lr: 0.1, steps: 5}", "params: {lr: 0.2, steps: 5}")
                       .replace("path: raw/*.jsonl", "path: raw/a*.jsonl"))
    second = commit(project.root, "second")
    changes = {(c.kind, c.name): c for c in diff(project.spec, first, second, registry=reg).changes
               if c.action != "unchanged"}
    assert changes[("feature", "scaled")].reasons == ("params changed: factor 2 -> 3",)  # no default, no device
    assert changes[("recipe", "probe")].reasons == ("params.lr changed: 0.1 -> 0.2", "reads what changed: scaled")
    assert changes[("source", "source")].reasons == ('path changed: "raw/*.jsonl" -> "raw/a*.jsonl"',)
    assert "  ~ source: changed" in diff(project.spec, first, second, registry=reg).render()
