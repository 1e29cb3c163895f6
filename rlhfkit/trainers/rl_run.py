"""What the on-policy RL trainers (PPO, GRPO, RLOO) share, as plain helpers each trainer calls in order:
load the policy and its reference, normalise the reward on the reference's own samples, resume the
prompt stream and the metrics log, show progress, sample (GRPO/RLOO: G responses per prompt) and score,
time the phases of a step, checkpoint, and finish the run (summary with windowed progress, saved policy).

The trainers' loops stay their own (ARCHITECTURE.md: setup -> train -> save, shared by composition).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.data import Prompt, load_prompts
from rlhfkit.data.split import load_split
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.lora import is_lora, needs_reference_copy, prepare_trainable, reference_of
from rlhfkit.rewards import CombinedReward, build_reward
from rlhfkit.rewards.combined import RewardBatch
from rlhfkit.rollout.sampling import Rollout, rollout
from rlhfkit.trainers import sharding
from rlhfkit.trainers.checkpoint import Checkpointer, check_finite
from rlhfkit.trainers.metrics import MetricsLog
from rlhfkit.trainers.runtime import (
    forward_autocast,
    from_main,
    generator_states,
    make_accelerator,
    mean_over_processes,
    restore_generator,
    sampling_generator,
    setup_torch,
    shard,
)
from rlhfkit.trainers.saving import save_trained
from rlhfkit.trainers.training import batches, make_optimizer

REWARD_NORM_HELP = (
    "reference responses to training prompts, sampled before training, that set the reward's gain and "
    "bias so that they score mean 0, std 1 (Ziegler et al. 2019); kl_coef and missing_eos_penalty are "
    "then in units of that std; 0: the raw reward"
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
    tokenizer = load_tokenizer(cfg.policy, system_prompt=cfg.data.system_prompt)
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
    prepared, possibly DDP-wrapped copy; under FSDP the sharded policy itself) takes the gradient steps
    with ``optimizer``; ``reference`` is
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
    reward_norm: RewardNorm


def start_group_run(cfg) -> GroupRun:
    """Set up a GRPO/RLOO run from its config (a :class:`~rlhfkit.trainers.group_config.GroupRLConfig`):
    torch, prompts, policy (sharded under FSDP: :func:`~rlhfkit.trainers.sharding.use_fsdp`) and
    reference (none when ``kl_coef`` is 0), the summed rewards, AdamW over
    ``steps * inner_epochs * (B * G / mini_batch_size)`` updates, the sampling generator, checkpoints
    (resumed from the last one if asked), the metrics log and the reward normalisation
    (:func:`reference_reward_norm`).

    Raises:
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: a model cannot be found.
    """
    accelerator = make_accelerator()
    setup_torch(cfg.seed, cfg.threads)
    prompts, _ = load_split(cfg.data, load_prompts)
    tokenizer, policy, reference = load_policy_and_reference(cfg, accelerator, cfg.uses_reference)
    fsdp = sharding.use_fsdp(cfg, accelerator)
    if fsdp:
        sharding.shard_model(policy, accelerator)
    reward = build_reward(cfg.rewards, cfg.dtype, cfg.reward_max_length)
    updates = cfg.steps * cfg.inner_epochs * (cfg.batch_size * cfg.group_size // cfg.mini_batch_size)
    optimizer, _ = make_optimizer(policy.parameters(), cfg.lr, 0.0, 0, updates)
    generator = sampling_generator(accelerator, cfg.seed)
    checkpoints = Checkpointer(
        cfg.checkpoint,
        cfg.output_dir,
        {
            "policy": sharding.checkpointed(policy),
            "optimizer": sharding.checkpointed(policy, optimizer),
            "generator": generator,
        },
        main=accelerator.is_main_process,
    )
    start, extra, stream, log = resume(cfg, accelerator, checkpoints, generator, prompts)
    norm = reference_reward_norm(cfg, accelerator, (policy, reference), tokenizer, reward, prompts, extra)
    policy_ddp, optimizer = sharding.prepare(accelerator, fsdp, policy, optimizer)
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
        reward_norm=norm,
    )


def sample_groups(
    cfg, batch: list[str], accelerator: Accelerator, policy, tokenizer, generator: torch.Generator
) -> Rollout:
    """GRPO/RLOO sampling: each of this process's prompts of the global ``batch`` ``cfg.group_size`` (G)
    times in a row, so that row b * G + i is sample i of prompt b; under :func:`forward_autocast`, from
    the policy's full weights (:func:`~rlhfkit.trainers.sharding.full_weights`)."""
    repeated = [p for p in shard(batch, accelerator) for _ in range(cfg.group_size)]
    with forward_autocast(cfg, accelerator), sharding.full_weights(policy):
        return rollout(
            policy,
            tokenizer,
            repeated,
            cfg.sampling,
            use_chat_template=cfg.use_chat_template,
            generator=generator,
        )


