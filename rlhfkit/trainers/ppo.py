"""PPO for language models: policy, frozen reference, value model, frozen reward model.

One step = one rollout batch:
  1. sample a response per prompt with the policy (KV cache, temperature T, cut after the first EOS);
  2. score prompt + response with the reward model (re-tokenised if its tokenizer differs), normalised
     so that the reference's own responses score mean 0, std 1 (``reward_norm_samples``, set once before
     training), minus a penalty for responses that never emitted EOS;
  3. with no grad: reference logprobs (logits / T); old policy logprobs and per-token values (with
     ``shared_value_head`` from a head on the policy's last hidden state, in the same forward). When
     one minibatch covers the rollout (``mini_batch_size == batch_size``), the old logprobs and values
     are those of the first update's forward, detached: the policy has not changed yet, so that saves a
     forward of the policy and of the value model per rollout;
  4. per-token rewards -beta * KL_t with the score added on the last token; GAE; whitened advantages;
  5. ``ppo_epochs`` passes of clipped policy and value updates over shuffled minibatches (with
     ``shared_value_head``: one forward, one backward of policy loss + vf_coef * value loss); during the
     first ``value_warmup_steps`` rollouts only the value function is trained (the policy does not move),
     so that the advantages come from a value function that has already seen the policy's returns;
  6. update beta (fixed, or the adaptive controller of Ziegler et al. 2019); log the explained variance
     of the old values against the returns.

Implementation details follow Huang et al. 2024, "The N+ implementation details of RLHF with PPO".

Under N processes (``torchrun`` / ``accelerate launch``) every process takes ``batch_size`` prompts of a
global batch of ``N * batch_size``, samples with its own generator (seed + process index), and whitens
its own advantages; DDP averages the policy and value gradients. The KL fed to the adaptive controller
and every logged metric are averaged over processes, so all processes keep the same beta. With ``fsdp``
the policy and the value model (or head) are sharded instead (:mod:`rlhfkit.trainers.sharding`): the
policy samples from its gathered weights, and the same updates follow.

Notation:
    B  prompts per rollout (``batch_size``)
    M  minibatch size
    R  response length

Python use::

    from rlhfkit.trainers.ppo import PPOConfig, train_ppo
    summary = train_ppo(PPOConfig(policy="runs/sft", reward_model="runs/reward", steps=10))
    # or with a programmatic reward (no reward model; the value model must then be given):
    train_ppo(PPOConfig(policy=..., value_model=..., reward_model=None), reward_fn=my_fn)

CLI: ``rlhfkit ppo [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from rlhfkit.algos import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    explained_variance,
    kl_shaped_rewards,
    masked_whiten,
)
from rlhfkit.config import option
from rlhfkit.data import Prompt, load_prompts
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.losses import kl_estimate, masked_mean, ppo_policy_loss, ppo_value_loss
from rlhfkit.models.loading import load_reward_model
from rlhfkit.models.logprobs import TokenOutputs, response_logprobs
from rlhfkit.models.lora import LoRAConfig, enable_gradient_checkpointing, reference_of
from rlhfkit.models.reward import load_reward_tokenizer
from rlhfkit.models.value import ValueHead, ValueModel
from rlhfkit.rewards import CombinedReward, FunctionReward, ModelReward
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.rollout.sampling import rollout
from rlhfkit.trainers import rl_run, sharding
from rlhfkit.trainers.checkpoint import CheckpointConfig, Checkpointer, check_finite
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.rl_run import REWARD_NORM_HELP
from rlhfkit.trainers.runtime import (
    BF16_HELP,
    forward_autocast,
    make_accelerator,
    mean_over_processes,
    sampling_generator,
    setup_torch,
    shard,
    to_device,
)
from rlhfkit.trainers.training import make_optimizer

RewardFn = Callable[[list[Prompt], list[str]], list[float]]


@dataclass
class PPOConfig:
    """PPO with a learned reward model and a KL penalty to a frozen reference policy."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    policy: str = option("smollm2-135m-instruct", "policy to train (usually the SFT output)")
    reference: str | None = option(None, "frozen reference policy for the KL penalty (default: policy)")
    reward_model: str | None = option("runs/reward", "reward model folder (None when reward_fn is given)")
    value_model: str | None = option(None, "value model init (default: the reward model)")
    shared_value_head: bool = option(
        False,
        "a value head on the policy's last hidden state instead of a value model: one trunk, one forward "
        "and backward per update (about half the update compute, and a model less in memory); the value "
        "loss then trains the policy's trunk too",
    )
    vf_coef: float = option(0.1, "with shared_value_head: weight of the value loss in the joint loss")
    value_trunk_grad: bool = option(
        True,
        "with shared_value_head: the value loss trains the policy's trunk too; false: the head reads the "
        "trunk's hidden states with the gradient stopped (a value function on the policy's own features "
        "that never moves the policy)",
    )
    value_warmup_steps: int = option(
        0,
        "first rollouts that train only the value function, the policy frozen (OpenRLHF's "
        "freezing_actor_steps); they count towards steps",
    )
    output_dir: str = option("runs/ppo", "where the trained policy is saved")
    data: DataConfig = option(DataConfig, "prompts (prompt-only or preference files)")
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    steps: int = option(8, "rollout batches (each followed by ppo_epochs of updates)")
    batch_size: int = option(8, "prompts per rollout (per process)")
    mini_batch_size: int = option(4, "sequences per gradient step")
    ppo_epochs: int = option(4, "passes over each rollout batch")
    sampling: SamplingConfig = option(
        SamplingConfig, "how responses are sampled (temperature > 0; logprobs use logits / temperature too)"
    )
    lr: float = option(3e-6, "policy learning rate")
    value_lr: float = option(1e-5, "value model learning rate")
    kl_coef: float = option(0.05, "beta: weight of the per-token KL penalty (initial value if adaptive)")
    kl_estimator: Literal["k1", "k3"] = option("k1", "per-token KL estimator (Schulman 2020)")
    adaptive_kl: bool = option(False, "adapt beta towards kl_target (Ziegler et al. 2019)")
    kl_target: float = option(6.0, "target KL per sequence (nats) for the adaptive controller")
    kl_horizon: int = option(10000, "horizon of the adaptive controller, in sequences")
    gamma: float = option(1.0, "GAE discount")
    lam: float = option(0.95, "GAE lambda")
    clip_eps: float = option(0.2, "policy ratio clip range")
    value_clip_eps: float = option(0.2, "value clip range")
    whiten_advantages: bool = option(True, "whiten advantages over the batch (masked)")
    missing_eos_penalty: float = option(
        1.0, "subtracted from the (normalised) score of responses with no EOS within max_new_tokens"
    )
    reward_norm_samples: int = option(0, REWARD_NORM_HELP)
    reward_max_length: int = option(256, "reward/value model tokens per dialogue (cut from the left)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    lora: LoRAConfig = option(
        LoRAConfig, "LoRA on the policy (lora.r > 0); the reference is then the base with the adapter off"
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower"
    )
    fsdp: bool = option(False, sharding.FSDP_HELP)
    checkpoint: CheckpointConfig = option(CheckpointConfig, "training checkpoints and resuming")
    report_to: ReportTo = option(
        "none", "also send metrics.jsonl rows to: none, tensorboard, wandb (offline)"
    )
    seed: int = option(0, "seed for prompt order and sampling")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.batch_size % self.mini_batch_size:
            raise ValueError("batch_size must be a multiple of mini_batch_size")
        if self.vf_coef < 0:
            raise ValueError("vf_coef must be >= 0")
        if self.sampling.temperature <= 0:
            raise ValueError(
                "sampling.temperature must be > 0: PPO needs sampled responses and their logprobs"
            )
        if not 0 <= self.value_warmup_steps < self.steps:
            raise ValueError("value_warmup_steps must be >= 0 and below steps (the policy must train)")
        if self.reward_norm_samples < 0:
            raise ValueError("reward_norm_samples must be >= 0 (0: no normalisation)")


