"""What the on-policy RL trainers (PPO, GRPO, RLOO) share, as plain helpers each trainer calls in order:
load the policy and its reference, resume the prompt stream and the metrics log, show progress, sample
(GRPO/RLOO: G responses per prompt) and score, time the phases of a step, checkpoint, and finish the run
(summary and saved policy).

The trainers' loops stay their own (ARCHITECTURE.md: setup -> train -> save, shared by composition).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.data import Prompt, load_prompts
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.lora import needs_reference_copy, prepare_trainable
from rlhfkit.rewards import CombinedReward, build_reward
from rlhfkit.rewards.combined import RewardBatch
from rlhfkit.rollout.sampling import Rollout, Sampling, rollout
from rlhfkit.trainers.checkpoint import Checkpointer, check_finite
from rlhfkit.trainers.common import (
    MetricsLog,
    batches,
    forward_autocast,
    from_main,
    generator_states,
    load_split,
    make_accelerator,
    make_optimizer,
    restore_generator,
    sampling_generator,
    save_trained,
    setup_torch,
    shard,
)


def load_policy_and_reference(
    cfg, accelerator: Accelerator, use_reference: bool = True
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, PreTrainedModel | None]:
    """The policy's tokenizer, the trainable policy (``cfg.lora``, ``cfg.gradient_checkpointing``) and a
    frozen reference copy (``cfg.reference``, default the policy). The reference is None when there is no
    KL term (``use_reference`` false) or when it is the policy with its LoRA adapter off.

    Raises:
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    tokenizer = load_tokenizer(cfg.policy)
    policy = prepare_trainable(load_policy(cfg.policy, cfg.dtype), cfg.lora, cfg.gradient_checkpointing)
    reference = None
    if use_reference and needs_reference_copy(cfg.lora, cfg.policy, cfg.reference):
        reference = load_policy(cfg.reference or cfg.policy, cfg.dtype, trainable=False)
        reference.to(accelerator.device)
    return tokenizer, policy, reference


def resume(
    cfg,
    accelerator: Accelerator,
    checkpoints: Checkpointer,
    generator: torch.Generator,
    prompts: list[Prompt],
) -> tuple[int, dict, Iterator[list[str]], MetricsLog]:
    """Start or resume a run: the last completed step (0 for a fresh run) and the checkpoint's extra state,
    with every process's sampling generator restored; the stream of global prompt batches
    (``batch_size`` per process) from that step on; the metrics log, continued from that step."""
    start, extra = checkpoints.start()
    if start:
        restore_generator(accelerator, generator, extra.get("generators"), cfg.seed, start)
    global_batch = cfg.batch_size * accelerator.num_processes
    stream = batches([p.prompt for p in prompts], global_batch, cfg.seed, skip=start)
    main = accelerator.is_main_process
    log = MetricsLog(cfg.output_dir, resume_step=start, report_to=cfg.report_to, config=cfg, main=main)
    return start, extra, stream, log


@dataclass
class GroupRun:
    """A GRPO/RLOO run, set up: ``policy`` samples and scores without gradients, ``policy_ddp`` (its
    prepared, possibly DDP-wrapped copy) takes the gradient steps with ``optimizer``; ``reference`` is
    None without a KL term or with LoRA (see :func:`load_policy_and_reference`); ``start`` is the last
    completed step, ``stream`` yields the global prompt batches from there."""

    accelerator: Accelerator
    tokenizer: PreTrainedTokenizerBase
    policy: PreTrainedModel
    reference: PreTrainedModel | None
    reward: CombinedReward
    policy_ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    checkpoints: Checkpointer
    start: int
    stream: Iterator[list[str]]
    log: MetricsLog


