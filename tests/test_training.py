"""featurekit train / eval through a recipe: the run folder, the manifest, metrics, eval files.
The built-in linear_probe trainer keeps these fast; the qlora trainer has its own tests."""
import json

import pytest
from fktest import color_embed_extractor, registry_with

import featurekit

torch = pytest.importorskip("torch")

SPEC = """\
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
    params: {steps: 60, lr: 0.2, batch_size: 16}
    output: runs/probe
    eval: {split: val}
"""


Embed = color_embed_extractor()


@pytest.fixture
def trained(tmp_path, run_cli, monkeypatch):
    import featurekit.plugins.registry
    reg = registry_with(Embed)
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (tmp_path / "raw").mkdir()
    colors = ["red", "green", "blue"]
    rows = [{"id": i, "question": f"what color is {colors[i % 3]}", "answer": colors[i % 3]} for i in range(90)]
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "spec.yaml").write_text(SPEC)
    code, out, err = run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    return tmp_path


def test_train_writes_a_run_folder_with_a_manifest_that_names_its_inputs(trained, run_cli):
    code, out, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q")
    assert code == 0, err
    latest = (trained / "runs" / "probe" / "LATEST").read_text().strip()
    run = trained / "runs" / "probe" / latest
    assert out.startswith(f"trained probe: {run.relative_to(trained)}")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 61))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((run / "manifest.json").read_text())
    import lance
    ds = lance.dataset(str(trained / "data" / "t.lance"))
    assert manifest["status"] == "finished" and manifest["table"]["version"] == ds.version
    assert manifest["columns"]["features"]["fingerprint"] == \
        ds.schema.field("emb").metadata[b"featurekit.fingerprint"].decode()
    assert manifest["slice"]["fingerprint"] == ds.schema.field("all_rows").metadata[b"featurekit.fingerprint"].decode()
    assert manifest["slice"]["split"] == "train" and manifest["seed"] == 0
    assert manifest["spec"]["sha256"] and manifest["final_loss"] == metrics[-1]["loss"]


def test_eval_compares_base_and_tuned_on_the_eval_split(trained, run_cli):
    run_cli("train", "spec.yaml", "--recipe", "probe", "-q", cwd=trained)
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "probe", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["metrics"]["tuned"]["accuracy"] == 1.0 > result["metrics"]["base"]["accuracy"]
    folder = trained / "runs" / "probe" / (trained / "runs" / "probe" / "LATEST").read_text().strip()
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    import lance
    val = lance.dataset(str(trained / "data" / "t.lance")).to_table(filter="all_rows = 'val'", columns=["id"])
    assert sorted(p["key"] for p in predictions) == sorted(val.column("id").to_pylist())
    assert json.loads((folder / "eval.json").read_text())["split"] == "val"
    # the probe reports `accuracy`: its majority prior is scored by equality, counted here by hand
    # (no question column: no per-type prior); the picture is written beside loss.png
    table = lance.dataset(str(trained / "data" / "t.lance")).to_table(columns=["all_rows", "answer"]).to_pylist()
    train_labels = [r["answer"] for r in table if r["all_rows"] == "train"]
    val_labels = [r["answer"] for r in table if r["all_rows"] == "val"]
    top = max(train_labels.count(c) for c in set(train_labels))
    majority = min(c for c in set(train_labels) if train_labels.count(c) == top)
    assert result["metrics"]["majority"] == {"accuracy": val_labels.count(majority) / len(val_labels),
                                             "n": len(val_labels)}
    assert "type_prior" not in result["metrics"]
    assert (folder / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_a_recipe_reading_stale_columns_is_refused(trained, run_cli):
    (trained / "spec.yaml").write_text(SPEC.replace("seed: 0, fractions", "seed: 1, fractions"))
    code, out, err = run_cli("train", "spec.yaml", "--recipe", "probe", cwd=trained)
    assert code == 1
    assert "recipe 'probe' reads columns that are not up to date (all_rows: recompute (split changed" in err
    assert "run 'featurekit apply' first" in err


def test_resume_continues_the_newest_run(trained, run_cli):
    run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--steps", "5", cwd=trained)
    first_folder = (trained / "runs" / "probe" / "LATEST").read_text().strip()
    first = json.loads((trained / "runs" / "probe" / first_folder / "manifest.json").read_text())
    # the table grows before the resume: the resumed run still reads the version it started on
    rows = [{"id": 1000 + i, "question": "what color is red", "answer": "red"} for i in range(30)]
    (trained / "raw" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli("apply", "-q", "spec.yaml")[0] == 0
    code, out, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--resume")
    assert code == 0, err
    # the probe keeps no checkpoint: the resume says it starts over rather than doing so silently
    assert "--resume: no checkpoint in " in err and "training starts over from step 1" in err
    folder = trained / "runs" / "probe" / (trained / "runs" / "probe" / "LATEST").read_text().strip()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["resumes"]) == 1
    assert folder.name == first_folder and [p.name for p in folder.parent.glob("2*")] == [first_folder]
    assert manifest["status"] == "finished" and manifest["started"] == first["started"]
    assert manifest["resumes"][0]["status"] == "finished" and manifest["resumes"][0]["started"] == first["started"]
    assert manifest["table"]["version"] == first["table"]["version"] == manifest["loader"][0]["version"]
    assert manifest["wall_seconds"] >= first["wall_seconds"]
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 61))  # each step once, through the params' 60
    assert manifest["final"]["steps"] == 60 and manifest["final_loss"] == metrics[-1]["loss"]


