"""`featurekit eval` beside base and tuned: the answer priors of the training split (`majority`,
`type_prior`), the score per question type of every model, the number of questions, eval.png.
Every expected number is counted by hand from the rows below."""
import json

import pytest

import featurekit

SPEC = """\
featurekit: 1
name: priors
table: {db: data, name: t}
source: {format: jsonl, path: "raw/*.jsonl", key: id}
features:
  qtype:
    extractor: text.question_type
    inputs: {text: question}
slices:
  all_rows:
    split: {by: part, seed: 0, fractions: {train: 0.5, val: 0.5}}
recipes:
  fixed:
    trainer: acme.fixed
    slice: all_rows
    split: train
    columns: {question: question}
    output: runs/fixed
    eval: {split: val}
"""

# part "a" hashes to train, "b" to val (seed 0; asserted below)
TRAIN = [("is it red?", "yes"), ("is it red now?", "yes"), ("is it big?", "Yes"), ("is it blue?", "no"),
         ("what color is it?", "red"), ("what color is the box?", "red"), ("what color is the sky?", "blue"),
         ("how many dots?", "2"), ("how many boxes?", "two"), ("how many cats?", "3")]
# votes after VQA normalization: yes 3, red 2, 2 2 ("2", "two"), no 1, blue 1, 3 1 -> majority "yes";
# per type: is -> yes (3 of 4), what color -> red (2 of 3), how many -> 2 (2 of 3)
VAL = [("is the square red?", "yes"), ("is the circle blue?", "no"), ("what color is the circle?", "red"),
       ("what color is the square?", "green"), ("how many shapes?", "2"), ("where is the circle?", "left")]
BASE = ["no"] * 6
TUNED = ["Yes.", "no", "blue", "green", "two", "right"]


class Fixed(featurekit.Trainer):
    """Fixed answers; its predictions carry only the key and the answers (featurekit finds the
    question and the truth by key)."""

    name = "acme.fixed"
    columns = {"question": "string"}
    eval_columns = {"question": "string", "answer": "any"}

    def train(self, run):
        run.set_total(1)
        run.log(1, loss=1.0)
        return {"loss": 1.0}

    def evaluate(self, run):
        from featurekit.training.vqa import mean_vqa_accuracy
        predictions = []
        for rows in run.rows(batch_size=4):
            for key, question, answer in zip(rows["key"], rows["question"], rows["answer"]):
                i = [q for q, _ in VAL].index(question)
                predictions.append({"key": key, "base": BASE[i], "tuned": TUNED[i], "truth": answer})
            run.progress(len(rows["key"]))
        return {"metrics": {m: mean_vqa_accuracy([p[m] for p in predictions], [p["truth"] for p in predictions])
                            for m in ("base", "tuned")}, "predictions": predictions}


