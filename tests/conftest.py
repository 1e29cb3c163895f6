"""Session fixtures: tiny random-weight models and toy data, all built locally (nothing is downloaded).

ARCHITECTURE.md rule 6: integration tests run real code on tiny models (2 layers, hidden 64) on CPU.
The builders live here and are exposed only as fixtures:

- ``tiny_tokenizer``: byte-level BPE (vocab ~400) trained on ``CORPUS``, EOS ``<|eos|>``, pad ``<|pad|>``.
- ``tiny_policy_dir``: a ``LlamaForCausalLM`` + that tokenizer, saved with ``save_pretrained``.
- ``tiny_gpt2_policy_dir``: a ``GPT2LMHeadModel`` (absolute positions) + that tokenizer.
- ``tiny_reward_dir``: a one-label ``LlamaForSequenceClassification`` + the same tokenizer.
- ``tiny_bert_reward_dir``: a one-label ``BertForSequenceClassification`` + its own WordPiece tokenizer
  (a different tokenizer than the policy's, to exercise re-tokenisation).
- ``toy_preferences`` / ``toy_hh_file``: 64 preference pairs separable by a word rule
  (chosen says "good"/"yes", rejected says "bad"/"no"), as TRL JSONL and as HH dialogues in JSONL.gz.
- ``autocast_spy``: records which functions of a ``bf16=true`` run ran under bfloat16 autocast.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

torch.set_num_threads(2)

EOS, PAD = "<|eos|>", "<|pad|>"
VOCAB_SIZE = 400
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 64, 2, 4, 2, 128

CORPUS = [
    "Human: Is this a good idea? Assistant: Yes, it is a good idea.",
    "Human: Is this a bad idea? Assistant: No, it is a bad idea.",
    "Human: Can you help me with my homework? Assistant: Yes, I can help you with that.",
    "Human: Should I eat the whole cake? Assistant: No, that would be bad for you.",
    "Human: What is a good name for a dog? Assistant: Rex is a good name for a dog.",
    "Human: Do you like music? Assistant: Yes, I like good music very much.",
    "Human: Was the movie good? Assistant: The movie was good, I think you will enjoy it.",
    "Human: Was the food bad? Assistant: The food was bad and the service was slow.",
    "Human: Can I trust this website? Assistant: No, it looks like a bad website.",
    "Human: Is it going to rain today? Assistant: Yes, take an umbrella with you.",
    "Human: Tell me a story. Assistant: Once upon a time there was a good little robot.",
    "Human: How do I bake bread? Assistant: Mix flour, water, salt and yeast, then bake it.",
    "Human: What is the capital of France? Assistant: The capital of France is Paris.",
    "Human: Thank you for the help. Assistant: You are welcome, have a good day.",
    "Human: Is running good for health? Assistant: Yes, running is good for the heart.",
    "Human: Is smoking bad for you? Assistant: Yes, smoking is bad for your lungs.",
    "The quick brown fox jumps over the lazy dog.",
    "A good answer is helpful, honest and harmless.",
    "A bad answer is rude, wrong or unhelpful.",
    "Yes or no, the assistant should always be polite to the human.",
    "No, I do not know the answer to that question.",
    "Yes, I think that is a very good question.",
    "The weather is nice and the sun is shining.",
    "I would like a cup of tea and a slice of cake, please.",
    "Learning to code takes time, practice and patience.",
    "The cat sat on the mat and looked out of the window.",
    "Please write a short poem about the sea.",
    "What time is it? It is ten o'clock in the morning.",
    "Reinforcement learning from human feedback trains a reward model first.",
    "The policy samples answers and the reward model scores them.",
    "Good morning! How are you today? I am fine, thank you.",
    "That is not good, that is bad. Yes, no, maybe.",
    "Numbers: one, two, three, four, five, six, seven, eight, nine, ten.",
    "Assistant: Sure! Here is a list of good books to read this summer.",
]


def _bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (vocab ``VOCAB_SIZE``) trained on ``CORPUS``; no chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)


def _wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A BERT-style uncased WordPiece tokenizer trained on ``CORPUS``: ``[CLS] text [SEP]``."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def _llama_config(tokenizer: PreTrainedTokenizerFast, **extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        **extra,
    )


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The policy's byte-level BPE tokenizer (EOS ``<|eos|>`` and pad ``<|pad|>`` are distinct ids).

    Shared by the session: tests that change ``padding_side`` or other attributes should load their own
    copy from ``tiny_policy_dir`` instead.
    """
    return _bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Folder with a random ``LlamaForCausalLM`` (hidden 64, 2 layers) and ``tiny_tokenizer``."""
    path = tmp_path_factory.mktemp("tiny_policy")
    torch.manual_seed(0)
    model = LlamaForCausalLM(_llama_config(tiny_tokenizer))
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_policy_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Folder with a random ``GPT2LMHeadModel`` (hidden 64, 2 layers) and ``tiny_tokenizer``.

    GPT-2 has learned absolute position embeddings, so unlike the rotary Llama it notices when left
    padding shifts the position ids: use it to check position handling.
    """
    path = tmp_path_factory.mktemp("tiny_gpt2_policy")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tiny_tokenizer),
        n_positions=512,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        tie_word_embeddings=False,  # tied, a random GPT-2 just repeats its last token
        bos_token_id=tiny_tokenizer.eos_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Folder with a random one-label ``LlamaForSequenceClassification`` and ``tiny_tokenizer``."""
    path = tmp_path_factory.mktemp("tiny_reward")
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(_llama_config(tiny_tokenizer, num_labels=1))
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_reward_dir(tmp_path_factory) -> Path:
    """Folder with a random one-label ``BertForSequenceClassification`` and its own WordPiece tokenizer."""
    path = tmp_path_factory.mktemp("tiny_bert_reward")
    tokenizer = _wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


QUESTIONS = [
    "Is this plan worth trying?",
    "Should I learn to cook?",
    "Can you help me write a letter?",
    "Is it safe to swim here?",
    "Do you think the movie was worth it?",
    "Will the bread rise overnight?",
    "Is running every day healthy?",
    "Can I trust this website?",
    "Should I call my friend today?",
    "Is the weather nice for a walk?",
    "Would tea be better than coffee?",
    "Is this book worth reading?",
    "Can a cat learn tricks?",
    "Should I water the plants now?",
    "Is Paris the capital of France?",
    "Do I need an umbrella today?",
]
CHOSEN = [
    " Yes, that is a good idea.",
    " Yes! I think it is good.",
    " Good question, and the answer is yes.",
    " Yes, it would be good for you.",
]
REJECTED = [
    " No, that is a bad idea.",
    " No. I think it is bad.",
    " Bad question, and the answer is no.",
    " No, it would be bad for you.",
]


def toy_pairs() -> list[dict[str, str]]:
    """64 TRL-format pairs: HH-style prompts; chosen has "good"/"yes", rejected has "bad"/"no"."""
    pairs = []
    for i, question in enumerate(QUESTIONS):
        for j in range(4):
            pairs.append(
                {
                    "prompt": f"\n\nHuman: {question}\n\nAssistant:",
                    "chosen": CHOSEN[(i + j) % 4],
                    "rejected": REJECTED[(i + 2 * j) % 4],
                }
            )
    return pairs


@pytest.fixture(scope="session")
def toy_preferences(tmp_path_factory) -> Path:
    """JSONL file of 64 ``{"prompt", "chosen", "rejected"}`` pairs separable by the good/bad word rule."""
    path = tmp_path_factory.mktemp("toy_data") / "toy_preferences.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in toy_pairs()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def toy_hh_file(tmp_path_factory) -> Path:
    """The ``toy_preferences`` pairs as HH dialogues ``{"chosen", "rejected"}`` in a ``.jsonl.gz`` file."""
    path = tmp_path_factory.mktemp("toy_hh") / "toy_hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for p in toy_pairs():
            record = {"chosen": p["prompt"] + p["chosen"], "rejected": p["prompt"] + p["rejected"]}
            f.write(json.dumps(record) + "\n")
    return path


def _tldr_row(
    post_id: str, summaries, choice: int = 0, worker: str = "W1", confidence: int | None = None
) -> dict:
    """A summarize-from-feedback comparison row (the shared file's format) of post `post_id`; `summaries`
    is two ``(text, policy)``; confidence 3 (choice 0) or 7 (choice 1) unless given."""
    return {
        "info": {
            "id": post_id,
            "title": f"Title {post_id}",
            "post": f"The post {post_id}.",
            "subreddit": "r",
        },
        "summaries": [{"text": text, "policy": policy} for text, policy in summaries],
        "choice": choice,
        "worker": worker,
        "extra": {"confidence": confidence if confidence is not None else 3 + 4 * choice},
    }


@pytest.fixture(scope="session")
def tldr_row():
    """A builder of summarize-from-feedback comparison rows: ``tldr_row(post_id, [(text, policy), (text,
    policy)], choice=0, worker="W1", confidence=None)`` (``policy="ref"``: the human reference)."""
    return _tldr_row


class AutocastSpy:
    """Records, per spied function, the CPU autocast dtype in force at each call (None outside autocast);
    ``Accelerator.backward`` is always spied on (see the ``autocast_spy`` fixture)."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.calls: dict[str, list[torch.dtype | None]] = {}
        from accelerate import Accelerator

        self.watch(Accelerator, "backward")

    def watch(self, owner, name: str) -> None:
        """Record every call of ``owner.name`` (a module's function or a class's method) under ``name``."""
        real = getattr(owner, name)

        def recording(*args, **kwargs):
            on = torch.is_autocast_enabled("cpu")
            self.calls.setdefault(name, []).append(torch.get_autocast_dtype("cpu") if on else None)
            return real(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, recording)

    def check_bf16_run(self, forwards: list[str], output_dir: Path) -> None:
        """Each of ``forwards`` ran, always under bf16 autocast; every backward ran outside autocast; the
        weights saved to ``output_dir`` are float32."""
        from safetensors.torch import load_file

        for name in forwards:
            assert self.calls.get(name) and set(self.calls[name]) == {torch.bfloat16}, (name, self.calls)
        assert self.calls["backward"] and set(self.calls["backward"]) == {None}
        weights = load_file(Path(output_dir) / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {torch.float32}


@pytest.fixture
def autocast_spy(monkeypatch) -> AutocastSpy:
    """An :class:`AutocastSpy`: which functions of a ``bf16=true`` run ran under autocast."""
    return AutocastSpy(monkeypatch)


@pytest.fixture
def policy_loads(monkeypatch) -> list[tuple]:
    """Records the arguments of every ``load_policy`` call the trainers make: the policy, and any frozen
    reference copy (DPO and KTO load theirs through ``row_pairs``; PPO, GRPO and RLOO through ``rl_run``)."""
    from rlhfkit.models import loading
    from rlhfkit.trainers import dpo, kto, rl_run, row_pairs, sft

    calls: list[tuple] = []

    def counting(*args, **kwargs):
        calls.append(args)
        return loading.load_policy(*args, **kwargs)

    for module in (sft, dpo, kto, row_pairs, rl_run):
        monkeypatch.setattr(module, "load_policy", counting)
    return calls
