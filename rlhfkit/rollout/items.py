"""``rlhfkit generate``: K sampled responses per prompt from a policy, written as item records.

The feedback app never runs a model: this command samples the responses with the project's rollout code
and writes them as item records (JSONL, :mod:`rlhfkit.data.items`), which ``rlhfkit annotate load``
then puts into a project::

    rlhfkit generate policy=runs/hh-demo/sft prompts=prompts.jsonl k=2 output=runs/items.jsonl
    rlhfkit annotate load --project demo runs/items.jsonl

Every response records how it was made (the model, the sampling settings, the sample's index and
whether it ended with EOS); the item id is a hash of the prompt, the model, the settings, K and the
prompt's position, so loading the output of the same command twice adds nothing new.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.config import option
from rlhfkit.data import load_prompts
from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.data.tables import Columns
from rlhfkit.data.templates import system_prompt_of
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.rollout.sampling import Rollout, rollout


@dataclass
class GenerateConfig:
    """Sample K responses per prompt from a policy and write them as items for the feedback app."""

    # the flags of the old `rlhfkit annotate generate`, now keys of the sampling section
    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    policy: str = option(
        "smollm2-135m-instruct", "policy to sample from: a folder, a built-in name or a hub id"
    )
    prompts: str = option(
        "prompts.jsonl", "prompts file ({prompt} or preference records; a CSV/TSV table with fields.prompt)"
    )
    fields: dict[str, str] = option({}, "which column holds each field (as data.fields): fields.prompt=...")
    filter: dict[str, str | list[str]] = option({}, "keep only rows with this column value, as data.filter")
    system_prompt: str | None = option(
        None, "system message rendered before every prompt (null: the one the policy was saved with)"
    )
    output: str = option(
        "runs/items.jsonl", "the item records (JSONL) to write; `rlhfkit annotate load` reads it"
    )
    k: int = option(
        2,
        "responses per prompt: 2 or more for a comparison item; 1 for a rating item (load those with "
        "`annotate load --question thumbs|likert`)",
    )
    sampling: SamplingConfig = option(
        SamplingConfig(max_prompt_length=512, max_new_tokens=128, temperature=0.8),
        "how responses are sampled (temperature > 0: K greedy samples would be equal)",
    )
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    seed: int = option(0, "sampling seed")
    batch_size: int = option(8, "prompts per sampling batch (each repeated K times)")
    limit: int | None = option(None, "use only the first N prompts (null: every one)")
    skip_invalid: bool = option(False, "count and report bad prompt records instead of stopping at the first")

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"an item needs at least 1 response (2 to compare); got k={self.k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")
        if self.sampling.temperature <= 0 and self.k > 1:
            raise ValueError(
                "sampling.temperature must be > 0: greedy decoding would give K identical responses"
            )
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or null); got {self.limit}")


def generate_items(cfg: GenerateConfig) -> Iterator[ItemRecord]:
    """The items: ``cfg.k`` responses for each prompt of ``cfg.prompts`` (any file ``load_prompts``
    reads), sampled one batch of ``cfg.batch_size`` prompts at a time.

    Raises:
        rlhfkit.data.DataError: a bad prompt record (unless ``cfg.skip_invalid``), or no prompts.
        rlhfkit.models.loading.ModelNotFoundError: ``cfg.policy`` cannot be found.
    """
    columns = Columns(dict(cfg.fields), dict(cfg.filter))
    report = load_prompts(cfg.prompts, skip_invalid=cfg.skip_invalid, columns=columns)
    if report.skipped or report.filtered:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    prompts = [record.prompt for record in report.records][: cfg.limit]
    tokenizer, policy = load_sampler(cfg.policy, cfg.system_prompt)
    made_by = {
        "model": str(cfg.policy),
        **sampling_record(tokenizer, cfg.sampling, cfg.use_chat_template, cfg.seed),
    }
    batches = sample_batches(
        policy, tokenizer, prompts, cfg.sampling, cfg.k, cfg.use_chat_template, cfg.seed, cfg.batch_size
    )
    for start, batch, out in batches:
        for b, prompt in enumerate(batch):
            responses = tuple(
                ResponseRecord(
                    out.response_texts[row], {**made_by, "sample": n, "has_eos": bool(out.has_eos[row])}
                )
                for n, row in enumerate(range(b * cfg.k, (b + 1) * cfg.k))
            )
            key = json.dumps([prompt, made_by, cfg.k, start + b], sort_keys=True)
            item_id = "gen:" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
            yield ItemRecord(prompt, responses, item_id, {"source": "generate", "prompts": cfg.prompts})


def load_sampler(
    path: str, system_prompt: str | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``(tokenizer, policy)`` to sample from: the tokenizer left-padded (with `system_prompt` in its chat
    template, or the one the policy was saved with), the policy loaded for inference (not trainable).

    Raises:
        rlhfkit.models.loading.ModelNotFoundError: `path` cannot be found.
    """
    tokenizer = load_tokenizer(path, padding_side="left", system_prompt=system_prompt)
    return tokenizer, load_policy(path, trainable=False)


def sampling_record(
    tokenizer: PreTrainedTokenizerBase, sampling: SamplingConfig, use_chat_template: bool, seed: int
) -> dict:
    """How a response was sampled, as its metadata records it: the sampling section's keys,
    ``use_chat_template``, ``seed`` and, when the tokenizer has one, ``system_prompt``."""
    record = {**asdict(sampling), "use_chat_template": use_chat_template, "seed": seed}
    if system_prompt_of(tokenizer) is not None:  # the items of a run without one keep their ids
        record["system_prompt"] = system_prompt_of(tokenizer)
    return record


def sample_batches(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    sampling: SamplingConfig,
    k: int,
    use_chat_template: bool,
    seed: int,
    batch_size: int,
    desc: str = "generate",
) -> Iterator[tuple[int, list, Rollout]]:
    """``(start, batch, rollout)`` per batch of `batch_size` prompts (``prompts[start:start + B]``), each
    prompt repeated `k` times in a row: the rollout's rows ``b * k .. (b + 1) * k - 1`` answer
    ``batch[b]``. One generator seeded with `seed` draws every batch, so the same prompts, settings and
    seed give the same responses."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        batch = prompts[start : start + batch_size]
        repeated = [p for p in batch for _ in range(k)]
        out = rollout(
            policy, tokenizer, repeated, sampling, use_chat_template=use_chat_template, generator=generator
        )
        yield start, batch, out


def generate(cfg: GenerateConfig) -> Path:
    """Write :func:`generate_items` to ``cfg.output`` (JSONL, atomically: a crash leaves no half file).

    Returns:
        The output path.
    """
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for item in generate_items(cfg):
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, out)
    print(f"[rlhfkit] {n} items ({cfg.k} responses each) from {cfg.policy} -> {out}", flush=True)
    print(f"[rlhfkit] load them: rlhfkit annotate load --project <name> {out}", flush=True)
    return out