def start_group_run(cfg) -> GroupRun:
    """Set up a GRPO/RLOO run from its config (a :class:`~rlhfkit.trainers.group_config.GroupRLConfig`):
    torch, prompts, policy and reference (none when ``kl_coef`` is 0), the summed rewards, AdamW over
    ``steps * inner_epochs * (B * G / mini_batch_size)`` updates, the sampling generator, checkpoints
    (resumed from the last one if asked) and the metrics log.

    Raises:
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    accelerator = make_accelerator()
    setup_torch(cfg.seed, cfg.threads)
    prompts, _ = load_split(cfg.data, load_prompts)
    tokenizer, policy, reference = load_policy_and_reference(cfg, accelerator, cfg.uses_reference)
    reward = build_reward(cfg.rewards, cfg.dtype, cfg.reward_max_length)
    updates = cfg.steps * cfg.inner_epochs * (cfg.batch_size * cfg.group_size // cfg.mini_batch_size)
    optimizer, _ = make_optimizer(policy.parameters(), cfg.lr, 0.0, 0, updates)
    generator = sampling_generator(accelerator, cfg.seed)
    checkpoints = Checkpointer(
        cfg.checkpoint,
        cfg.output_dir,
        {"policy": policy, "optimizer": optimizer, "generator": generator},
        main=accelerator.is_main_process,
    )
    start, _, stream, log = resume(cfg, accelerator, checkpoints, generator, prompts)
    policy_ddp, optimizer = accelerator.prepare(policy, optimizer)
    return GroupRun(
        accelerator=accelerator,
        tokenizer=tokenizer,
        policy=policy,
        reference=reference,
        reward=reward,
        policy_ddp=policy_ddp,
        optimizer=optimizer,
        generator=generator,
        checkpoints=checkpoints,
        start=start,
        stream=stream,
        log=log,
    )


def sample_groups(
    cfg, batch: list[str], accelerator: Accelerator, policy, tokenizer, generator: torch.Generator
) -> Rollout:
    """GRPO/RLOO sampling: each of this process's prompts of the global ``batch`` ``cfg.group_size`` (G)
    times in a row, so that row b * G + i is sample i of prompt b; under :func:`forward_autocast`."""
    repeated = [p for p in shard(batch, accelerator) for _ in range(cfg.group_size)]
    with forward_autocast(cfg, accelerator):
        return rollout(policy, tokenizer, repeated, Sampling.of(cfg), generator)


def score_rollout(
    cfg, step: int, reward: CombinedReward, ro: Rollout, accelerator: Accelerator
) -> tuple[RewardBatch, torch.Tensor]:
    """The rewards of the rollout's responses (reward models under :func:`forward_autocast`), and their
    total (B,) minus ``cfg.missing_eos_penalty`` for each response that never emitted EOS.

    Raises:
        rlhfkit.trainers.checkpoint.NonFiniteError: a total reward is NaN or infinite.
    """
    with forward_autocast(cfg, accelerator):
        scored = reward(ro.prompts, ro.response_texts)
    device = ro.response_mask.device
    total = scored.total.to(device)  # (B,)
    check_finite(step, reward=total)
    return scored, total - cfg.missing_eos_penalty * (~ro.has_eos).float().to(device)


def step_progress(name: str, unit: str, start: int, steps: int, main: bool) -> tqdm:
    """A progress bar over steps ``start + 1 .. steps`` (shown by the main process only)."""
    return tqdm(
        range(start + 1, steps + 1), desc=name, unit=unit, initial=start, total=steps, disable=not main
    )


class PhaseClock:
    """Wall seconds of the phases of one step, logged as ``time_<phase>``."""

    def __init__(self):
        self.marks = [time.perf_counter()]

    def mark(self) -> None:
        """End the current phase."""
        self.marks.append(time.perf_counter())

    def times(self, *phases: str) -> dict[str, float]:
        """``{"time_<phase>": seconds}`` of the phases ended so far, named in order.

        Raises:
            ValueError: the number of names is not the number of phases ended.
        """
        spans = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        if len(spans) != len(phases):
            raise ValueError(f"{len(spans)} phases ended, {len(phases)} named")
        return {f"time_{name}": span for name, span in zip(phases, spans, strict=True)}


def checkpoint_if_due(
    checkpoints: Checkpointer, step: int, accelerator: Accelerator, generator: torch.Generator, **extra
) -> None:
    """Save a checkpoint at ``step`` when one is due, with every process's sampling generator state."""
    if checkpoints.due(step):
        states = generator_states(accelerator, generator)  # every process's, collected on all
        checkpoints.save(step, {**extra, "generators": states})


def finish(
    cfg,
    accelerator: Accelerator,
    log: MetricsLog,
    models: tuple[PreTrainedModel, torch.nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    stage: str,
    metric: str,
) -> dict:
    """Close the log, save the trained policy (``models``: the plain policy and its prepared, possibly
    DDP-wrapped copy; LoRA merged in) with the run's summary, and return the summary: the first and last
    logged ``metric``, the last KL and response length."""
    log.close()
    policy, policy_ddp = models
    policy.eval()
    summary = None
    if accelerator.is_main_process:
        first, last = log.rows[0], log.rows[-1]
        summary = {
            "stage": stage,
            "steps": cfg.steps,
            "processes": accelerator.num_processes,
            f"{metric}_first": first[metric],
            f"{metric}_last": last[metric],
            "kl_last": last["kl"],
            "response_length_last": last["response_length"],
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, policy_ddp, tokenizer, cfg.output_dir, cfg, summary)
    return summary