def ppo_reward(cfg: PPOConfig, reward_fn: RewardFn | None) -> CombinedReward:
    """PPO's reward: ``reward_fn`` when given (the reward model is then not loaded), else
    ``cfg.reward_model``; a single source of weight 1, so the total is that source's score.

    Raises:
        ValueError: neither is set.
    """
    if reward_fn is not None:
        source = FunctionReward(reward_fn)
    elif cfg.reward_model is not None:
        source = ModelReward(cfg.reward_model, cfg.dtype, cfg.reward_max_length)
    else:
        raise ValueError("PPO needs a reward: set reward_model or pass reward_fn")
    return CombinedReward([(source, 1.0)])


def train_ppo(cfg: PPOConfig, reward_fn: RewardFn | None = None) -> dict:
    """Run PPO and save the policy to ``cfg.output_dir``; returns the run's summary.

    Raises:
        ValueError: no reward source, or no value model to initialise from.
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    accelerator = make_accelerator()
    setup_torch(cfg.seed, cfg.threads)
    prompts, _ = load_split(cfg.data, load_prompts)
    value_init = cfg.value_model or cfg.reward_model
    if value_init is None and not cfg.shared_value_head:
        raise ValueError(
            "PPO needs a value model: set value_model (or reward_model to initialise it from), "
            "or shared_value_head=true"
        )
    tokenizer, policy, reference = rl_run.load_policy_and_reference(cfg, accelerator)
    fsdp = sharding.use_fsdp(cfg, accelerator)  # shard the policy and the value function
    if fsdp:
        sharding.shard_model(policy, accelerator)
    reward = ppo_reward(cfg, reward_fn)
    updates = cfg.steps * cfg.ppo_epochs * (cfg.batch_size // cfg.mini_batch_size)
    policy_opt, _ = make_optimizer(policy.parameters(), cfg.lr, 0.0, 0, updates)
    value_opt = None
    if cfg.shared_value_head:
        value = ValueHead(
            policy.config.hidden_size, next(policy.parameters()).dtype, trunk_grad=cfg.value_trunk_grad
        )
        value.to(accelerator.device)
        if fsdp:
            sharding.shard_model(value, accelerator)
        if cfg.value_trunk_grad:  # one joint loss, one optimizer: the trunk at lr, the head at value_lr
            policy_opt.add_param_group({"params": list(value.parameters()), "lr": cfg.value_lr})
        else:  # the head learns from the value loss alone, with its own optimizer
            value_opt, _ = make_optimizer(value.parameters(), cfg.value_lr, 0.0, 0, updates)
    else:
        value = ValueModel(
            load_reward_model(value_init, cfg.dtype, trainable=True, causal=True),
            load_reward_tokenizer(value_init),
            cfg.reward_max_length,
        )
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(value.model)
        if fsdp:
            sharding.shard_model(value, accelerator)
        value_opt, _ = make_optimizer(value.parameters(), cfg.value_lr, 0.0, 0, updates)
    if cfg.adaptive_kl:
        kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    else:
        kl_ctl = FixedKLController(cfg.kl_coef)
    generator = sampling_generator(accelerator, cfg.seed)
    checkpoints = Checkpointer(
        cfg.checkpoint,
        cfg.output_dir,
        {
            "policy": sharding.checkpointed(policy),
            "value": sharding.checkpointed(value),
            "policy_opt": sharding.checkpointed([policy, value] if value_opt is None else policy, policy_opt),
            **({"value_opt": sharding.checkpointed(value, value_opt)} if value_opt is not None else {}),
            "generator": generator,
        },
        main=accelerator.is_main_process,
    )
    start, extra, stream, log = rl_run.resume(cfg, accelerator, checkpoints, generator, prompts)
    kl_ctl.beta = extra.get("beta", kl_ctl.beta)
    norm = rl_run.reference_reward_norm(
        cfg, accelerator, (policy, reference), tokenizer, reward, prompts, extra
    )
    # DDP-wrapped copies for the gradient steps; `policy` and `value` stay the plain modules, which
    # sample and score without gradients (under FSDP the sharded modules do both)
    policy_ddp, value_ddp, policy_opt = sharding.prepare(accelerator, fsdp, policy, value, policy_opt)
    if value_opt is not None:
        value_opt = sharding.prepare(accelerator, fsdp, value_opt)

    joint = cfg.shared_value_head and cfg.value_trunk_grad  # one loss trains the trunk and the head
    warmup_opt = policy_opt if joint else value_opt  # the optimizer that holds the value parameters
    progress = rl_run.step_progress("ppo", "rollout", start, cfg.steps, accelerator.is_main_process)
    for step in progress:
        # 1-2. rollout and score
        clock = rl_run.PhaseClock()
        warmup = step <= cfg.value_warmup_steps  # only the value function learns
        if cfg.shared_value_head:  # in the warm-up the value loss must not reach the trunk
            value.trunk_grad = cfg.value_trunk_grad and not warmup
        prompts = shard(next(stream), accelerator)  # this process's prompts of the global batch
        with forward_autocast(cfg, accelerator), sharding.full_weights(policy):
            ro = rollout(
                policy,
                tokenizer,
                prompts,
                cfg.sampling,
                use_chat_template=cfg.use_chat_template,
                generator=generator,
            )
        clock.mark()
        scored, scores, penalised = rl_run.score_rollout(cfg, step, reward, ro, accelerator, norm)  # (B,)
        mask = ro.response_mask.float()  # (B, R)
        seqs = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)

        # 3. reference logprobs; old logprobs and values (from the first update's forward when one
        # minibatch covers the rollout: the policy has not changed yet, so they are that forward's, detached)
        venc = None
        if not cfg.shared_value_head:
            venc = value.encode(ro.reward_texts(), ro.reward_text_starts(), width=mask.size(1))
            venc = to_device(venc, accelerator.device)

        everything = torch.arange(cfg.batch_size)
        first = None  # the first minibatch's outputs, with gradients, when they are also the old ones
        with forward_autocast(cfg, accelerator):
            with torch.no_grad(), reference_of(policy, reference) as ref:
                ref_logprobs = response_logprobs(ref, *seqs, temperature=cfg.sampling.temperature).logprobs
            if _fused_first_update(cfg):
                first = _forward(cfg, seqs, venc, everything, policy_ddp, value_ddp, with_entropy=True)
                old, old_values = first
            else:
                with torch.no_grad():
                    old, old_values = _forward(cfg, seqs, venc, everything, policy, value)
        old_logprobs = old.logprobs.detach()  # (B, R)
        old_values = old_values.detach() * mask  # (B, R)
        clock.mark()

        # 4. KL-shaped rewards, GAE, whitening (over this process's batch)
        kl = kl_estimate(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask  # (B, R)
        rewards = kl_shaped_rewards(penalised, kl, mask, kl_ctl.beta)
        advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, mask)

        # 5. PPO epochs
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(cfg.batch_size, generator=generator).split(cfg.mini_batch_size):
                if first is not None:  # computed above, for all rows in order
                    new, values = first
                    first, idx = None, everything
                else:
                    with forward_autocast(cfg, accelerator):
                        new, values = _forward(cfg, seqs, venc, idx, policy_ddp, value_ddp, with_entropy=True)
                pg_loss, pg_metrics = ppo_policy_loss(
                    new.logprobs, old_logprobs[idx], advantages[idx], mask[idx], cfg.clip_eps
                )
                vf_loss, vf_metrics = ppo_value_loss(
                    values, old_values[idx], returns[idx], mask[idx], cfg.value_clip_eps
                )
                check_finite(step, policy_loss=pg_loss, value_loss=vf_loss)
                if warmup:  # the value function alone (a shared head reads detached hidden states)
                    _step(accelerator, vf_loss, [value_ddp], warmup_opt, cfg.max_grad_norm)
                elif joint:  # one trunk: one backward of both losses
                    joint_loss = pg_loss + cfg.vf_coef * vf_loss
                    _step(accelerator, joint_loss, [policy_ddp, value_ddp], policy_opt, cfg.max_grad_norm)
                else:
                    _step(accelerator, pg_loss, [policy_ddp], policy_opt, cfg.max_grad_norm)
                    _step(accelerator, vf_loss, [value_ddp], value_opt, cfg.max_grad_norm)
                for key, val in {
                    "policy_loss": pg_loss,
                    "value_loss": vf_loss,
                    "entropy": masked_mean(new.entropy, mask[idx]),
                    **pg_metrics,
                    **vf_metrics,
                }.items():
                    stats.setdefault(key, []).append(float(val.detach()))

        clock.mark()

        # 6. KL controller, on the KL averaged over processes (every process keeps the same beta)
        beta = kl_ctl.beta
        metrics = mean_over_processes(
            accelerator,
            {
                **rl_run.score_metrics(scores, penalised, ro),
                "score_raw": scored.total.mean(),
                "score_std": scores.std() if len(scores) > 1 else 0.0,
                "kl": kl.sum(1).mean(),
                "beta": beta,
                "non_score_reward": (-beta * kl).sum(1).mean(),
                "explained_variance": explained_variance(old_values, returns, mask),
                "value_warmup": float(warmup),
                **{k: sum(v) / len(v) for k, v in stats.items()},
                **clock.times("rollout", "score_ref_value", "update"),
            },
        )
        metrics["kl"] = float(metrics["kl"])
        kl_ctl.update(metrics["kl"], cfg.batch_size * accelerator.num_processes)
        row = log.log(step, metrics)
        progress.set_postfix(score=f"{row['score']:.3f}", kl=f"{row['kl']:.2f}")
        rl_run.checkpoint_if_due(checkpoints, step, accelerator, generator, norm, beta=kl_ctl.beta)

    return rl_run.finish(cfg, accelerator, log, (policy, policy_ddp), tokenizer, "ppo", norm)


def _forward(
    cfg: PPOConfig, seqs: tuple, venc: dict | None, idx: torch.Tensor, model, value_model, **kw
) -> tuple[TokenOutputs, torch.Tensor]:
    """One forward of rows ``idx`` (b,) of the rollout: the policy's outputs (b, R), and the values (b, R)
    from the value head (``shared_value_head``) or the value model (``venc``, its encoded inputs)."""
    head = value_model if cfg.shared_value_head else None
    new = response_logprobs(
        model, *(t[idx] for t in seqs), temperature=cfg.sampling.temperature, value_head=head, **kw
    )
    if head is not None:
        return new, new.values
    return new, value_model(**{k: v[idx] for k, v in venc.items()})


def _fused_first_update(cfg: PPOConfig) -> bool:
    """Whether the old logprobs and values come from the first update's forward: one minibatch covers the
    rollout, so that forward sees the policy and value model before any update."""
    return cfg.mini_batch_size == cfg.batch_size


def _step(accelerator, loss: torch.Tensor, models: list[torch.nn.Module], optimizer, max_norm: float) -> None:
    """Backward ``loss``, clip the gradients of ``models`` together to ``max_norm``, step ``optimizer``."""
    accelerator.backward(loss)  # DDP averages the gradients over processes (FSDP: reduce-scatters them)
    # the parameters are read after the backward: until then a sharded model exposes its gathered
    # weights in place of its shards, whose gradients are the ones the optimizer steps with
    params = [p for model in models for p in model.parameters()]
    accelerator.clip_grad_norm_(params, max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
