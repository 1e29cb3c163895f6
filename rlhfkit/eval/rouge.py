"""ROUGE-L of sampled summaries against the human reference summaries of summarize-from-feedback posts.

ROUGE-L (Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", section 3.1): with X the
reference's tokens (length m), Y the response's (length n) and LCS(X, Y) the length of their longest
common subsequence,

    R = LCS / m,   P = LCS / n,   F1 = 2 P R / (P + R)          (0 when LCS = 0 or either is empty)

computed by Google's ``rouge-score`` package (``RougeScorer(["rougeL"], use_stemmer=True)``: lower case,
every run of characters other than a-z and 0-9 a separator, Porter stemming of tokens longer than 3
characters; nothing to download). The score is a number in [0, 1] per response.

Where it applies: prompts that are summarize-from-feedback posts (records with a ``group``, the post id;
:mod:`rlhfkit.data.tldr`) whose file has a ``"ref"`` summary for that post, the post's own TL;DR
(:func:`rlhfkit.data.tldr.load_tldr_sft` with ``target="ref"``). Prompts without a reference are left out
of the ROUGE-L numbers and counted (``n_rouge_prompts``); data of any other format gives no ROUGE-L.

Notation: n prompts, k samples per prompt; responses are (n * k,) lists, prompt-major (element
i * k + j is sample j of prompt i), as in :func:`rlhfkit.stats.paired_comparison`.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Mapping, Sequence

from rlhfkit.data import DataError
from rlhfkit.data.split import DataConfig
from rlhfkit.data.tldr import load_tldr_sft
from rlhfkit.stats import bootstrap_mean_ci, paired_comparison

__all__ = ["human_references", "rouge_l", "rouge_l_table", "mean_words"]

ROUGE_KEYS = ("rouge_l", "rouge_l_low", "rouge_l_high")
DIFF_KEYS = ("rouge_l_diff", "rouge_l_diff_low", "rouge_l_diff_high")


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score.rouge_scorer import RougeScorer  # imports nltk: only when ROUGE is computed

    return RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, response: str) -> float:
    """The ROUGE-L F1 of `response` against `reference`, in [0, 1] (module docstring)."""
    return _scorer().score(reference, response)["rougeL"].fmeasure


def mean_words(texts: Sequence[str]) -> float:
    """The mean number of words (whitespace-separated runs) of `texts`; 0.0 for no texts."""
    return statistics.fmean(len(t.split()) for t in texts) if texts else 0.0


def human_references(data: DataConfig, groups: Sequence[str | None]) -> dict[str, str] | None:
    """``{post id: reference summary}`` of the held-out posts whose file has a human reference, or None
    when the prompts are not summarize-from-feedback posts (some prompt has no group).

    Read with ``load_tldr_sft(data.path, target="ref", ...)`` (the first ``"ref"`` summary of each post),
    with the data section's ``max_query_chars`` and ``skip_invalid``. A file without any reference
    gives ``{}``.

    Raises:
        rlhfkit.data.DataError: a bad row (unless ``data.skip_invalid``).
    """
    if not groups or any(g is None for g in groups):
        return None
    try:
        report = load_tldr_sft(
            data.path, target="ref", max_query_chars=data.max_query_chars, skip_invalid=data.skip_invalid
        )
    except DataError as err:
        if err.line is None and err.reason.startswith("no records"):  # no row has a "ref" summary
            return {}
        raise
    wanted = set(groups)
    return {r.group: r.response for r in report.records if r.group in wanted}


def rouge_l_table(
    groups: Sequence[str],
    responses: Mapping[str, Sequence[str]],
    references: Mapping[str, str],
    baseline: str,
    samples_per_prompt: int = 1,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, dict]:
    """Per policy, the ROUGE-L of its responses against the references, with 95% bootstrap intervals.

    Args:
        groups: (n,) the post id of each prompt.
        responses: policy name -> (n * k,) response texts, prompt-major.
        references: post id -> human reference summary; prompts whose post is not in it are left out.
        baseline: the policy the others are compared with (a key of `responses`).

    Returns:
        ``{policy: {"rouge_l", "rouge_l_low", "rouge_l_high", "n_rouge_prompts"}}``: the mean ROUGE-L F1
        over every sample of the n_r prompts that have a reference, and its percentile-bootstrap interval
        over those prompts (:func:`rlhfkit.stats.bootstrap_mean_ci` of the per-prompt means over the k
        samples); every policy but the baseline also has ``"rouge_l_diff"``, ``"rouge_l_diff_low"`` and
        ``"rouge_l_diff_high"``, its paired mean difference from the baseline (sample j against sample
        j on the same prompt) with its interval over prompts (:func:`rlhfkit.stats.paired_comparison`).
        With no reference at all (n_r = 0) those values are None.

    Raises:
        ValueError: a policy without n * k responses, or a baseline that is not a policy.
    """
    k = samples_per_prompt
    if baseline not in responses:
        raise ValueError(f"baseline {baseline!r} is not one of the policies {sorted(responses)}")
    for name, texts in responses.items():
        if len(texts) != len(groups) * k:
            raise ValueError(f"{name}: {len(texts)} responses for {len(groups)} prompts x {k} samples")
    kept = [i for i, g in enumerate(groups) if g in references]
    scores = {
        name: [rouge_l(references[groups[i]], texts[i * k + j]) for i in kept for j in range(k)]  # (n_r * k,)
        for name, texts in responses.items()
    }
    table = {}
    for name, own in scores.items():
        row: dict = dict.fromkeys(ROUGE_KEYS)
        if name != baseline:
            row.update(dict.fromkeys(DIFF_KEYS))
        if kept:
            per_prompt = [statistics.fmean(own[i * k : (i + 1) * k]) for i in range(len(kept))]  # (n_r,)
            row.update(zip(ROUGE_KEYS, bootstrap_mean_ci(per_prompt, n_boot, seed), strict=True))
            if name != baseline:
                cmp = paired_comparison(own, scores[baseline], k, n_boot, seed)
                row.update(zip(DIFF_KEYS, (cmp.diff, cmp.diff_low, cmp.diff_high), strict=True))
        row["n_rouge_prompts"] = len(kept)
        table[name] = row
    return table
