"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, Sec. 4.1), no value model.

One step = one batch of B prompts:
  1. sample G responses per prompt (each prompt repeated G times in one rollout batch; KV cache,
     temperature T, cut after the first EOS);
  2. score every response with the reward sources (a weighted sum; each source is logged), minus a
     penalty for responses that never emitted EOS;
  3. group-normalised advantages: (score - group mean) / group std, or without the std (Dr. GRPO);
  4. with no grad: reference logprobs (only when kl_coef > 0; with kl_coef = 0 no reference model is
     loaded at all) and, when the batch is used for more than one update, the sampling policy's
     logprobs;
  5. ``inner_epochs`` (mu) passes of the clipped-ratio loss with the k3 KL term, over shuffled
     minibatches, aggregated per token or per sequence.

The responses of one prompt share its forward in the passes after sampling (a decoder reward model, the
reference, the policy update; not under DDP): the prompt is computed once per group and the responses
attend to it (:mod:`rlhfkit.models.packing`), with the values and gradients of separate forwards.

Under N processes (``torchrun`` / ``accelerate launch``) every process takes ``batch_size`` prompts of a
global batch of ``N * batch_size`` and samples their G responses with its own generator (seed + process
index); a group never spans processes, so the group means and stds are per process. DDP averages the
gradients (each process's loss is a mean over its own minibatch); logged metrics are averaged over
processes. With ``fsdp`` the policy is sharded instead (:mod:`rlhfkit.trainers.sharding`).

Notation:
    B  prompts per step (``batch_size``)
    G  responses per prompt (``group_size``)
    N  sequences per step, B * G
    R  response length

Python use::

    from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
    from rlhfkit.rewards import RewardSpec
    train_grpo(GRPOConfig(policy="runs/sft", rewards=[RewardSpec("model", "runs/reward")]))

CLI: ``rlhfkit grpo [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from rlhfkit.algos import group_advantages, zero_advantage_fraction
from rlhfkit.config import option
from rlhfkit.losses import grpo_loss, masked_mean
from rlhfkit.models.logprobs import response_logprobs
from rlhfkit.models.lora import reference_of
from rlhfkit.trainers import rl_run
from rlhfkit.trainers.group_config import GroupRLConfig
from rlhfkit.trainers.micro import epoch_updates
from rlhfkit.trainers.runtime import forward_autocast, mean_over_processes


@dataclass
class GRPOConfig(GroupRLConfig):
    """GRPO: G samples per prompt, group-normalised advantages, clipped ratio loss with a k3 KL term."""

    output_dir: str = option("runs/grpo", "where the trained policy is saved")
    inner_epochs: int = option(1, "mu: passes over each batch (GRPO's inner iterations)")
    kl_coef: float = option(0.04, "beta of the k3 KL term in the loss; 0 loads no reference model")
    clip_eps: float = option(0.2, "ratio clip range")
    scale_rewards: bool = option(True, "divide advantages by the group std (GRPO); false: Dr. GRPO")


def _minibatch_loss(
    cfg: GRPOConfig,
    policy,
    seqs: tuple[torch.Tensor, ...],
    mask: torch.Tensor,
    advantages: torch.Tensor,
    sampled_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    on_policy: bool,
    rows: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss of batch ``rows``; on-policy, their logprobs are also the sampling logprobs (ratio 1)."""
    new = response_logprobs(
        policy, *(t[rows] for t in seqs), temperature=cfg.sampling.temperature, with_entropy=True
    )
    logprobs, entropy = new.logprobs, new.entropy
    if on_policy:  # one update per batch: the sampling policy is the current one
        sampled_logprobs[rows] = logprobs.detach()
    loss, metrics = grpo_loss(
        logprobs,
        sampled_logprobs[rows],
        advantages[rows],
        mask[rows],
        ref_logprobs[rows] if ref_logprobs is not None else None,
        cfg.kl_coef,
        cfg.clip_eps,
        cfg.loss_aggregation,
    )
    return loss, {"entropy": masked_mean(entropy, mask[rows]), **metrics}


def train_grpo(cfg: GRPOConfig) -> dict:
    """Run GRPO and save the policy to ``cfg.output_dir``; returns the run's summary.

    Raises:
        rlhfkit.rewards.RewardError: a reward function failed or returned bad scores (names it and
            the prompt index).
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    run = rl_run.start_group_run(cfg)
    accelerator, policy, policy_ddp, generator = run.accelerator, run.policy, run.policy_ddp, run.generator
    n, group = cfg.batch_size * cfg.group_size, cfg.group_size
    on_policy = cfg.inner_epochs == 1 and cfg.mini_batch_size == n  # one update per batch: ratio = 1

    progress = rl_run.step_progress("grpo", "step", run.start, cfg.steps, accelerator.is_main_process)
    for step in progress:
        # 1. rollout: G samples of each prompt
        clock = rl_run.PhaseClock()
        ro = rl_run.sample_groups(cfg, next(run.stream), accelerator, policy, run.tokenizer, generator)
        clock.mark()

        # 2-3. rewards and group-normalised advantages
        scored, score, scores = rl_run.score_rollout(cfg, step, run.reward, ro, accelerator, run.reward_norm)
        mask = ro.response_mask.float()  # (N, R)
        advantages = group_advantages(scores.view(-1, group), cfg.scale_rewards).flatten()  # (N,)
        seqs = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)

        # 4. reference logprobs (if any) and sampling-policy logprobs (if the batch is reused)
        with torch.no_grad(), forward_autocast(cfg, accelerator):
            old_logprobs = None
            if not on_policy:
                old_logprobs = response_logprobs(policy, *seqs, temperature=cfg.sampling.temperature).logprobs
            ref_logprobs = None
            if cfg.uses_reference:
                with reference_of(policy, run.reference) as ref:
                    ref_logprobs = response_logprobs(
                        ref, *seqs, temperature=cfg.sampling.temperature
                    ).logprobs
        clock.mark()

        # 5. mu inner iterations of the clipped loss over minibatches (in micro-batches)
        sampled_logprobs = old_logprobs if old_logprobs is not None else torch.zeros_like(mask)

        loss_fn = functools.partial(
            _minibatch_loss,
            cfg,
            policy_ddp,
            seqs,
            mask,
            advantages,
            sampled_logprobs,
            ref_logprobs,
            on_policy,
        )
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.inner_epochs):
            order = torch.arange(n) if on_policy else torch.randperm(n, generator=generator)
            epoch_updates(accelerator, policy_ddp, run.optimizer, order, mask, cfg, loss_fn, step, stats)
        clock.mark()

        kl = None  # nats per response, k1 at sampling time, as PPO and `rlhfkit eval` report it
        if ref_logprobs is not None:
            kl = ((sampled_logprobs - ref_logprobs) * mask).sum(1).mean().item()
        means = {k: sum(v) / len(v) for k, v in stats.items()}
        metrics = mean_over_processes(  # averaged over processes
            accelerator,
            {
                **scored.metrics(),
                **rl_run.score_metrics(score, scores, ro),
                "kl": kl,
                "kl_k3_token": means.pop("kl"),
                "zero_adv_group_frac": zero_advantage_fraction(scores.view(-1, group)),
                **means,
                **clock.times("rollout", "score_ref", "update"),
            },
        )
        row = run.log.log(step, metrics)
        progress.set_postfix(score=f"{row['score']:.3f}", kl="-" if kl is None else f"{row['kl']:.2f}")
        rl_run.checkpoint_if_due(run.checkpoints, step, accelerator, generator, run.reward_norm)

    return rl_run.finish(
        cfg, accelerator, run.log, (policy, policy_ddp), run.tokenizer, "grpo", run.reward_norm
    )
