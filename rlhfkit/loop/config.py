"""The config of ``rlhfkit loop``: rounds, budgets, the selection strategy, the labeler, and one section per
stage (the trainers' own config dataclasses; the loop fills in their model paths, data, output folders
and seeds, as ``rlhfkit pipeline`` does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from rlhfkit.config import option
from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import EvalConfig
from rlhfkit.feedback.cli import DEFAULT_DB
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.trainers.dpo import DPOConfig
from rlhfkit.trainers.grpo import GRPOConfig
from rlhfkit.trainers.ppo import PPOConfig
from rlhfkit.trainers.reward import RewardConfig

# the keys of rlhfkit.loop.selection.STRATEGIES (a test keeps them in step)
Strategy = Literal["random", "uncertainty", "ensemble"]


@dataclass
class CandidatesConfig:
    """Sampling the K candidate responses per prompt that pairs are selected from."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    prompts_per_round: int = option(16, "fresh training prompts per round (rounds never share prompts)")
    k: int = option(4, "K responses sampled per prompt: K(K-1)/2 candidate pairs each")
    sampling: SamplingConfig = option(
        SamplingConfig(temperature=0.9),
        "how the candidates are sampled (temperature > 0, or the K samples would be equal)",
    )
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    batch_size: int = option(8, "prompts per sampling batch (each repeated K times)")
    dtype: str = option("float32", "float32, bfloat16 or float16")

    def __post_init__(self):
        if self.k < 2:
            raise ValueError(f"k must be >= 2 to make pairs, got {self.k}")
        if self.prompts_per_round < 1 or self.batch_size < 1:
            raise ValueError("prompts_per_round and batch_size must be >= 1")
        if self.sampling.temperature <= 0:
            raise ValueError(
                "sampling.temperature must be > 0: greedy decoding would give K identical responses"
            )