@dataclass(frozen=True)
class RewardNorm:
    """The affine map a run applies to the summed reward: ``(reward - bias) / gain``. The identity unless
    set by :func:`reference_reward_norm`."""

    bias: float = 0.0
    gain: float = 1.0

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.bias) / self.gain


def reference_reward_norm(
    cfg,
    accelerator: Accelerator,
    models: tuple[PreTrainedModel, PreTrainedModel | None],
    tokenizer: PreTrainedTokenizerBase,
    reward: CombinedReward,
    prompts: list[Prompt],
    extra: dict,
) -> RewardNorm:
    """Gain and bias that make the reward of the reference policy's own responses to training prompts
    mean 0 and std 1 (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
    Sec. 2.2: the reward model is normalised on samples of the initial policy), so that ``kl_coef`` and
    ``missing_eos_penalty`` are in units of the reward's spread under the reference.

    ``cfg.reward_norm_samples`` training prompts (a seeded draw; 0 turns normalisation off) get one
    response each from the reference (``models``: the policy and its reference, which is None without a
    KL term, or with LoRA, where the base under the adapter is the reference; with neither, the policy,
    which starts as the reference), sampled as in training with a generator of their own, so the training
    draws do not change. A resumed run takes the map from its checkpoint (``extra``) instead. Prints the
    map and the reference's no-EOS share and length.

    Raises:
        ValueError: the reference's rewards do not vary (no gain can normalise them).
    """
    n = cfg.reward_norm_samples
    if "reward_norm" in extra:
        return RewardNorm(**extra["reward_norm"])
    if n == 0:
        return RewardNorm()
    policy, reference = models
    chosen = random.Random(cfg.seed).sample([p.prompt for p in prompts], min(n, len(prompts)))
    mine = shard(chosen, accelerator)
    generator = torch.Generator().manual_seed(cfg.seed + 1_000_033 + accelerator.process_index)
    width = cfg.batch_size * getattr(cfg, "group_size", 1)  # what the trainer samples at once
    totals, no_eos, lengths = [], [], []
    sampler = (
        reference_of(policy, reference)
        if reference is not None or is_lora(policy)
        else sharding.full_weights(policy)
    )
    with sampler as ref:
        for start in tqdm(
            range(0, len(mine), width),
            desc="reward norm",
            unit="batch",
            disable=not accelerator.is_main_process,
        ):
            with forward_autocast(cfg, accelerator):
                ro = rollout(
                    ref,
                    tokenizer,
                    mine[start : start + width],
                    cfg.sampling,
                    use_chat_template=cfg.use_chat_template,
                    generator=generator,
                )
                totals.append(reward(ro.prompts, ro.response_texts).total)
            no_eos.append((~ro.has_eos).float().cpu())
            lengths.append(ro.lengths.float().cpu())
    total = torch.cat(totals).double()
    stats = mean_over_processes(
        accelerator,
        {
            "mean": total.mean(),
            "mean_sq": (total**2).mean(),
            "no_eos": torch.cat(no_eos).mean(),
            "length": torch.cat(lengths).mean(),
        },
    )
    mean = float(stats["mean"])
    std = math.sqrt(max(float(stats["mean_sq"]) - mean**2, 0.0))
    if not std > 0:
        raise ValueError(
            f"reward normalisation: the reference's {n} rewards are all {mean:.4g}; nothing to scale"
        )
    if accelerator.is_main_process:
        print(
            f"[rlhfkit] reward normalised on {len(chosen)} reference responses: "
            f"(r - {mean:.4f}) / {std:.4f}; "
            f"reference no-EOS share {float(stats['no_eos']):.2f}, mean length {float(stats['length']):.1f} "
            f"tokens (sampling.max_new_tokens {cfg.sampling.max_new_tokens})",
            flush=True,
        )
    return RewardNorm(bias=mean, gain=std)


