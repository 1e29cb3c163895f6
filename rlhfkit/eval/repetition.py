"""How repetitive responses are: a classic sign of a policy exploiting its reward model (the same phrase
said four times over scores well under a reward model and reads badly to a person).

Words are whitespace-separated tokens, lower-cased. No torch.

- ``distinct_2`` (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation
  Models", Sec. 4.1): distinct word bigrams / all word bigrams, over all responses of a system together.
- ``repeat_4_frac``: the share of responses in which some word 4-gram occurs more than once.
"""

from __future__ import annotations

from collections.abc import Sequence


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all n-grams of ``texts`` together; 1.0 when there are no n-grams."""
    grams = [g for text in texts for g in _ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_frac(texts: Sequence[str], n: int = 4) -> float:
    """Share of ``texts`` in which some word n-gram occurs at least twice; 0.0 for no texts."""
    if not texts:
        return 0.0
    repeated = 0
    for text in texts:
        grams = _ngrams(text, n)
        repeated += len(set(grams)) < len(grams)
    return repeated / len(texts)
