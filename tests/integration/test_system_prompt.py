"""``data.system_prompt`` reaches the rendered prompt in SFT, in sampling (rollout) and in eval, on a tiny
policy whose tokenizer has a chat template, and is saved with the trained model."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoTokenizer

from rlhfkit.data.split import DataConfig
from rlhfkit.data.templates import set_system_prompt, system_prompt_of
from rlhfkit.eval.evaluate import EvalConfig, evaluate
from rlhfkit.rewards import RewardSpec
from rlhfkit.rollout import sampling as sampling_module
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.rollout.items import GenerateConfig, generate
from rlhfkit.trainers import sft as sft_module
from rlhfkit.trainers.sft import SFTConfig, train_sft

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SYSTEM = 'You are "Ava", a kind support agent. Say {{Order Number}} for 100% of unknown ids.'
FIELDS = {"prompt": "instruction", "response": "response"}


@pytest.fixture(scope="module")
def chat_policy(tmp_path_factory, tiny_policy_dir):
    """The tiny policy with a chat template (and no system prompt of its own)."""
    path = tmp_path_factory.mktemp("chat_policy") / "policy"
    shutil.copytree(tiny_policy_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("support") / "support.csv"
    rows = [f"where is order {i},I'm sorry to hear that. Check tracking {i}." for i in range(16)]
    path.write_text("instruction,response\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def rendered(monkeypatch):
    """Every prompt the rollout code renders, as text (rollout() of generate, PPO and eval)."""
    seen: list[str] = []
    encode = sampling_module.encode_prompts

    def spy(tokenizer, prompts, *args, **kwargs):
        ids, mask = encode(tokenizer, prompts, *args, **kwargs)
        seen.extend(tokenizer.decode(row[m.bool()]) for row, m in zip(ids, mask, strict=True))
        return ids, mask

    monkeypatch.setattr(sampling_module, "encode_prompts", spy)
    return seen


def test_set_system_prompt_replaces_and_keeps_an_own_system_message(chat_policy):
    tokenizer = AutoTokenizer.from_pretrained(chat_policy)
    set_system_prompt(tokenizer, "first")
    set_system_prompt(tokenizer, SYSTEM)  # replaced, not stacked
    user = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert text == f"<|system|>{SYSTEM}\n<|user|>hi\n<|assistant|>"
    own = [{"role": "system", "content": "own rules"}, *user]
    assert tokenizer.apply_chat_template(own, tokenize=False).startswith("<|system|>own rules\n<|user|>")
    assert system_prompt_of(tokenizer) == SYSTEM
    bare = AutoTokenizer.from_pretrained(chat_policy)
    bare.chat_template = None
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        set_system_prompt(bare, SYSTEM)


def test_sft_trains_on_the_system_prompt_and_saves_it_with_the_model(
    tmp_path, chat_policy, table, monkeypatch
):
    encoded: list[str] = []
    encode = sft_module.encode_sft

    def spy(tokenizer, example, *args):
        ids, mask = encode(tokenizer, example, *args)
        encoded.append(tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m == 0]))
        return ids, mask

    monkeypatch.setattr(sft_module, "encode_sft", spy)
    out = tmp_path / "sft"
    data = DataConfig(path=str(table), fields=FIELDS, eval_fraction=0.25, system_prompt=SYSTEM)
    train_sft(SFTConfig(model=str(chat_policy), output_dir=str(out), data=data, max_steps=1, batch_size=4))
    assert encoded and all(text.startswith(f"<|system|>{SYSTEM}\n<|user|>where is order") for text in encoded)
    saved = AutoTokenizer.from_pretrained(out)  # plain transformers renders it too
    text = saved.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text.startswith(f"<|system|>{SYSTEM}\n<|user|>hi")


def test_sampling_renders_the_system_prompt(tmp_path, chat_policy, table, rendered):
    out = tmp_path / "items.jsonl"
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0)
    cfg = GenerateConfig(
        policy=str(chat_policy), prompts=str(table), fields=FIELDS, system_prompt=SYSTEM, output=str(out),
        k=2, limit=3, sampling=sampling,
    )  # fmt: skip
    generate(cfg)
    assert len(rendered) == 6 and all(text.startswith(f"<|system|>{SYSTEM}\n<|user|>") for text in rendered)
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert items[0]["responses"][0]["system_prompt"] == SYSTEM  # recorded with the sampling settings


def test_eval_renders_the_system_prompt_for_every_policy(
    tmp_path, chat_policy, table, tiny_reward_dir, rendered
):
    data = DataConfig(path=str(table), fields=FIELDS, eval_fraction=0.25, system_prompt=SYSTEM)
    evaluate(
        EvalConfig(
            baseline=str(chat_policy), policies=[str(chat_policy)],
            judges=[RewardSpec(kind="model", path=str(tiny_reward_dir))], output_dir=str(tmp_path / "eval"),
            data=data, num_prompts=2, sampling=SamplingConfig(max_new_tokens=4), batch_size=2, n_boot=20,
        )
    )  # fmt: skip
    assert len(rendered) >= 4 and all(text.startswith(f"<|system|>{SYSTEM}\n<|user|>") for text in rendered)
