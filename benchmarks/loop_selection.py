"""Active selection against random labelling at the same label budget: reward-model accuracy on held-out
gold-labelled HH pairs (the selection step of ``rlhfkit loop``, issue 7).

Set-up (the synthetic protocol of Gao et al. 2022: a gold reward model stands in for people):
- **gold**: MiniLM (``minilm-l6``) trained on the whole HH training split with the recipe of
  ``configs/hh-demo.yaml`` (1 epoch, batch 16, 256 tokens, lr 5e-5, 10 warmup steps), cached in
  ``<out-dir>/gold/``. ``--gold runs/hh-demo/reward`` uses the model ``make demo`` trained with that same
  recipe instead (and saves ~5 minutes).
- **candidates**: for each seed, ``--pool`` HH training prompts drawn at random, each with its two dataset
  responses as its candidate pair. No sampling from a policy: the benchmark costs only reward-model
  training and scoring, and every strategy chooses from the same pool.
- **labels**: the simulated labeler of the loop (``rlhfkit.loop.labeler``: Bradley-Terry draws from the
  gold model, ``--mode``, ``--noise``), seeded by seed and round.
- **protocol per seed**: ``--warm`` random labels shared by all strategies, then ``--rounds`` rounds in which
  each strategy (``rlhfkit.loop.selection``) picks ``--budget`` unlabelled pairs with the proxy reward
  model(s) of its previous round. After each round a proxy MiniLM is trained from scratch on that
  strategy's labels (``--epochs``; same seed for every strategy, so only the labels differ) and scored on
  ``--heldout`` held-out HH pairs whose chosen/rejected the gold model set. Ensemble members (for the next
  round's selection) are more proxies trained on the same labels with other seeds.
- **report**: mean ± std over seeds of that accuracy per strategy and label count; ``--out`` writes JSON.

Usage (about 15-20 minutes on the 2-core CPU by estimate; not timed yet)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/loop_selection.py --out runs/loop-bench/results.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/loop_selection.py --tiny   # a smoke run of the same code

A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from rlhfkit.data import PreferencePair, load_preferences
from rlhfkit.data.split import HH_DATA, DataConfig, load_split
from rlhfkit.loop.candidates import member_probs
from rlhfkit.loop.labeler import SimulatedLabeler, orient_by_gold
from rlhfkit.loop.labels import preference_pairs
from rlhfkit.loop.layout import write_jsonl
from rlhfkit.loop.scoring import RewardScorer
from rlhfkit.loop.selection import STRATEGIES, CandidatePair, candidate_pairs, select
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.saving import read_summary

TINY = {
    "pool": 24,
    "heldout": 16,
    "warm": 4,
    "budget": 4,
    "rounds": 1,
    "seeds": [0],
    "ensemble_size": 2,
    "epochs": 1,
    "max_length": 64,
    "gold_max_length": 64,
    "gold_steps": 2,
    "out_dir": "runs/loop-bench-tiny",
}
# the reward recipe of configs/hh-demo.yaml, for the gold model and the proxies alike
RECIPE = {"batch_size": 16, "lr": 5e-5, "eval_batch_size": 64}


class LookupGold:
    """The gold model's cached rewards, looked up by (prompt, response): stands in for its RewardScorer."""

    def __init__(self, scores: dict[str, float]):
        self.scores = scores

    @staticmethod
    def key(prompt, response: str) -> str:
        return json.dumps([prompt, response])

    def __call__(self, prompts, responses) -> torch.Tensor:
        """Gold rewards (N,) of N (prompt, response) pairs."""
        return torch.tensor([self.scores[self.key(p, r)] for p, r in zip(prompts, responses, strict=True)])


