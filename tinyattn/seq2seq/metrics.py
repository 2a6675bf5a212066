"""Sequence metrics: BLEU as defined in d2l (§10.7 / "Dive into Deep Learning") and exact match.

    BLEU_k = exp(min(0, 1 − len_label / len_pred)) · Π_{n=1..k} p_n^(1/2^n)

p_n = (number of n-grams of the prediction that match an n-gram of the label, each label n-gram
matched at most as often as it occurs there) / (number of n-grams of the prediction). The brevity
factor punishes short predictions; longer n-grams weigh more (1/2^n is smaller, and p_n ≤ 1).
A prediction shorter than n tokens (no n-grams) scores 0.
"""
import math
from collections import Counter

__all__ = ["bleu", "exact_match"]


def _tokens(seq):
    """A space-separated string → its words; any other sequence (list, array row) → a list."""
    if isinstance(seq, str):
        return seq.split(" ") if seq else []
    return [x.item() if hasattr(x, "item") else x for x in seq]


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(pred_tokens, label_tokens, k=2):
    """d2l's BLEU of one prediction against one label (strings, split on spaces, or token lists)."""
    pred, label = _tokens(pred_tokens), _tokens(label_tokens)
    if k < 1:
        raise ValueError(f"bleu: k must be >= 1, got {k}")
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1.0 - len(label) / len(pred)))
    for n in range(1, k + 1):
        total = len(pred) - n + 1
        if total <= 0:
            return 0.0
        available = _ngrams(label, n)
        matches = sum(min(c, available[g]) for g, c in _ngrams(pred, n).items())
        score *= (matches / total) ** (0.5 ** n)
    return score


def exact_match(preds, labels):
    """Fraction of predictions equal to their label, token for token (sequences of ids or strings)."""
    preds, labels = list(preds), list(labels)
    if len(preds) != len(labels):
        raise ValueError(f"exact_match: {len(preds)} predictions but {len(labels)} labels")
    if not preds:
        raise ValueError("exact_match: no predictions")
    return sum(_tokens(p) == _tokens(l) for p, l in zip(preds, labels)) / len(preds)
