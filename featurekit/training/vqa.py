"""The standard VQA accuracy, as EvalAI's ``vqaEval.py`` (the VQA v2 / TextVQA evaluation)
computes it.

Per question with N human answers (ten in VQA v2 and TextVQA): for each of the N
leave-one-out subsets of N-1 humans, ``min(1, humans in the subset who gave the predicted
answer / 3)``; the question scores the mean over the N subsets. Three humans of ten agreeing
score 0.9 (not 1.0), two score 0.6. With a single reference answer (a string, as in easy-vqa)
the score is the exact match of the normalized answers, 1.0 or 0.0.

Answers are compared after the reference's normalization (``processPunctuation`` then
``processDigitArticle``), quirks included: newlines and tabs become spaces; punctuation
next to a space (or anywhere in a text with a comma between digits, "1,000") is deleted,
otherwise replaced by a space ("coca-cola" -> "coca cola"); a period is deleted unless a
digit follows ("2.5" stays; at most 32 periods, as the reference's ``re.UNICODE`` passed as
the count does); lower case; number words zero-ten as digits; articles dropped; contractions
written with their apostrophe ("dont" -> "don't"). The reference normalizes the humans'
answers with punctuation only (the VQA v2 annotation files store them normalized already);
here they get the same normalization as the prediction, as TextVQA's evaluator (EvalAI's
answer processor) does, which changes nothing for already-normalized answers.

Pure Python with no imports beyond ``re``, so any trainer can score predictions the way
published VQA numbers are scored.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

# Punctuation the reference removes; "." and "'" are handled separately (decimals, contractions).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
               ",", "?", "!")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_DECIMAL = re.compile(r"(?!<=\d)(\.)(?!\d)")   # the reference's pattern, kept as is

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# Contractions written without their apostrophe -> the reference spelling.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "id've": "i'd've", "i'dve": "i'd've", "im": "i'm",
    "ive": "i've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}

HUMANS_FOR_FULL_CREDIT = 3
MAX_PERIODS_STRIPPED = 32  # the reference calls periodStrip.sub("", text, re.UNICODE): count=re.UNICODE=32
METRIC = ("VQA accuracy (EvalAI vqaEval.py: mean over the leave-one-out subsets of the human answers "
          "of min(1, matches / 3))")


def strip_punctuation(text: str) -> str:
    """Punctuation as the reference treats it: a mark next to a space (or any text with a
    comma between digits, "1,000") is deleted, otherwise it becomes a space ("left-hand"
    -> "left hand"); a period is deleted unless a digit follows ("2.5" stays)."""
    out = text
    delete = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        if delete or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_DECIMAL.sub("", out, count=MAX_PERIODS_STRIPPED)


def normalize_words(text: str) -> str:
    """Number words as digits, articles dropped, contractions with their apostrophe."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """An answer as VQA evaluation compares it: "The Coca-Cola." -> "coca cola"."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    return normalize_words(strip_punctuation(text))


def vqa_accuracy(prediction: str | None, answers: str | Iterable[str]) -> float:
    """EvalAI's accuracy of one prediction against the humans' answers (see the module).

    `answers`: the humans' answers (TextVQA and VQA v2 keep ten per question; None entries
    are ignored), or a single reference string, scored as an exact normalized match.
    """
    if prediction is None:
        return 0.0
    predicted = normalize_answer(prediction)
    if isinstance(answers, str):
        return 1.0 if normalize_answer(answers) == predicted else 0.0
    hits = [normalize_answer(a) == predicted for a in answers if a is not None]
    if not hits:
        return 0.0
    matches = sum(hits)
    # each human left out once: the others who gave the predicted answer, over three, capped at 1
    scores = [min(1.0, (matches - hit) / HUMANS_FOR_FULL_CREDIT) for hit in hits]
    return sum(scores) / len(scores)


def mean_vqa_accuracy(predictions: Iterable[str | None], answers: Iterable[str | Iterable[str]]) -> dict[str, float]:
    """{"vqa_accuracy": mean of `vqa_accuracy` over questions, "n": number of questions}."""
    scores = [vqa_accuracy(p, a) for p, a in zip(predictions, answers)]
    return {"vqa_accuracy": sum(scores) / len(scores) if scores else 0.0, "n": len(scores)}
