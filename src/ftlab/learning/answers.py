"""Scoring generated answers against references: normalised exact match, token F1, final answers.

The normalisation is SQuAD's (lower case, punctuation and the articles a/an/the removed, runs of
white space collapsed), so "The answer is 42." and "the answer is 42" match; token F1 is SQuAD's
bag-of-words F1 of the normalised texts. Answers that reason first and end in a result are scored
by that result: the final number (``final_number``; 1,000 and 1000.0 equal 1000) or the last word
that is one of the task's labels (``label``; the labels are the last words of the train responses).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

ARTICLES = re.compile(r"\b(a|an|the)\b")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    return " ".join(ARTICLES.sub(" ", str(text).lower().translate(PUNCTUATION)).split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the normalised words the two texts share (1.0 when both are empty)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    return 0.0 if common == 0 else 2 * common / (len(pred) + len(ref))


def final_number(text: str) -> float | None:
    """The last number in ``text`` (thousands separators dropped), or None."""
    found = NUMBER.findall(str(text))
    return float(found[-1].replace(",", "")) if found else None


def final_label(text: str, labels: Iterable[str]) -> str | None:
    """The last normalised word of ``text`` that is one of ``labels``, or None."""
    known = set(labels)
    return next((w for w in reversed(normalize(text).split()) if w in known), None)


def label_set(references: Iterable[str]) -> list[str]:
    """The labels a ``label`` answer can end in: the distinct last words of the references."""
    return sorted({words[-1] for words in (normalize(r).split() for r in references) if words})


def answer_correct(prediction: str, reference: str, kind: str, labels: list[str]) -> bool:
    """Whether the prediction's final answer (``final_number`` or ``label``) is the reference's."""
    if kind == "final_number":
        number = final_number(prediction)
        return number is not None and number == final_number(reference)
    label = final_label(prediction, labels)
    return label is not None and label == final_label(reference, labels)
