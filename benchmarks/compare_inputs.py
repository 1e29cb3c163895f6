"""Inputs that ``benchmarks/compare_trl.py`` builds once, in its parent process, for both sides.

- Model folders: SmolLM2-135M-Instruct (the safetensors folder rlhfkit converts from the GGUF once) and
  all-MiniLM-L6-v2, or with ``--tiny`` random 2-layer Llama / BERT models built with the test suite's
  builders (``tests/conftest.py``).
- A reward model for the RL cases: the policy's backbone with a fresh one-label head, seeded and saved once
  (in a child process), so that both sides score with the same weights. TRL 1.12's PPO needs the reward
  and value models to share the policy's tokenizer, hence a SmolLM2 backbone.
- Data: the first ``batch x steps`` valid HH-RLHF pairs, written as ``{prompt, chosen, rejected}`` JSONL for
  rlhfkit, and as TRL rows in the exact order rlhfkit's trainers will consume them (the same split and
  batch shuffles, replayed). TRL rows are built from rlhfkit's own tokenisation (chat template, prompt
  truncated from the left, response cut to fit), so both sides train on the same tokens: pre-tokenised
  where TRL accepts it (SFT, reward, PPO), else the decoded text of those tokens (DPO, GRPO/RLOO prompts).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import multiprocessing
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, LlamaForCausalLM

from rlhfkit.data import PreferencePair, join_prompt_response, load_preferences, train_eval_split
from rlhfkit.data.collate import encode_pair, encode_prompt, encode_sft
from rlhfkit.data.records import SFTExample
from rlhfkit.models.builtin import MINILM, SMOLLM2, builtin_model_dir
from rlhfkit.models.loading import load_reward_model, load_tokenizer
from rlhfkit.models.reward import load_reward_tokenizer
from rlhfkit.trainers.training import batches

USE_CHAT_TEMPLATE = True  # rlhfkit's default in every trainer


def model_folders(tiny: bool, workdir: Path, with_reward: bool) -> dict[str, str]:
    """Local folders of the ``policy`` (SmolLM2), ``minilm`` and (``with_reward``) RL ``reward`` models."""
    if tiny:
        folders = _tiny_models(workdir)
    else:
        folders = {"policy": str(builtin_model_dir(SMOLLM2)), "minilm": str(builtin_model_dir(MINILM))}
    if not with_reward:
        return folders
    folders["reward"] = str(workdir / "reward-model")
    child = multiprocessing.get_context("spawn").Process(
        target=save_reward_model, args=(folders["policy"], folders["reward"])
    )
    child.start()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"building the reward model in {folders['reward']} failed")
    return folders


def save_reward_model(backbone: str, target: str, seed: int = 0) -> None:
    """Save ``backbone`` with a fresh one-label head (seeded) as a sequence classifier in ``target``."""
    torch.manual_seed(seed)
    load_reward_model(backbone).save_pretrained(target)
    load_tokenizer(backbone).save_pretrained(target)


def _tiny_models(workdir: Path) -> dict[str, str]:
    """A tiny random Llama policy and a tiny BERT reward backbone, as the test suite builds them."""
    spec = importlib.util.spec_from_file_location("conftest", Path(__file__).parents[1] / "tests/conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    folders = {"policy": str(workdir / "tiny-policy"), "minilm": str(workdir / "tiny-bert")}
    tokenizer = conftest._bpe_tokenizer()
    torch.manual_seed(0)
    policy = LlamaForCausalLM(conftest._llama_config(tokenizer))
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    policy.save_pretrained(folders["policy"])
    tokenizer.save_pretrained(folders["policy"])
    wordpiece = conftest._wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(wordpiece),
        hidden_size=conftest.HIDDEN,
        num_hidden_layers=conftest.LAYERS,
        num_attention_heads=conftest.HEADS,
        intermediate_size=conftest.INTERMEDIATE,
        max_position_embeddings=512,
        pad_token_id=wordpiece.pad_token_id,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folders["minilm"])
    wordpiece.save_pretrained(folders["minilm"])
    return folders


def load_pairs(path: str) -> list[PreferencePair]:
    """The valid HH-RLHF pairs of ``path`` (the few without a shared prompt are skipped)."""
    return load_preferences(path, skip_invalid=True).records


def consumption_order(n: int, batch_size: int, steps: int, seed: int) -> list[int]:
    """Indices of ``n`` records in the order an rlhfkit trainer consumes them: the train/eval split
    (``eval_fraction=0``, ``split_seed=seed``) and then the seeded batch shuffle, for ``steps`` batches."""
    train, _ = train_eval_split(list(range(n)), 0.0, seed)
    return [i for batch in itertools.islice(batches(train, batch_size, seed), steps) for i in batch]


def write_case_data(spec: dict, pairs: list[PreferencePair], folder: Path) -> dict[str, str]:
    """Write the case's rows for both sides into ``folder``; returns the paths of the two files."""
    rows = pairs[: spec["batch_size"] * spec["steps"]]
    if len(rows) < spec["batch_size"] * spec["steps"]:
        raise ValueError(f"{spec['name']}: needs {spec['batch_size'] * spec['steps']} pairs, has {len(rows)}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"rlhfkit_data": str(folder / "rlhfkit.jsonl"), "trl_data": str(folder / "trl.jsonl")}
    _write_jsonl(
        paths["rlhfkit_data"],
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in rows],
    )
    load, trl_row = TRL_ROWS[spec["kind"]]
    tokenizer = load(spec["model"])
    order = consumption_order(len(rows), spec["batch_size"], spec["steps"], spec["seed"])
    _write_jsonl(paths["trl_data"], [trl_row(tokenizer, rows[i], spec) for i in order])
    return paths