def load_gold(args, pairs: list[PreferencePair]) -> LookupGold:
    """Train the gold model (once) and score both responses of every pair in ``pairs`` with it (cached)."""
    gold = args.gold or str(Path(args.out_dir) / "gold")
    if args.gold is None and read_summary(gold) is None:
        print(f"[bench] training the gold reward model on the whole training split -> {gold}", flush=True)
        data = DataConfig(path=args.data, skip_invalid=True)
        cfg = RewardConfig(
            model=args.gold_backbone, output_dir=gold, data=data, max_length=args.gold_max_length
        )
        train_reward(replace(cfg, max_steps=args.gold_steps, warmup_steps=10, **RECIPE))
    cache = Path(args.out_dir) / "gold-scores.json"
    made_by = {"model": gold, "max_length": args.gold_max_length}
    table = json.loads(cache.read_text()) if cache.exists() else {}
    scores = table.get("scores", {}) if table.get("made_by") == made_by else {}
    todo = {LookupGold.key(p.prompt, r): (p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)}
    todo = {key: text for key, text in todo.items() if key not in scores}
    if todo:
        print(f"[bench] scoring {len(todo)} responses with the gold model {gold}", flush=True)
        prompts, responses = zip(*todo.values(), strict=True)
        new = RewardScorer.load(gold, args.gold_max_length, RECIPE["eval_batch_size"])(prompts, responses)
        scores.update(zip(todo, new.tolist(), strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"made_by": made_by, "scores": scores}))
    return LookupGold(scores)


def proxies(args, labels: list[dict], size: int, seed: int, folder: Path) -> list[str]:
    """``size`` proxy reward models trained from the backbone on ``labels`` (seeds seed, seed + 1, ...)."""
    write_jsonl(folder / "pairs.jsonl", (p.to_dict() for p in preference_pairs(labels)))
    data = DataConfig(path=str(folder / "pairs.jsonl"), format="trl", eval_fraction=0.0)
    cfg = RewardConfig(
        model=args.backbone, data=data, epochs=args.epochs, max_length=args.max_length, **RECIPE
    )
    paths = [str(folder / f"member-{m}") for m in range(size)]
    for m, path in enumerate(paths):
        train_reward(replace(cfg, output_dir=path, seed=seed + m))
    return paths


def accuracy(args, model: str, heldout: list[PreferencePair]) -> float:
    return RewardScorer.load(model, args.max_length, RECIPE["eval_batch_size"]).accuracy(heldout)


def pick(args, strategy: str, members: list[str], pool: list[dict], rest: list[int], seed: int) -> list[int]:
    """The pool indices (among ``rest``) that ``strategy`` labels next, scored by ``members``."""
    scorers = {"random": [], "uncertainty": members[:1], "ensemble": members}[strategy]
    candidates = [
        {"prompt": pool[i]["prompt"], "responses": [pool[i]["response_a"], pool[i]["response_b"]]}
        for i in rest
    ]
    pairs = [CandidatePair(j, 0, 1) for j in range(len(rest))]
    p = member_probs(scorers, candidates, pairs, args.max_length, RECIPE["eval_batch_size"])  # (M, len(rest))
    return [rest[j] for j in select(strategy, p, args.budget, seed).indices]


def run_seed(args, seed: int, pool: list[dict], heldout: list[PreferencePair], gold: LookupGold) -> dict:
    """Each strategy's accuracy after the shared warm start and after each round, for one seed."""
    work = Path(args.out_dir) / "work" / f"seed-{seed}"
    labeler = SimulatedLabeler(gold, args.mode, args.noise, seed)
    warm = select("random", torch.empty(0, len(pool)), args.warm, seed).indices
    warm_labels = labeler.label(0, [pool[i] for i in warm])
    warm_size = args.ensemble_size if "ensemble" in args.strategies else 1
    warm_members = proxies(args, warm_labels, warm_size, seed, work / "warm")
    warm_accuracy = accuracy(args, warm_members[0], heldout)
    out = {}
    for strategy in args.strategies:
        start = time.time()
        labelled, labels, members, curve = set(warm), list(warm_labels), warm_members, [warm_accuracy]
        for r in range(1, args.rounds + 1):
            rest = [i for i in range(len(pool)) if i not in labelled]
            picked = pick(args, strategy, members, pool, rest, 1_000_003 * seed + r)
            labelled.update(picked)
            labels += labeler.label(r, [pool[i] for i in picked])
            size = args.ensemble_size if strategy == "ensemble" and r < args.rounds else 1
            folder = work / f"{strategy}-round-{r}"
            members = proxies(args, labels, size, seed, folder)
            curve.append(accuracy(args, members[0], heldout))
            shutil.rmtree(folder.with_name(f"{strategy}-round-{r - 1}"), ignore_errors=True)
            print(f"[bench] seed {seed} {strategy} round {r}: {len(labels)} labels, accuracy {curve[-1]:.3f}")
        out[strategy] = {
            "accuracy": curve,
            "labels": len(labels),
            "wall_seconds": round(time.time() - start, 1),
        }
    shutil.rmtree(work)
    return out


