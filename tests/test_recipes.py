"""Recipes are validated like features: trainer, params, slice, splits, column types."""
import pytest

SPEC = """\
featurekit: 1
name: recipes
table: {db: data, name: t}
source: {format: jsonl, path: "raw/*.jsonl", key: question_id}
features:
  qlen:
    extractor: text.length
    inputs: {text: question}
  ocr_count:
    extractor: text.count
    inputs: {items: ocr_tokens}
slices:
  dense:
    where: "ocr_count >= 2"
    split: {by: image_id, fractions: {train: 0.8, val: 0.2}}
recipes:
  probe:
    trainer: linear_probe
    slice: dense
    split: train
    columns: {features: ocr_tokens, label: answer}
    params: {steps: 10, lr: 0.1}
    eval: {split: val}
"""


def check(project, run_cli, text):
    project.write_spec(text)
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    return code, err.splitlines()


def test_a_valid_recipe(project, run_cli):
    code, lines = check(project, run_cli, SPEC)
    assert code == 0, lines


@pytest.mark.parametrize("old,new,expected", [
    ("trainer: linear_probe", "trainer: linear_prob",
     "spec.yaml:18:14: recipes.probe.trainer: unknown trainer 'linear_prob'; did you mean 'linear_probe'?"),
    ("params: {steps: 10, lr: 0.1}", "params: {steps: 10, lr: 0.1, epochs: 3}",
     "spec.yaml:22:34: recipes.probe.params.epochs: unknown key 'epochs'; "
     "valid keys: steps, batch_size, lr, weight_decay, pool, seed"),
    ("params: {steps: 10, lr: 0.1}", "params: {steps: -1, lr: 0.1}",
     "spec.yaml:22:21: recipes.probe.params.steps: input should be greater than 0 (got -1)"),
    ("columns: {features: ocr_tokens, label: answer}", "columns: {features: qlen, label: answer}",
     "spec.yaml:21:25: recipes.probe.columns.features: type mismatch: column 'qlen' is int32, but trainer "
     "'linear_probe' column 'features' expects list"),
    ("columns: {features: ocr_tokens, label: answer}", "columns: {features: ocr_tokens}",
     "spec.yaml:21:14: recipes.probe.columns: trainer 'linear_probe' needs column 'label' (any); "
     "add 'label: <column>'"),
    ("columns: {features: ocr_tokens, label: answer}", "columns: {features: ocr_tokens, label: answr}",
     "spec.yaml:21:44: recipes.probe.columns.label: unknown column 'answr': not in the table, the source or "
     "any feature's outputs; did you mean 'answer'?"),
    ("split: train\n", "split: training\n",
     "spec.yaml:20:12: recipes.probe.split: slice 'dense' has no split 'training'; its splits: train, val"),
])
def test_a_broken_recipe_is_a_spec_error_at_its_place(project, run_cli, old, new, expected):
    assert old in SPEC
    code, lines = check(project, run_cli, SPEC.replace(old, new))
    assert code == 2
    assert lines[0] == expected
    assert not (project.root / "data").exists()
