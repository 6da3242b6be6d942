"""VQA accuracy: the reference normalization cases and the min(humans / 3, 1) rule."""
import subprocess
import sys

import pytest

from featurekit.training.vqa import mean_vqa_accuracy, normalize_answer, vqa_accuracy


@pytest.mark.parametrize("raw, normalized", [
    # case and surrounding whitespace
    ("  Stop\n", "stop"),
    # punctuation: deleted next to a space, a space inside a word, periods dropped unless decimal
    ("coca-cola", "coca cola"),
    ("yes!", "yes"),
    ("hello , world", "hello world"),
    ("left/right", "left right"),
    ("u.s.", "us"),
    ("2.5", "2.5"),
    ("the end.", "end"),
    ("1,000", "1000"),
    ('"stop"', "stop"),
    # articles
    ("a dog", "dog"),
    ("The Hobbit", "hobbit"),
    ("an apple", "apple"),
    # number words 0-10 become digits; others stay
    ("two", "2"),
    ("ten", "10"),
    ("none", "0"),
    ("eleven", "eleven"),
    ("two dogs", "2 dogs"),
    # contractions get their apostrophe
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("whats up", "what's up"),
    ("it's", "it's"),
])
def test_normalization_matches_the_reference_cases(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_a_single_reference_counts_as_three_humans():
    assert vqa_accuracy("Stop.", "stop") == 1.0
    assert vqa_accuracy("two", "2") == 1.0
    assert vqa_accuracy("go", "stop") == 0.0
    assert vqa_accuracy(None, "stop") == 0.0


def test_ten_humans_give_partial_credit_below_three():
    answers = ["stop"] * 2 + ["stop sign"] * 8
    assert vqa_accuracy("stop", answers) == pytest.approx(2 / 3)
    assert vqa_accuracy("the stop sign", answers) == 1.0
    assert vqa_accuracy("STOP!", ["stop", "go", "go"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("stop", ["stop"] * 3 + ["go"] * 7) == 1.0


def test_mean_accuracy_and_count():
    out = mean_vqa_accuracy(["stop", "3", "dell"], ["stop", "three", ["hp"] * 10])
    assert out == {"vqa_accuracy": pytest.approx(2 / 3), "n": 3}
    assert mean_vqa_accuracy([], []) == {"vqa_accuracy": 0.0, "n": 0}


def test_importing_it_pulls_in_nothing_heavy():
    # (the featurekit package itself brings pyarrow; the module adds nothing)
    code = "import sys, featurekit.training.vqa; print(sorted(m for m in ('torch', 'transformers', 'lance') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