def test_the_manifest_rebuilds_the_identical_batch_order(trained, run_cli):
    """The pinned version and seed in the manifest give back the batches training saw, even
    after the table has grown."""
    run_cli("train", "spec.yaml", "--recipe", "probe", "-q", cwd=trained)
    folder = trained / "runs" / "probe" / (trained / "runs" / "probe" / "LATEST").read_text().strip()
    manifest = json.loads((folder / "manifest.json").read_text())
    project = featurekit.load_spec(trained / "spec.yaml")

    def order():
        loader = featurekit.dataloader(project, recipe="probe", batch_size=16, seed=manifest["seed"],
                                       version=manifest["table"]["version"], drop_last=False)
        return [b["label"] for b in loader]

    before = order()
    rows = [{"id": 1000 + i, "question": "what color is red", "answer": "red"} for i in range(30)]
    (trained / "raw" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli("apply", "-q", "spec.yaml")[0] == 0
    assert order() == before and sum(len(b) for b in before) > 50


class Failing(featurekit.Trainer):
    """A trainer that fails before its first step (a model that cannot load)."""

    name = "acme.failing"
    columns = {"features": "list", "label": "any"}

    def train(self, run):
        raise RuntimeError("cannot load the model")


def test_a_run_that_fails_before_its_first_step_leaves_nothing_and_eval_uses_the_newest_finished(trained, run_cli,
                                                                                                 monkeypatch):
    import types

    import featurekit.plugins.registry
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    mod = types.ModuleType("failing_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Embed])
    mod.featurekit_register_trainers = featurekit.hookimpl(lambda: [Failing])
    reg = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod]))
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    code, _, err = run_cli("eval", "spec.yaml", "--recipe", "probe", cwd=trained)
    assert code == 2 and "no trained run of recipe 'probe'" in err and "--base-only" in err
    assert run_cli("train", "spec.yaml", "--recipe", "probe", "-q")[0] == 0
    out_dir = trained / "runs" / "probe"
    good = (out_dir / "LATEST").read_text()
    (trained / "spec.yaml").write_text(SPEC.replace("trainer: linear_probe", "trainer: acme.failing")
                                       .replace("params: {steps: 60, lr: 0.2, batch_size: 16}", "params: {}"))
    with pytest.raises(RuntimeError, match="cannot load the model"):  # unexpected: the CLI shows its traceback
        run_cli("train", "spec.yaml", "--recipe", "probe", "-q")
    assert (out_dir / "LATEST").read_text() == good                    # LATEST still names the good run
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == [good.strip()]  # no half-written folder
    (trained / "spec.yaml").write_text(SPEC)
    # an interrupted newer run: eval takes the newest finished one
    newer = out_dir / "29990101-000000"
    newer.mkdir()
    (newer / "manifest.json").write_text(json.dumps({"status": "interrupted: resume with 'featurekit train --resume'",
                                                     "table": {"version": 1}}))
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "probe", "--json")
    assert code == 0, err
    assert json.loads(out)["run"].endswith(good.strip())


