"""RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics"), no value model.

One step = one batch of B prompts:
  1. sample k responses per prompt (each prompt repeated k times in one rollout batch);
  2. score every response with the reward sources (a weighted sum; each source is logged), minus a
     penalty for responses that never emitted EOS;
  3. with no grad: the sampling policy's and the reference's logprobs; the KL (k1, summed over the
     response) is folded into the sequence reward, ``R = score - beta * KL`` (with kl_coef = 0 no
     reference model is loaded and ``R = score``);
  4. leave-one-out advantages: ``R_i`` minus the mean ``R`` of the other k - 1 responses;
  5. ``inner_epochs`` passes of the REINFORCE loss (optionally ratio-clipped) over minibatches.

The responses of one prompt share its forward in the passes after sampling (a decoder reward model, the
reference, the policy update; not under DDP): the prompt is computed once per group and the responses
attend to it (:mod:`rlhfkit.models.packing`), with the values and gradients of separate forwards.

Under N processes (``torchrun`` / ``accelerate launch``) every process takes ``batch_size`` prompts of a
global batch of ``N * batch_size`` and samples their G responses with its own generator (seed + process
index); a group never spans processes, so the leave-one-out baselines are per process. DDP averages the
gradients (each process's loss is a mean over its own minibatch); logged metrics are averaged over
processes. With ``fsdp`` the policy is sharded instead (:mod:`rlhfkit.trainers.sharding`).

Notation:
    B  prompts per step (``batch_size``)
    k  responses per prompt (``group_size``; G elsewhere)
    N  sequences per step, B * k
    R  response length

Python use::

    from rlhfkit.trainers.rloo import RLOOConfig, train_rloo
    from rlhfkit.rewards import RewardSpec
    train_rloo(RLOOConfig(policy="runs/sft", rewards=[RewardSpec("model", "runs/reward")]))

CLI: ``rlhfkit rloo [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch

from rlhfkit.algos import leave_one_out_advantages, zero_advantage_fraction
from rlhfkit.config import option
from rlhfkit.losses import masked_mean, rloo_loss
from rlhfkit.models.logprobs import response_logprobs
from rlhfkit.models.lora import reference_of
from rlhfkit.trainers import rl_run
from rlhfkit.trainers.group_config import GroupRLConfig
from rlhfkit.trainers.micro import epoch_updates
from rlhfkit.trainers.runtime import forward_autocast, mean_over_processes


@dataclass
class RLOOConfig(GroupRLConfig):
    """RLOO: k samples per prompt, leave-one-out baseline, KL folded into the reward, REINFORCE loss."""

    output_dir: str = option("runs/rloo", "where the trained policy is saved")
    group_size: int = option(4, "k: responses sampled per prompt (>= 2)")
    kl_coef: float = option(0.05, "beta: reward -= beta * KL (k1, per response); 0 loads no reference")
    clip_eps: float | None = option(0.2, "ratio clip range (null: plain REINFORCE, no clipping)")
    loss_aggregation: Literal["token", "sequence"] = option(
        "sequence",
        "sequence: REINFORCE on each response's log-prob (the paper); token: per-token ratio, mean",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.clip_eps is not None and self.clip_eps <= 0:
            raise ValueError("clip_eps must be > 0, or null for no clipping")


def _minibatch_loss(
    cfg: RLOOConfig,
    policy,
    seqs: tuple[torch.Tensor, ...],
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor,
    rows: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RLOO loss of batch ``rows``."""
    new = response_logprobs(
        policy, *(t[rows] for t in seqs), temperature=cfg.sampling.temperature, with_entropy=True
    )
    logprobs, entropy = new.logprobs, new.entropy
    loss, metrics = rloo_loss(
        logprobs, old_logprobs[rows], advantages[rows], mask[rows], cfg.clip_eps, cfg.loss_aggregation
    )
    return loss, {"entropy": masked_mean(entropy, mask[rows]), **metrics}


def train_rloo(cfg: RLOOConfig) -> dict:
    """Run RLOO and save the policy to ``cfg.output_dir``; returns the run's summary.

    Raises:
        rlhfkit.rewards.RewardError: a reward function failed or returned bad scores (names it and
            the prompt index).
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    run = rl_run.start_group_run(cfg)
    accelerator, policy, policy_ddp, generator = run.accelerator, run.policy, run.policy_ddp, run.generator
    n, group = cfg.batch_size * cfg.group_size, cfg.group_size

    progress = rl_run.step_progress("rloo", "step", run.start, cfg.steps, accelerator.is_main_process)
    for step in progress:
        # 1. rollout: k samples of each prompt
        clock = rl_run.PhaseClock()
        ro = rl_run.sample_groups(cfg, next(run.stream), accelerator, policy, run.tokenizer, generator)
        clock.mark()

        # 2. rewards
        scored, score, scores = rl_run.score_rollout(cfg, step, run.reward, ro, accelerator, run.reward_norm)
        mask = ro.response_mask.float()  # (N, R)
        seqs = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)

        # 3. sampling-policy and reference logprobs; KL folded into the sequence reward
        with torch.no_grad(), forward_autocast(cfg, accelerator):
            old_logprobs = response_logprobs(policy, *seqs, temperature=cfg.sampling.temperature).logprobs
            kl = torch.zeros(n, device=mask.device)  # (N,) nats per response
            if cfg.uses_reference:
                with reference_of(policy, run.reference) as ref:
                    ref_logprobs = response_logprobs(
                        ref, *seqs, temperature=cfg.sampling.temperature
                    ).logprobs
                kl = ((old_logprobs - ref_logprobs) * mask).sum(1)
        rewards = scores - cfg.kl_coef * kl  # (N,)

        # 4. leave-one-out advantages
        advantages = leave_one_out_advantages(rewards.view(-1, group)).flatten()  # (N,)
        clock.mark()

        # 5. REINFORCE updates over minibatches (in micro-batches)
        loss_fn = functools.partial(_minibatch_loss, cfg, policy_ddp, seqs, mask, advantages, old_logprobs)
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.inner_epochs):
            order = torch.randperm(n, generator=generator)
            epoch_updates(accelerator, policy_ddp, run.optimizer, order, mask, cfg, loss_fn, step, stats)
        clock.mark()

        metrics = mean_over_processes(  # averaged over processes
            accelerator,
            {
                **scored.metrics(),
                **rl_run.score_metrics(score, scores, ro),
                "kl": kl.mean().item() if cfg.uses_reference else None,
                "non_score_reward": (-cfg.kl_coef * kl).mean(),
                "zero_adv_group_frac": zero_advantage_fraction(scores.view(-1, group)),
                **{k: sum(v) / len(v) for k, v in stats.items()},
                **clock.times("rollout", "score_ref", "update"),
            },
        )
        row = run.log.log(step, metrics)
        kl_text = "-" if row["kl"] is None else f"{row['kl']:.2f}"
        progress.set_postfix(score=f"{row['score']:.3f}", kl=kl_text)
        rl_run.checkpoint_if_due(run.checkpoints, step, accelerator, generator, run.reward_norm)

    return rl_run.finish(
        cfg, accelerator, run.log, (policy, policy_ddp), run.tokenizer, "rloo", run.reward_norm
    )
