"""How close rlhfkit's training steps come to this machine's matmul limit.

Measures, in one process and one run:
- the fp32 matmul rate (2048 x 2048, all cores): the compute limit for training here;
- achieved training GFLOP/s of an SFT step (SmolLM2-135M-Instruct) and a reward-model step (MiniLM),
  counting 6 * N * real (non-pad) tokens per forward + backward (N = parameters), on real HH rows.

Usage: ``python benchmarks/limit.py [--steps 3] [--out results.json]`` (needs the offline model packages,
as installed by ``make test``, and ../shared/data/hh-rlhf). A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from rlhfkit.data import join_prompt_response, load_preferences
from rlhfkit.data.collate import collate_sft, encode_sft
from rlhfkit.data.records import SFTExample
from rlhfkit.data.split import HH_DATA
from rlhfkit.losses import bradley_terry_loss, sft_loss
from rlhfkit.models.loading import load_policy, load_reward_model, load_tokenizer
from rlhfkit.models.logprobs import next_token_logprobs
from rlhfkit.models.reward import load_reward_tokenizer, reward_scores


def matmul_gflops(n: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an (n, n) @ (n, n) product in ``dtype`` on this machine's threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def timed_steps(step, steps: int) -> list[float]:
    """Seconds per call of ``step()``, after one warm-up call."""
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def sft_case(pairs, steps: int) -> dict:
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = load_policy("smollm2-135m-instruct")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    encoded = [encode_sft(tokenizer, SFTExample(p.prompt, p.chosen), 256, 192, True) for p in pairs[:8]]
    batch = collate_sft(encoded, tokenizer.pad_token_id)
    target = batch["loss_mask"].clone()
    target[:, 0] = 0  # as the SFT trainer scores them: padding-free, LM head on response tokens only

    def step():
        logprobs = next_token_logprobs(model, batch["input_ids"], batch["attention_mask"], target).logprobs
        loss, _ = sft_loss(logprobs, batch["loss_mask"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    tokens = int(batch["attention_mask"].sum())
    return _result("SFT, SmolLM2, 8 x 256", model, tokens, timed_steps(step, steps))


def reward_case(pairs, steps: int) -> dict:
    tokenizer = load_reward_tokenizer("minilm-l6")
    model = load_reward_model("minilm-l6", trainable=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    chosen = [join_prompt_response(p.prompt, p.chosen) for p in pairs[:8]]
    rejected = [join_prompt_response(p.prompt, p.rejected) for p in pairs[:8]]
    encoded = tokenizer(chosen + rejected, truncation=True, max_length=256)["input_ids"]
    tokens = sum(len(ids) for ids in encoded)  # real tokens; padding is not counted

    def step():
        rewards = reward_scores(model, tokenizer, chosen + rejected, 256)
        loss, _ = bradley_terry_loss(rewards[:8], rewards[8:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _result("Reward, MiniLM, 8 pairs x 256", model, tokens, timed_steps(step, steps))


def _result(name: str, model, tokens: int, times: list[float]) -> dict:
    params = sum(p.numel() for p in model.parameters())
    median = statistics.median(times)
    return {
        "case": name,
        "params": params,
        "real_tokens": tokens,
        "s_per_step": median,
        "tokens_per_s": tokens / median,
        "gflops": 6 * params * tokens / median / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up)")
    parser.add_argument("--data", default=HH_DATA, help="HH-RLHF file for the real rows")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    pairs = load_preferences(args.data, skip_invalid=True).records
    limit = matmul_gflops()
    rows = [sft_case(pairs, args.steps), reward_case(pairs, args.steps)]
    print(f"fp32 matmul limit: {limit:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    print(f"{'case':<32}{'s/step':>8}{'tokens/s':>10}{'GFLOP/s':>9}{'of limit':>10}")
    for r in rows:
        r["share_of_limit"] = r["gflops"] / limit
        print(
            f"{r['case']:<32}{r['s_per_step']:>8.2f}{r['tokens_per_s']:>10.0f}{r['gflops']:>9.1f}"
            f"{r['share_of_limit']:>10.0%}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"matmul_gflops": limit, "cases": rows}, f, indent=2)


if __name__ == "__main__":
    main()