def score_rollout(
    cfg, step: int, reward: CombinedReward, ro: Rollout, accelerator: Accelerator, norm: RewardNorm
) -> tuple[RewardBatch, torch.Tensor, torch.Tensor]:
    """The rewards of the rollout's responses (reward models under :func:`forward_autocast`); their
    normalised total (B,) (``norm``); and that total minus ``cfg.missing_eos_penalty`` for each response
    that never emitted EOS (B,), the score the policy is trained on.

    Raises:
        rlhfkit.trainers.checkpoint.NonFiniteError: a total reward is NaN or infinite.
    """
    with forward_autocast(cfg, accelerator):
        scored = reward(ro.prompts, ro.response_texts)
    device = ro.response_mask.device
    total = norm(scored.total.to(device))  # (B,)
    check_finite(step, reward=total)
    return scored, total, total - cfg.missing_eos_penalty * (~ro.has_eos).float().to(device)


def score_metrics(score: torch.Tensor, penalised: torch.Tensor, ro: Rollout) -> dict[str, torch.Tensor]:
    """What every RL trainer logs of a rollout's scores (B,): ``score`` (normalised, before the no-EOS
    penalty), ``score_penalised`` (what the policy is trained on), ``no_eos_frac``, ``response_length``."""
    return {
        "score": score.mean(),
        "score_penalised": penalised.mean(),
        "no_eos_frac": (~ro.has_eos).float().mean(),
        "response_length": ro.lengths.float().mean(),
    }


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
    checkpoints: Checkpointer,
    step: int,
    accelerator: Accelerator,
    generator: torch.Generator,
    norm: RewardNorm,
    **extra,
) -> None:
    """Save a checkpoint at ``step`` when one is due, with every process's sampling generator state and
    the reward normalisation (a resumed run does not sample the reference again)."""
    if checkpoints.due(step):
        states = generator_states(accelerator, generator)  # every process's, collected on all
        checkpoints.save(step, {**extra, "generators": states, "reward_norm": asdict(norm)})


def finish(
    cfg,
    accelerator: Accelerator,
    log: MetricsLog,
    models: tuple[PreTrainedModel, torch.nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    stage: str,
    norm: RewardNorm,
) -> dict:
    """Close the log, save the trained policy (``models``: the plain policy and its prepared, possibly
    DDP-wrapped or sharded copy; LoRA merged in) with the run's summary, and return the summary: the reward
    normalisation, the last KL and response length, and :func:`windows` of the logged progress."""
    log.close()
    policy, policy_ddp = models
    policy.eval()
    summary = None
    if accelerator.is_main_process:
        last = log.rows[-1]
        summary = {
            "stage": stage,
            "steps": cfg.steps,
            "processes": accelerator.num_processes,
            "reward_norm": asdict(norm),
            "kl_last": last["kl"],
            "response_length_last": last["response_length"],
            "windows": windows(log.rows),
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, policy_ddp, tokenizer, cfg.output_dir, cfg, summary)
    return summary


WINDOWED = ("score", "score_penalised", "kl", "no_eos_frac", "response_length", "explained_variance")


def windows(rows: list[dict], k: int | None = None) -> dict:
    """Training progress as windows, never two single batches: for each logged quantity of
    :data:`WINDOWED` (those present), the mean over the first ``k`` steps (``<name>_first``) and over the
    last ``k`` (``<name>_last``); ``k`` defaults to a quarter of the steps (at least 1)."""
    k = k or max(1, len(rows) // 4)
    out: dict = {"k": k}
    for name in WINDOWED:
        values = [r[name] for r in rows if r.get(name) is not None and math.isfinite(r[name])]
        if values:
            out[f"{name}_first"] = sum(values[:k]) / len(values[:k])
            out[f"{name}_last"] = sum(values[-k:]) / len(values[-k:])
    return out
