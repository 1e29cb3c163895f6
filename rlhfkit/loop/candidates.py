"""A round's candidates: K sampled responses per prompt, every pair of them scored by the current reward
model(s), and the pairs a strategy selects.

Notation:
    P  prompts of the round, K responses each
    N  candidate pairs (``rlhfkit.loop.selection.candidate_pairs``)
    M  reward models scoring them
"""

from __future__ import annotations

from typing import Any

import torch

from rlhfkit.data import Prompt
from rlhfkit.loop.config import CandidatesConfig
from rlhfkit.loop.scoring import RewardScorer
from rlhfkit.loop.selection import CandidatePair, Selection, pair_rewards, preference_probs
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.rollout.sampling import rollout


def sample_candidates(
    policy: str,
    prompts: list[Prompt],
    cfg: CandidatesConfig,
    seed: int,
    system_prompt: str | None = None,
    k: int | None = None,
) -> list[dict]:
    """``{"prompt", "responses": [K texts], "has_eos": [K bools]}`` per prompt, sampled from ``policy`` with
    the project's rollout code (KV cache, cut after the first EOS), seeded by ``seed``, under the run's
    ``system_prompt`` (None: the one the policy was saved with, if any); K is `k` (default ``cfg.k``)."""
    k = k or cfg.k
    tokenizer = load_tokenizer(policy, system_prompt=system_prompt)
    model = load_policy(policy, cfg.dtype, trainable=False)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    out = []
    for start in range(0, len(prompts), cfg.batch_size):
        batch = prompts[start : start + cfg.batch_size]
        ro = rollout(
            model,
            tokenizer,
            [p for p in batch for _ in range(k)],
            cfg.sampling,
            use_chat_template=cfg.use_chat_template,
            generator=generator,
        )
        for b, prompt in enumerate(batch):
            rows = range(b * k, (b + 1) * k)
            out.append(
                {
                    "prompt": prompt,
                    "responses": [ro.response_texts[i] for i in rows],
                    "has_eos": [bool(ro.has_eos[i]) for i in rows],
                }
            )
    return out


def member_probs(
    members: list[str], candidates: list[dict], pairs: list[CandidatePair], max_length: int, batch_size: int
) -> torch.Tensor:
    """(M, N) each reward model's Bradley-Terry probability that response a of each pair is better; (0, N)
    when there are no members. Each of the P * K responses is scored once per member."""
    prompts = [c["prompt"] for c in candidates for _ in c["responses"]]
    responses = [r for c in candidates for r in c["responses"]]
    shape = (len(candidates), len(candidates[0]["responses"]))  # (P, K)
    rewards = torch.empty(0, *shape)  # (M, P, K)
    if members:
        scores = [RewardScorer.load(m, max_length, batch_size)(prompts, responses) for m in members]
        rewards = torch.stack(scores).view(len(members), *shape)
    return preference_probs(*pair_rewards(rewards, pairs))


def selected_records(
    candidates: list[dict], pairs: list[CandidatePair], selection: Selection, strategy: str
) -> list[dict[str, Any]]:
    """The ``selected.jsonl`` records of a selection, best first."""
    return [
        {
            "prompt": candidates[pairs[i].prompt]["prompt"],
            "response_a": candidates[pairs[i].prompt]["responses"][pairs[i].a],
            "response_b": candidates[pairs[i].prompt]["responses"][pairs[i].b],
            "selection_score": round(score, 6),
            "strategy": strategy,
        }
        for i, score in zip(selection.indices, selection.scores, strict=True)
    ]
