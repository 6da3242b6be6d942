"""Answer-prior baselines and accuracy per question type, for `featurekit eval`.

Every VQA paper prints what answering without looking scores: the training split's most
frequent answer for every question (``majority``) and its most frequent answer for the
question's type (``type_prior``: "yes" for "is ...", "red" for "what color ..."). A tuned
model below them has learned the answer distribution at best. Both are fitted on the
recipe's training split and scored on the eval rows exactly as the models are: with
`vqa.vqa_accuracy` when the models report ``vqa_accuracy`` (answers compared after EvalAI's
normalization), by equality when they report ``accuracy`` (a classifier's labels).

Votes: a single answer is one vote; a list (the ten humans of VQA v2 / TextVQA) gives each
human answer a vote. Under ``vqa_accuracy`` votes are normalized answers ("Yes." and "yes"
are one answer). Ties go to the first answer in sorted order, so a prior never depends on
row order. A type never seen in training gets the majority answer.

Pure Python: the caller supplies answers, question types and predictions.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .vqa import normalize_answer, vqa_accuracy

MAJORITY = "majority"
TYPE_PRIOR = "type_prior"
VQA = "vqa_accuracy"
EXACT = "accuracy"


def votes(answer: Any, metric: str = VQA) -> list:
    """The answers one row votes for (see the module)."""
    if answer is None:
        return []
    many = [a for a in answer if a is not None] if isinstance(answer, (list, tuple)) else [answer]
    if metric == VQA:
        return [normalize_answer(str(a)) for a in many]
    return many


def most_common(counts: Counter) -> Any:
    """The answer with most votes; ties: the first in sorted order. None without votes."""
    if not counts:
        return None
    top = max(counts.values())
    return min((a for a, c in counts.items() if c == top), key=lambda a: (str(type(a)), str(a)))


def score(prediction: Any, answer: Any, metric: str = VQA) -> float:
    """One prediction's score: VQA accuracy, or 1.0/0.0 for equality."""
    if metric == VQA:
        return vqa_accuracy(None if prediction is None else str(prediction), answer)
    return 1.0 if prediction is not None and prediction == answer else 0.0


@dataclass(frozen=True)
class Priors:
    """The fitted baselines: the majority answer and the majority answer per question type."""

    majority: Any
    by_type: dict[str, Any] = field(default_factory=dict)
    answers: int = 0                  # training rows with an answer

    def answer(self, qtype: str | None) -> Any:
        return self.by_type.get(qtype, self.majority) if qtype is not None else self.majority


def fit(answers: Iterable[Any], types: Iterable[str | None] | None = None, metric: str = VQA) -> Priors:
    """Priors from the training split's answers (and their questions' types, if known)."""
    overall: Counter = Counter()
    per_type: dict[str, Counter] = {}
    rows = 0
    answers = list(answers)
    for answer, qtype in zip(answers, types if types is not None else [None] * len(answers)):
        said = votes(answer, metric)
        if not said:
            continue
        rows += 1
        overall.update(said)
        if qtype is not None:
            per_type.setdefault(qtype, Counter()).update(said)
    return Priors(most_common(overall), {t: most_common(c) for t, c in sorted(per_type.items())}, rows)


def metric_of(metrics: dict[str, dict[str, Any]]) -> str:
    """The score the models report: ``vqa_accuracy`` unless they report ``accuracy`` only."""
    names = {k for m in metrics.values() for k in m}
    return EXACT if EXACT in names and VQA not in names else VQA


def type_counts(types: Sequence[str | None]) -> dict[str, int]:
    """Questions per type, most frequent first (ties by name)."""
    counts = Counter(t for t in types if t is not None)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def with_baselines(metrics: dict[str, dict[str, Any]], predictions: Sequence[dict[str, Any]], answers: Sequence[Any],
                   types: Sequence[str | None] | None, priors: Priors | None, metric: str) -> dict[str, dict[str, Any]]:
    """`metrics` plus ``majority`` and ``type_prior`` (when `priors`; the latter when `types`),
    each with `metric` and ``n``, and ``by_type`` (score per question type) for every model
    whose answers the predictions carry. Each prediction gains the priors' answers and its
    ``question_type``. `answers`/`types`: the truth and type of each prediction, in order."""
    out = {name: dict(m) for name, m in metrics.items()}
    n = len(predictions)
    if priors is not None and n:
        out[MAJORITY] = {}
        if types is not None:
            out[TYPE_PRIOR] = {}
        for i, p in enumerate(predictions):
            p[MAJORITY] = priors.majority
            if types is not None:
                p[TYPE_PRIOR] = priors.answer(types[i])
        for name in (MAJORITY, TYPE_PRIOR) if types is not None else (MAJORITY,):
            scores = [score(p[name], a, metric) for p, a in zip(predictions, answers)]
            out[name] = {metric: sum(scores) / n, "n": n}
    if types is not None:
        for i, p in enumerate(predictions):
            p["question_type"] = types[i]
        order = list(type_counts(types))
        for name, m in out.items():
            if not n or any(name not in p for p in predictions):
                continue
            by: dict[str, list[float]] = {t: [] for t in order}
            for p, a, t in zip(predictions, answers, types):
                if t is not None:
                    by[t].append(score(p[name], a, metric))
            m["by_type"] = {t: sum(s) / len(s) for t, s in by.items()}
    return out
