"""Memory per process of PPO under FSDP2 against DDP, on 2 CPU processes (gloo) (issue 21).

A random Llama policy and a random Llama reward model of the same shape (the value model starts from the
reward model), saved once, then the same short PPO run twice under ``torchrun --nproc_per_node 2``:
``fsdp=false`` (DDP: every process holds the whole policy and value model, their gradients and AdamW
state) and ``fsdp=true`` (:mod:`rlhfkit.trainers.sharding`: 1/2 of each per process). The reference and
reward models are replicated in both. Measured in every process:

- **trained state**: bytes of the policy's and value model's parameters and AdamW moments that this
  process holds (its shards under FSDP), counted from the tensors after the run: exact, no noise;
- **peak RSS while training**: ``VmHWM`` from ``/proc/self/status``, reset (``/proc/self/clear_refs``)
  when the first rollout starts, read when the run ends: the rollouts, scoring and updates, not the
  set-up (which reads every model whole in every process, in both modes);
- **peak RSS in the set-up**: ``VmHWM`` just before that reset: loading the models, then sharding them
  or wrapping them in DDP;
- **sampling from full weights**: RSS growth from gathering the policy's weights for sampling
  (:func:`~rlhfkit.trainers.sharding.full_weights`; 0 under DDP, which samples from its own full copy),
  beside the policy's full fp32 size.

Usage: ``python benchmarks/fsdp_memory.py [--hidden 512] [--layers 12] [--out results.json]``. Peak
RSS is measured with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``, set for the workers), so
that freed tensors go back to the OS and RSS follows the memory in use; it still moves by a few MB
between runs, the state bytes do not. A benchmark, not a
test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

MIB = 2**20
WORDS = (
    "the a good bad yes no help answer question assistant human please thank you weather code cake tea "
    "robot story music dog cat sun rain bread paris france running health time morning book sea poem"
).split()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def build(folder: Path, hidden: int, layers: int) -> None:
    """A byte-level BPE tokenizer, a random ``LlamaForCausalLM`` policy, a random one-label
    ``LlamaForSequenceClassification`` reward model of the same shape, and 32 prompts, in ``folder``."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|eos|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|pad|>")

    def config(**extra) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=8,
            num_key_value_heads=8,
            intermediate_size=3 * hidden,
            max_position_embeddings=256,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            tie_word_embeddings=False,
            **extra,
        )

    torch.manual_seed(0)
    for name, model in (
        ("policy", LlamaForCausalLM(config())),
        ("reward", LlamaForSequenceClassification(config(num_labels=1))),
    ):
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    prompts = [{"prompt": " ".join(rng.choice(WORDS) for _ in range(8))} for _ in range(32)]
    (folder / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))


def _held_bytes(modules, optimizers) -> dict[str, float]:
    """MiB of the parameters and optimizer state these modules and optimizers hold in this process (the
    local shard of a sharded parameter)."""
    from torch.distributed.tensor import DTensor

    def local(t):
        return t.to_local() if isinstance(t, DTensor) else t

    params = {id(p): local(p) for m in modules for p in m.parameters()}
    state = [
        local(v)
        for opt in optimizers
        for s in opt.state.values()
        for v in s.values()
        if hasattr(v, "numel") and v.dim() > 0
    ]
    size = sum(t.numel() * t.element_size() for t in params.values())
    return {
        "params_mib": size / MIB,
        "adamw_mib": sum(t.numel() * t.element_size() for t in state) / MIB,
    }


def worker(args: list[str], result: Path) -> None:
    """One process of a ``torchrun``: ``rlhfkit ppo <args>``, measured as the module docstring says."""
    import torch

    from rlhfkit import cli
    from rlhfkit.trainers import ppo, sharding

    seen: dict = {"sampling_growth_mib": [], "full_policy_mib": None}
    gather = sharding.full_weights

    @contextmanager
    def measured(model):
        if "setup_peak_mib" not in seen:  # the first rollout: the set-up is over
            seen["setup_peak_mib"] = _rss_kib("VmHWM") / 1024
            Path("/proc/self/clear_refs").write_text("5\n")  # reset the high-water mark
        before = _rss_kib("VmRSS")
        with gather(model) as full:
            seen["sampling_growth_mib"].append((_rss_kib("VmRSS") - before) / 1024)
            seen["full_policy_mib"] = sum(p.numel() * p.element_size() for p in full.parameters()) / MIB
            yield full

    sharding.full_weights = measured
    made = []  # the policy and value optimizers, as the trainer makes them
    make = ppo.make_optimizer

    def recording(params, *rest):
        params = list(params)
        opt, sched = make(params, *rest)
        made.append((params, opt))
        return opt, sched

    ppo.make_optimizer = recording
    assert cli.main(["ppo", *args]) == 0
    trained = [torch.nn.ParameterList(p) for p, _ in made]
    held = _held_bytes(trained, [opt for _, opt in made])
    rank = int(os.environ["RANK"])
    result.with_name(f"{result.stem}-rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                **held,
                "training_peak_rss_mib": _rss_kib("VmHWM") / 1024,
                "setup_peak_rss_mib": seen["setup_peak_mib"],
                "sampling_growth_mib": max(seen["sampling_growth_mib"]),
                "full_policy_mib": seen["full_policy_mib"],
            }
        )
    )


def run(folder: Path, fsdp: bool, steps: int) -> list[dict]:
    """The PPO run on the models in ``folder`` under ``torchrun`` (2 processes), DDP or FSDP: what every
    process measured, in process order.

    Raises:
        RuntimeError: the run failed (with the end of its output).
    """
    out = folder / f"run-fsdp-{str(fsdp).lower()}"
    args = [
        f"policy={folder / 'policy'}",
        f"reward_model={folder / 'reward'}",
        f"data.path={folder / 'prompts.jsonl'}",
        f"output_dir={out}",
        f"fsdp={str(fsdp).lower()}",
        f"steps={steps}",
        "batch_size=4",
        "mini_batch_size=2",
        "ppo_epochs=1",
        "sampling.max_new_tokens=16",
        "use_chat_template=false",
        "threads=1",
    ]
    result = folder / f"result-{str(fsdp).lower()}.json"
    # glibc returns a freed block to the OS only if it was mmap-ed; with its threshold fixed (not raised
    # as blocks are freed) every tensor over 64 KiB is, so RSS follows the memory in use
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [__file__, "--worker", str(result), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the {'FSDP' if fsdp else 'DDP'} run failed:\n{proc.stderr[-4000:]}")
    return [json.loads(result.with_name(f"{result.stem}-rank{r}.json").read_text()) for r in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args()
    if known.worker is not None:
        worker(rest, known.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, known.hidden, known.layers)
        results = {mode: run(folder, mode == "fsdp", known.steps) for mode in ("ddp", "fsdp")}
    results["settings"] = {"hidden": known.hidden, "layers": known.layers, "steps": known.steps}
    text = json.dumps(results, indent=2)
    print(text)
    if known.out:
        known.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