@dataclass
class SelfPlayConfig:
    """A gold model learnt from human-written responses, for data without comparisons (an SFT table):
    for training messages no round uses, the human response is chosen over the initial policy's own
    sample (self-play pairs, as in SPIN; Chen et al. 2024), and a reward model is trained on them from
    ``backbone`` with the ``reward`` section's settings (see rlhfkit.loop.self_play)."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    train_records: int = option(
        0,
        "training rows made into self-play pairs, from the end of the training split (never a round's "
        "prompts); 0: off, simulated.gold_reward_model labels",
    )
    heldout_records: int = option(
        64, "held-out rows made into self-play pairs too: the gold model's held-out accuracy"
    )
    backbone: str = option("minilm-l6", "what the gold reward model is trained from")
    sampling: SamplingConfig = option(
        SamplingConfig(temperature=0.7), "how the initial policy's own responses are sampled"
    )
    batch_size: int = option(8, "messages per sampling batch")

    def __post_init__(self):
        if self.train_records < 0 or self.heldout_records < 1 or self.batch_size < 1:
            raise ValueError("train_records must be >= 0, heldout_records and batch_size >= 1")


@dataclass
class SimulatedConfig:
    """The simulated labeler: a gold reward model answers (see rlhfkit.loop.labeler)."""

    gold_reward_model: str = option(
        "runs/hh-demo/reward",
        "gold reward model folder: a separately trained (or larger) reward model (unused with self_play)",
    )
    self_play: SelfPlayConfig = option(
        SelfPlayConfig, "train the gold model on self-play pairs instead (self_play.train_records > 0)"
    )
    mode: Literal["bt", "argmax"] = option(
        "bt", "bt: a wins with probability sigmoid(g_a - g_b); argmax: the higher gold reward wins"
    )
    noise: float = option(0.0, "probability of flipping each label (annotator disagreement)")
    seed: int = option(0, "seed of the labeler's draws (the same seed gives the same labels)")
    max_length: int = option(256, "gold reward model tokens per dialogue (cut from the left)")
    heldout_pairs: int = option(
        200,
        "held-out data pairs (with self_play: its held-out pairs), relabelled by the gold model (argmax), "
        "that reward accuracy is measured on",
    )

    def __post_init__(self):
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise is a probability in [0, 1], got {self.noise}")
        if self.heldout_pairs < 1:
            raise ValueError("heldout_pairs must be >= 1")


@dataclass
class HumanConfig:
    """The human labeler: pairs go to the feedback app (rlhfkit annotate) and the loop waits for labels."""

    db: str = option(DEFAULT_DB, "feedback database URL (the --db of rlhfkit annotate)")
    project: str | None = option(None, "feedback project (default: the run name); created if missing")
    overlap: int = option(1, "annotators per item, for a project the loop creates")
    guidelines: str | None = option(None, "file with the guidelines, for a project the loop creates")
    poll_seconds: float = option(10.0, "how often the database is checked for new labels")
    timeout_seconds: float | None = option(None, "stop waiting after this long (None: wait until done)")

    def __post_init__(self):
        if self.overlap < 1:
            raise ValueError("overlap must be >= 1")
        if self.poll_seconds <= 0:
            raise ValueError("poll_seconds must be > 0")


@dataclass
class LoopConfig:
    """Iterative RLHF: each round samples candidates from the current policy, selects pairs under a label
    budget, has them labelled, retrains the reward model on all labels so far, runs PPO / GRPO / DPO and
    evaluates. Re-running the same command resumes at the first unfinished stage."""

    name: str = option("hh-loop", "run name: outputs go to <runs_dir>/<name>/")
    runs_dir: str = option("runs", "parent folder of all runs")
    policy: str = option(
        "runs/hh-demo/sft",
        "initial policy: round 1 starts from it; the reference and eval baseline throughout",
    )
    reward_backbone: str = option("minilm-l6", "backbone the reward model is trained from each round")
    initial_reward_model: str | None = option(
        None, "reward model that selects round 1's pairs (None: round 1 selects at random)"
    )
    data: DataConfig = option(DataConfig, "prompts: train split for candidates and RL, held-out for eval")
    seed: int = option(0, "seed of sampling, selection and training (each round adds its number)")
    rounds: int = option(3, "R: rounds of sample -> select -> label -> reward -> RL -> eval")
    method: Literal["ppo", "grpo", "dpo"] = option(
        "ppo", "policy update each round; dpo restarts from the initial policy on all labels (its reference)"
    )
    strategy: Strategy = option(
        "uncertainty", "pair selection: random, uncertainty (p nearest 1/2), ensemble (member disagreement)"
    )
    labels_per_round: int = option(16, "pairs sent to the labeler per round (the label budget)")
    ensemble_size: int = option(3, "reward models per round with strategy=ensemble (seeds seed..seed+M-1)")
    labeler: Literal["simulated", "human"] = option("simulated", "who labels: the gold model, or people")
    candidates: CandidatesConfig = option(CandidatesConfig, "sampling the candidate responses")
    simulated: SimulatedConfig = option(SimulatedConfig, "the simulated labeler (labeler=simulated)")
    human: HumanConfig = option(HumanConfig, "the feedback app (labeler=human)")
    reward: RewardConfig = option(RewardConfig, "reward model training (model, data, output set by the loop)")
    ppo: PPOConfig = option(PPOConfig, "PPO (method=ppo; policy, reference, reward model set by the loop)")
    grpo: GRPOConfig = option(GRPOConfig, "GRPO (method=grpo; policy, reference, rewards set by the loop)")
    dpo: DPOConfig = option(DPOConfig, "DPO (method=dpo; policy and data set by the loop)")
    eval: EvalConfig = option(EvalConfig, "evaluation against the initial policy each round")

    def __post_init__(self):
        if self.rounds < 1 or self.labels_per_round < 1:
            raise ValueError("rounds and labels_per_round must be >= 1")
        k = self.candidates.k
        most = self.candidates.prompts_per_round * k * (k - 1) // 2
        if self.labels_per_round > most:
            raise ValueError(
                f"labels_per_round {self.labels_per_round} is more than the {most} candidate pairs of a "
                f"round (candidates.prompts_per_round x K(K-1)/2); raise candidates.prompts_per_round or k"
            )
        if self.strategy == "ensemble" and self.ensemble_size < 2:
            raise ValueError("strategy=ensemble needs ensemble_size >= 2")
        if Path(self.policy).name == "policy":  # eval names each policy by its folder
            raise ValueError("the initial policy's folder must not be called 'policy' (each round's is)")