@pytest.fixture
def project(tmp_path, run_cli, monkeypatch):
    import types

    import featurekit.plugins.registry
    from featurekit.plugins.discovery import make_plugin_manager
    from featurekit.plugins.registry import Registry
    mod = types.ModuleType("fixed_plugin")
    mod.featurekit_register_trainers = featurekit.hookimpl(lambda: [Fixed])
    reg = Registry.from_plugin_manager(make_plugin_manager(load_entrypoints=False, plugins=[mod]))
    monkeypatch.setattr(featurekit.plugins.registry, "default_registry", lambda plugins=(): reg)
    (tmp_path / "raw").mkdir()
    rows = [{"id": i, "part": "a", "question": q, "answer": a} for i, (q, a) in enumerate(TRAIN)]
    rows += [{"id": 100 + i, "part": "b", "question": q, "answer": a} for i, (q, a) in enumerate(VAL)]
    (tmp_path / "raw" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "spec.yaml").write_text(SPEC)
    code, _, err = run_cli("apply", "-q", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    import lance
    table = lance.dataset(str(tmp_path / "data" / "t.lance")).to_table(columns=["id", "all_rows", "qtype"])
    split = dict(zip(table.column("id").to_pylist(), table.column("all_rows").to_pylist()))
    assert split == {**{i: "train" for i in range(len(TRAIN))}, **{100 + i: "val" for i in range(len(VAL))}}
    assert run_cli("train", "spec.yaml", "--recipe", "fixed", "-q")[0] == 0
    return tmp_path


def test_eval_reports_the_answer_priors_and_accuracy_per_question_type(project, run_cli):
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "fixed")
    assert code == 0, err
    folder = project / "runs" / "fixed" / (project / "runs" / "fixed" / "LATEST").read_text().strip()
    report = json.loads((folder / "eval.json").read_text())
    metrics = report["metrics"]
    assert list(metrics) == ["base", "tuned", "majority", "type_prior"]
    # majority "yes": right on "is the square red?" only
    assert metrics["majority"]["vqa_accuracy"] == pytest.approx(1 / 6)
    # type prior: yes (right), yes (no: wrong), red (right), red (green: wrong), 2 (right),
    # "where" unseen in training -> the majority "yes" (left: wrong)
    assert metrics["type_prior"]["vqa_accuracy"] == pytest.approx(3 / 6)
    assert metrics["tuned"]["vqa_accuracy"] == pytest.approx(4 / 6)   # Yes., no, green, two right
    assert report["n"] == 6 and all(m["n"] == 6 for m in metrics.values())
    assert report["question_types"] == {"is": 2, "what color": 2, "how many": 1, "where": 1}
    assert report["priors"] == {"split": "train", "answers": 10, "metric": "vqa_accuracy", "majority": "yes",
                                "by_type": {"how many": "2", "is": "yes", "what color": "red"}}
    by_type = {m: metrics[m]["by_type"] for m in metrics}
    assert by_type["base"] == {"is": 0.5, "what color": 0.0, "how many": 0.0, "where": 0.0}
    assert by_type["tuned"] == {"is": 1.0, "what color": 0.5, "how many": 1.0, "where": 0.0}
    assert by_type["majority"] == {"is": 0.5, "what color": 0.0, "how many": 0.0, "where": 0.0}
    assert by_type["type_prior"] == {"is": 0.5, "what color": 0.5, "how many": 1.0, "where": 0.0}
    # each prediction names its type (as the text.question_type feature has it) and the priors' answers
    predictions = {p["key"]: p for p in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())}
    assert [predictions[100 + i]["question_type"] for i in range(6)] == \
        ["is", "is", "what color", "what color", "how many", "where"]
    assert [predictions[100 + i]["type_prior"] for i in range(6)] == ["yes", "yes", "red", "red", "2", "yes"]
    assert {p["majority"] for p in predictions.values()} == {"yes"}
    import lance
    qtype = lance.dataset(str(project / "data" / "t.lance")).to_table(columns=["id", "qtype"]).to_pylist()
    assert all(predictions[r["id"]]["question_type"] == r["qtype"] for r in qtype if r["id"] in predictions)
    assert (folder / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_the_printed_table_has_the_priors_as_columns_and_a_row_per_type(project, run_cli):
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "fixed")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["base", "tuned", "majority", "type_prior"]
    assert lines[1].split() == ["n", "6", "6", "6", "6"]
    assert lines[2].split() == ["vqa_accuracy", "0.1667", "0.6667", "0.1667", "0.5000"]
    assert lines[3] == "by question type (n):"
    assert [line.split()[-4:] for line in lines[4:8]] == [["0.5000", "1.0000", "0.5000", "0.5000"],
                                                          ["0.0000", "0.5000", "0.0000", "0.5000"],
                                                          ["0.0000", "1.0000", "0.0000", "1.0000"],
                                                          ["0.0000", "0.0000", "0.0000", "0.0000"]]
    assert [line.split("(")[0].strip() for line in lines[4:8]] == ["is", "what color", "how many", "where"]
    assert "priors: from split 'train' (10 answers): majority answers 'yes'" in out
    assert "eval.png" in lines[-1]


def test_base_only_eval_has_the_priors_too(project, run_cli):
    code, out, err = run_cli("eval", "spec.yaml", "--recipe", "fixed", "--base-only", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["metrics"]["majority"]["vqa_accuracy"] == pytest.approx(1 / 6)
    assert result["metrics"]["type_prior"]["by_type"]["how many"] == 1.0


def test_votes_from_ten_humans_ties_and_the_vqa_score_of_a_prior():
    """Each human answer is a vote (normalized: "Yes" is "yes"); a tie goes to the first answer
    alphabetically; the prior is scored with the leave-one-out VQA accuracy."""
    from featurekit.training.priors import fit, with_baselines
    priors = fit([["yes", "yes", "no"], ["no", "no", "no", "yes"], "Yes"])
    assert (priors.majority, priors.answers) == ("no", 3)  # yes 4, no 4: the tie goes to "no"
    humans = ["no"] * 2 + ["yes"] * 8
    metrics = with_baselines({}, [{"key": 1}], [humans], None, priors, "vqa_accuracy")
    # the 2 "no" humans left out: 1 match / 3; the 8 "yes" left out: 2 / 3 -> (2/3 + 16/3) / 10
    assert metrics == {"majority": {"vqa_accuracy": pytest.approx(0.6), "n": 1}}