def summarise(runs: dict[int, dict]) -> dict:
    """Per strategy: mean and std over seeds of the accuracy at each label count (first: the warm start)."""
    out = {}
    for strategy in next(iter(runs.values())):
        by_count = list(zip(*(runs[seed][strategy]["accuracy"] for seed in runs), strict=True))
        out[strategy] = {
            "mean": [statistics.fmean(x) for x in by_count],
            "std": [statistics.pstdev(x) for x in by_count],
            "wall_seconds": round(sum(runs[seed][strategy]["wall_seconds"] for seed in runs), 1),
        }
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=HH_DATA, help="HH-RLHF (or TRL) preference file")
    parser.add_argument("--backbone", default="minilm-l6", help="the proxy reward models are trained from it")
    parser.add_argument("--gold-backbone", default="minilm-l6", help="the gold model is trained from it")
    parser.add_argument("--gold", help="an existing gold reward model folder (no gold training)")
    parser.add_argument("--gold-steps", type=int, help="gold training steps (default: one epoch)")
    parser.add_argument("--gold-max-length", type=int, default=256, help="gold model tokens per dialogue")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=256, help="candidate pairs per seed (HH training pairs)")
    parser.add_argument("--heldout", type=int, default=200, help="held-out gold-labelled pairs")
    parser.add_argument("--warm", type=int, default=32, help="random labels every strategy starts from")
    parser.add_argument("--budget", type=int, default=32, help="labels each strategy chooses per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ensemble-size", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="proxy reward-model epochs over its labels")
    parser.add_argument("--max-length", type=int, default=128, help="proxy reward-model tokens per dialogue")
    parser.add_argument("--mode", choices=("bt", "argmax"), default="bt")
    parser.add_argument("--noise", type=float, default=0.0, help="probability of flipping a label")
    parser.add_argument("--out-dir", default="runs/loop-bench", help="gold model, score cache, work folders")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--tiny", action="store_true", help=f"smoke-test sizes (other flags still apply): {TINY}"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)
    if "ensemble" in args.strategies and args.ensemble_size < 2:
        parser.error("--ensemble-size must be >= 2 for the ensemble strategy")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.time()
    load = functools.partial(load_preferences, format="auto")
    train, held_out = load_split(DataConfig(path=args.data, skip_invalid=True), load)
    held_out = held_out[: args.heldout]
    usable = [
        c.prompt for c in candidate_pairs([[p.chosen, p.rejected] for p in train])
    ]  # non-empty, distinct
    pools = {
        seed: [
            {"prompt": train[i].prompt, "response_a": train[i].chosen, "response_b": train[i].rejected}
            for i in random.Random(seed).sample(usable, args.pool)
        ]
        for seed in args.seeds
    }
    scored = held_out + [
        PreferencePair(x["prompt"], x["response_a"], x["response_b"]) for p in pools.values() for x in p
    ]
    gold = load_gold(args, scored)
    heldout = orient_by_gold(held_out, gold)
    gold_human = statistics.fmean(p.chosen == h.chosen for p, h in zip(heldout, held_out, strict=True))
    runs = {seed: run_seed(args, seed, pools[seed], heldout, gold) for seed in args.seeds}
    summary = summarise(runs)

    counts = [args.warm + r * args.budget for r in range(args.rounds + 1)]
    print(
        f"\nproxy reward-model accuracy on {len(heldout)} held-out gold-labelled pairs, mean ± std over "
        f"seeds {args.seeds}\n(the gold model agrees with the human labels of these pairs: {gold_human:.3f})"
    )
    print(f"{'strategy':<13}" + "".join(f"{f'{n} labels':>17}" for n in counts) + f"{'wall s':>9}")
    for strategy, row in summary.items():
        cells = "".join(f"{f'{m:.3f} ± {s:.3f}':>17}" for m, s in zip(row["mean"], row["std"], strict=True))
        print(f"{strategy:<13}{cells}{row['wall_seconds']:>9.0f}")
    print(f"total wall time {time.time() - start:.0f} s")
    result = {"args": vars(args), "labels": counts, "gold_agrees_with_human": gold_human, "summary": summary}
    result["runs"] = runs
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
