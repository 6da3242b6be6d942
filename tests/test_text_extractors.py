import pyarrow as pa
import pytest

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
