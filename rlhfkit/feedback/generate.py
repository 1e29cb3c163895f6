"""Live generation of items: K sampled responses per prompt from a policy, with the project's rollout code.

This is the one part of `rlhfkit.feedback` that runs a model: torch, transformers and the rollout code
are imported inside `generate_items`, so the app itself never imports torch.

Every response records how it was made (the model, the sampling settings, the sample's index and
whether it ended with EOS); the item id is a hash of the prompt, the model, the settings and K, so
re-running the same command adds nothing new.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from rlhfkit.feedback.items import ItemRecord, ResponseRecord


@dataclass(frozen=True)
class SamplingSettings:
    """How responses are sampled (see `rlhfkit.rollout.sampling.rollout`)."""

    max_new_tokens: int = 128
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_length: int = 512
    use_chat_template: bool = True
    seed: int = 0


def generate_items(
    model: str,
    prompts_path: str | os.PathLike,
    k: int = 2,
    settings: SamplingSettings = SamplingSettings(),
    batch_size: int = 8,
    limit: int | None = None,
    skip_invalid: bool = False,
) -> Iterator[ItemRecord]:
    """Sample `k` responses for each prompt of `prompts_path` (any file `load_prompts` reads) and yield
    the items, one batch of `batch_size` prompts at a time; `limit` caps the number of prompts.

    Raises:
        ValueError: `k` < 2, `batch_size` < 1, or a temperature <= 0 (K greedy samples would be equal).
        rlhfkit.data.DataError: a bad prompt record (unless `skip_invalid`), or no prompts.
        rlhfkit.models.loading.ModelNotFoundError: `model` cannot be found.
    """
    if k < 2:
        raise ValueError(f"an item needs at least 2 responses; got k={k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if settings.temperature <= 0:
        raise ValueError("temperature must be > 0: greedy decoding would give K identical responses")
    import torch

    from rlhfkit.data import load_prompts
    from rlhfkit.models.loading import load_policy, load_tokenizer
    from rlhfkit.rollout.sampling import Sampling, rollout

    report = load_prompts(prompts_path, skip_invalid=skip_invalid)
    if report.skipped:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    prompts = [record.prompt for record in report.records][:limit]
    tokenizer = load_tokenizer(model, padding_side="left")
    policy = load_policy(model, trainable=False)
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    made_by = {"model": str(model), **asdict(settings)}
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        out = rollout(
            policy, tokenizer, [p for p in batch for _ in range(k)], Sampling.of(settings), generator
        )
        for b, prompt in enumerate(batch):
            rows = range(b * k, (b + 1) * k)
            responses = tuple(
                ResponseRecord(
                    out.response_texts[row],
                    {**made_by, "sample": n, "has_eos": bool(out.has_eos[row])},
                )
                for n, row in enumerate(rows)
            )
            key = json.dumps([prompt, made_by, k, start + b], sort_keys=True)
            item_id = "gen:" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
            yield ItemRecord(
                prompt, responses, item_id, {"source": "generate", "prompts": os.fspath(prompts_path)}
            )