def _text(tokenizer, ids: list[int]) -> str:
    """The text of ``ids`` that tokenises back to them (checked on the HH rows with SmolLM2)."""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _sft_row(tokenizer, pair: PreferencePair, spec: dict) -> dict:
    example = SFTExample(pair.prompt, pair.chosen)
    ids, mask = encode_sft(
        tokenizer, example, spec["max_length"], spec["max_prompt_length"], USE_CHAT_TEMPLATE
    )
    return {"input_ids": ids, "completion_mask": mask}


def _reward_row(tokenizer, pair: PreferencePair, spec: dict) -> dict:
    """Dialogue ids, left-truncated, as rlhfkit's reward trainer tokenises them (no EOS appended)."""

    def ids(response: str) -> list[int]:
        text = join_prompt_response(pair.prompt, response)
        return tokenizer(text, truncation=True, max_length=spec["max_length"]).input_ids

    return {"chosen_ids": ids(pair.chosen), "rejected_ids": ids(pair.rejected)}


def _dpo_row(tokenizer, pair: PreferencePair, spec: dict) -> dict:
    lengths = (spec["max_length"], spec["max_prompt_length"], USE_CHAT_TEMPLATE)
    (chosen, mask), (rejected, _) = encode_pair(tokenizer, pair, *lengths)
    start = mask.index(1)  # the prompt's length, the same in both rows
    return {
        "prompt": _text(tokenizer, chosen[:start]),
        "chosen": _text(tokenizer, chosen[start:]),
        "rejected": _text(tokenizer, rejected[start:]),
    }


def _prompt_ids(tokenizer, pair: PreferencePair, spec: dict) -> list[int]:
    return encode_prompt(tokenizer, pair.prompt, spec["max_prompt_length"], USE_CHAT_TEMPLATE)


def _ppo_row(tokenizer, pair: PreferencePair, spec: dict) -> dict:
    return {"input_ids": _prompt_ids(tokenizer, pair, spec)}


def _group_row(tokenizer, pair: PreferencePair, spec: dict) -> dict:
    return {"prompt": _text(tokenizer, _prompt_ids(tokenizer, pair, spec))}


# kind -> (tokenizer loader, pair -> TRL row): rlhfkit's tokens, pre-tokenised where TRL takes ids
TRL_ROWS = {
    "sft": (load_tokenizer, _sft_row),
    "reward": (load_reward_tokenizer, _reward_row),
    "dpo": (load_tokenizer, _dpo_row),
    "grpo": (load_tokenizer, _group_row),
    "rloo": (load_tokenizer, _group_row),
    "ppo": (load_tokenizer, _ppo_row),
}


def _write_jsonl(path: str, rows: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
