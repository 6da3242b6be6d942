import pyarrow as pa
import pytest
from fktest import BASE_SPEC

from featurekit.builtin.text import ItemCount, QuestionType, TextLength, WordCount, question_type

# Real TextVQA-style questions with the label a person would give them.
REAL_QUESTIONS = [
    ("what is the brand of this camera?", "what"),
    ("what does the small white text spell?", "what"),
    ("what kind of beer is this?", "what kind"),
    ("What type of drink is this?", "what kind"),
    ("what color is the text on the sign?", "what color"),
    ("What time is it?", "what time"),
    ("what year is on the coin?", "what year"),
    ("what number is on the player's jersey?", "what number"),
    ("how many items can you get for $5?", "how many"),
    ("How much does the milk cost?", "how much"),
    ("which company made the watch?", "which"),
    ("who is the author of the book?", "who"),
    ("Whose name is on the jersey?", "whose"),
    ("where is this photo taken?", "where"),
    ("when was the building built?", "when"),
    ("why is the sign red?", "why"),
    ("how is the weather?", "how"),
    ("is this a nikon camera?", "is"),
    ("are these bottles full?", "are"),
    ("does the sign say stop?", "does"),
    ("do you see the word exit?", "do"),
    ("can you read the license plate?", "can"),
    ("was this picture taken at night?", "was"),
    ("what's the name of the store?", "what"),
    ("Name the brand of the soda.", "other"),
    ("brand?", "other"),
    ("", "other"),
]


@pytest.mark.parametrize("question,label", REAL_QUESTIONS)
def test_question_type_on_real_questions(question, label):
    assert question_type(question) == label


def _run(cls, **columns):
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    return cls()(batch).to_pylist()


def test_question_type_extractor_keeps_nulls():
    assert _run(QuestionType, text=pa.array(["how many cats?", None])) == ["how many", None]


def test_text_length_counts_characters_not_bytes():
    assert _run(TextLength, text=pa.array(["what is this?", "café", "", None])) == [13, 4, 0, None]


def test_item_count_null_is_zero():
    tokens = pa.array([["coca", "cola"], [], None, ["a"] * 12], pa.list_(pa.string()))
    assert _run(ItemCount, items=tokens) == [2, 0, 0, 12]


def test_word_count():
    text = pa.array(["what is written on the sign?", "  two   words ", "", None])
    assert _run(WordCount, text=text) == [6, 2, 0, None]


def test_a_sql_feature_is_computed_by_lance_and_fingerprinted_by_its_expression(project):
    import lance

    import featurekit
    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  qlen_plus:\n    extractor: sql\n"
                                                "    params: {expr: \"length(question) + 1\", type: int32}\n"
                                                "slices:\n"))
    assert featurekit.apply(spec).ok
    t = lance.dataset(project.uri).to_table(columns=["question", "qlen_plus"])
    assert t.schema.field("qlen_plus").type == pa.int32()
    assert t.column("qlen_plus").to_pylist() == [len(q) + 1 for q in t.column("question").to_pylist()]
    assert featurekit.plan(spec).is_noop
    spec = project.write_spec(BASE_SPEC.replace("slices:\n", "  qlen_plus:\n    extractor: sql\n"
                                                "    params: {expr: \"length(question) + 2\", type: int32}\n"
                                                "slices:\n"))
    step = featurekit.plan(spec).step("qlen_plus")
    assert step.action == "recompute"
    assert step.reasons == ('params changed: expr "length(question) + 1" -> "length(question) + 2"',)
    assert featurekit.load_spec(spec).graph.inputs["feature:qlen_plus"] == ("question",)


@pytest.mark.parametrize("params,expected", [
    ('{expr: "length(questoin)", type: int32}',
     "spec.yaml:22:13: features.f.params: unknown column 'questoin': not in the table, the source or any "
     "feature's outputs; did you mean 'question' or 'question_id' or 'question_type'?"),
    ('{expr: "length(question) +", type: int32}',
     "spec.yaml:22:20: features.f.params.expr: invalid SQL expression: cannot parse length(question) +: '+' needs "
     "an expression after it, found the end of the expression (at character 19)"),
    ('{expr: "length(question) / 0", type: int32}',
     "spec.yaml:22:13: features.f.params: invalid SQL expression: length(question) / 0 fails when evaluated on "
     "rows of ordinary values of its columns' types, so it would fail every apply: Divide by zero error"),
    ('{expr: "question", type: int32}',
     "spec.yaml:22:13: features.f.params: the expression gives string, which does not convert to int32"),
    ('{expr: "length(question)", type: int33}',
     "spec.yaml:22:46: features.f.params.type: unknown type 'int33'; one of: bool, int8, int16, int32, int64, "
     "uint8, uint16, uint32, uint64, float32, float64, string, binary, date32, timestamp"),
])
def test_a_bad_sql_feature_is_a_spec_error(project, run_cli, params, expected):
    project.write_spec(BASE_SPEC.replace("slices:\n", f"  f:\n    extractor: sql\n    params: {params}\nslices:\n"))
    code, out, err = run_cli("validate", "spec.yaml", cwd=project.root)
    assert code == 2
    assert err.splitlines()[0] == expected


def test_the_sql_extractor_keeps_the_contract():
    from featurekit.builtin.sql import SqlExpression
    from featurekit.testing import check_extractor
    out = check_extractor(SqlExpression, params={"expr": "length(q) * 2", "type": "int64"},
                          batch={"q": ["ab", "", None]})
    assert out["value"].to_pylist() == [4, 0, None]
