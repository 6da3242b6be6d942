"""Built-in tier-1 text extractors, registered through the same hook as any plugin's."""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from ..plugins.extractor import Extractor, Resources
from ..plugins.hookspecs import hookimpl

# Pure Arrow compute: big batches, and four fragments at once (Arrow and Lance release the GIL;
# on 2 cores 4 beat 2 by 1.30-1.35x -> 0.87-0.92x of raw Lance, benchmarks/apply.py, A/B runs).
VECTORIZED = Resources(batch_size=65536, threads=4)


class TextLength(Extractor):
    """Characters in a string (null stays null)."""

    name = "text.length"
    reuse_values = False  # vectorized Arrow compute: cheaper than hashing its inputs
    resources = VECTORIZED
    inputs = {"text": pa.string()}

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return pc.utf8_length(batch.column("text")).cast(pa.int32())


class ItemCount(Extractor):
    """Items in a list; a null list counts as 0."""

    name = "text.count"
    reuse_values = False  # vectorized Arrow compute: cheaper than hashing its inputs
    resources = VECTORIZED
    inputs = {"items": "list"}

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return pc.list_value_length(batch.column("items")).fill_null(0).cast(pa.int32())


class WordCount(Extractor):
    """Whitespace-separated words in a string (null stays null)."""

    name = "text.word_count"
    reuse_values = False  # vectorized Arrow compute: cheaper than hashing its inputs
    resources = VECTORIZED
    inputs = {"text": pa.string()}

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        text = pc.utf8_trim_whitespace(batch.column("text"))
        words = pc.utf8_split_whitespace(text)
        counts = pc.list_value_length(words)
        # "" splits into [""]: zero words, not one
        return pc.if_else(pc.equal(pc.utf8_length(text), 0), 0, counts).cast(pa.int32())


# Longest phrases first; each maps to its label.
QUESTION_PHRASES: tuple[tuple[str, str], ...] = (
    ("how many", "how many"), ("how much", "how much"), ("how old", "how old"),
    ("what colour", "what color"), ("what color", "what color"), ("what time", "what time"),
    ("what year", "what year"), ("what number", "what number"), ("what brand", "what brand"),
    ("what kind", "what kind"), ("what type", "what kind"), ("what sort", "what kind"),
    ("what", "what"), ("which", "which"), ("whose", "whose"), ("whom", "who"), ("who", "who"),
    ("where", "where"), ("when", "when"), ("why", "why"), ("how", "how"),
    ("is", "is"), ("are", "are"), ("was", "was"), ("were", "were"), ("does", "does"),
    ("do", "do"), ("did", "did"), ("can", "can"), ("could", "could"), ("will", "will"),
    ("would", "would"), ("should", "should"), ("has", "has"), ("have", "have"),
)
QUESTION_TYPES = tuple(dict.fromkeys(label for _, label in QUESTION_PHRASES)) + ("other",)
_WORDS = re.compile(r"[a-z']+")


def question_type(question: str | None) -> str | None:
    """The leading interrogative phrase of a question, or 'other'.

    >>> question_type("How many people are in the photo?")
    'how many'
    """
    if question is None:
        return None
    words = _WORDS.findall(question.lower().replace("what's", "what is").replace("who's", "who is"))
    while words and words[0] in ("and", "so", "then", "ok", "okay", "please", "tell", "me"):
        words = words[1:]
    head = " ".join(words[:2])
    for phrase, label in QUESTION_PHRASES:
        if head == phrase or head.startswith(phrase + " "):
            return label
    return "other"


class QuestionType(Extractor):
    """The leading interrogative phrase of a question (what, how many, is, ...), else 'other'."""

    name = "text.question_type"
    reuse_values = False  # vectorized Arrow compute: cheaper than hashing its inputs
    inputs = {"text": pa.string()}

    def output_type(self) -> pa.DataType:
        return pa.string()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        return pa.array([question_type(q) for q in batch.column("text").to_pylist()], pa.string())


@hookimpl
def featurekit_register_extractors():
    return [TextLength, ItemCount, WordCount, QuestionType]