def test_an_empty_split_is_refused_before_a_run_folder_exists(trained, run_cli):
    (trained / "spec.yaml").write_text(SPEC.replace("  all_rows:\n", "  all_rows:\n    where: \"id < 0\"\n"))
    assert run_cli("apply", "-q", "spec.yaml", cwd=trained)[0] == 0
    code, _, err = run_cli("train", "spec.yaml", "--recipe", "probe")
    assert code == 1 and "split 'train' of slice 'all_rows' has no rows" in err
    assert not (trained / "runs").exists()


def test_resuming_a_run_that_finished_all_its_steps_is_refused(trained, run_cli):
    assert run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--steps", "5", cwd=trained)[0] == 0
    code, _, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--resume", "--steps", "5")
    assert code == 2 and "already finished its 5 steps; nothing to resume" in err
    folder = trained / "runs" / "probe" / (trained / "runs" / "probe" / "LATEST").read_text().strip()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["steps_override"] == 5
    assert manifest["table"]["uri"] == str(trained / "data" / "t.lance")  # absolute


def test_no_eta_until_the_pace_is_known(capsys):
    """The first step pays for loading the model: an ETA timed from the start said 2,612 s for
    a 5-minute run. It is timed from the first step and shown after WARMUP_STEPS more."""
    from featurekit.training.runs import WARMUP_STEPS, Progress
    now = [0.0]
    progress = Progress(every=0, clock=lambda: now[0])
    progress.set_total(10)
    for step, at in [(1, 100.0), (2, 101.0), (3, 102.0), (4, 103.0), (5, 104.0)]:
        now[0] = at
        progress.update(step, {"loss": 1.0})
    lines = capsys.readouterr().err.splitlines()
    assert WARMUP_STEPS == 3
    assert [("eta" in line) for line in lines] == [False, False, False, True, True]
    assert lines[3] == "step 4/10: loss 1, eta 6s" and lines[4] == "step 5/10: loss 1, eta 5s"


def test_eval_says_what_it_is_doing_while_it_generates(trained, run_cli):
    assert run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--steps", "3", cwd=trained)[0] == 0
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "probe")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0] == "eval: loading the model, then answering 25 row(s)"
    assert lines[-1].startswith("eval: 25/25 rows in ")
    assert "eval:" not in run_cli("eval", "spec.yaml", "--recipe", "probe", "-q")[2]


def test_a_refused_resume_leaves_the_run_as_it_was(trained, run_cli, monkeypatch):
    """A trainer refusing --resume (qlora without a checkpoint) leaves the finished run's
    manifest untouched: no steps_override of the refused attempt, no extra resume."""
    import types

    import featurekit.plugins.registry
    from featurekit.builtin.trainers import LinearProbe
    from featurekit.errors import UsageError
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry

    class NoResume(LinearProbe):
        name = "no_resume"

        def train(self, run):
            if run.resume:
                raise UsageError(f"--resume: {run.dir} has no checkpoint to continue from")
            return super().train(run)

    mod = types.ModuleType("no_resume_plugin")
    mod.featurekit_register_extractors = featurekit.hookimpl(lambda: [Embed])
    mod.featurekit_register_trainers = featurekit.hookimpl(lambda: [NoResume])
    reg = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod]))
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (trained / "spec.yaml").write_text(SPEC.replace("trainer: linear_probe", "trainer: no_resume"))
    assert run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--steps", "3", cwd=trained)[0] == 0
    folder = trained / "runs" / "probe" / (trained / "runs" / "probe" / "LATEST").read_text().strip()
    before = (folder / "manifest.json").read_text()
    code, _, err = run_cli("train", "spec.yaml", "--recipe", "probe", "-q", "--resume", "--steps", "5")
    assert code == 2 and "has no checkpoint to continue from" in err
    assert (folder / "manifest.json").read_text() == before
