"""Stand-in annotators for a blind-evaluation project: a reward model labels in place of people.

NOT PEOPLE. This exists so that the README's human-evaluation walkthrough can be run end to end on a
machine with nobody to label: each stand-in is an ordinary annotator of the project, signs in with its
own token and labels through the HTTP API, seeing exactly what the page shows a person (the prompt's
turns and the responses, lettered in the order drawn for it; never the item's or the responses' metadata,
so never which policy wrote which). It scores the two responses it is shown with a reward model and
picks one with the Bradley-Terry probability ``sigmoid(score_A - score_B)``
(`rlhfkit.loop.labeler.simulate_labels`, mode ``bt``; each stand-in draws from its own seed), then
flips the pick with probability ``--noise``. The strength follows the score gap: under 0.5 slight, under
1 clear, else strong. It never answers tie or both bad.

A stand-in that follows one of the judges of ``rlhfkit annotate evaluate`` agrees with that judge more
than people would, by construction: read that judge's agreement with these labels as a check of the
plumbing, not as a finding.

    .venv/bin/python benchmarks/stand_in_annotators.py --project hh-eval --reward runs/hh-demo/judge \\
        --annotators 2 --noise 0.1

The app is served in this process on a loopback port for as long as the labelling takes.
"""

from __future__ import annotations

import argparse
import sys

import httpx
import torch

from rlhfkit.feedback.cli import DEFAULT_DB
from rlhfkit.feedback.server import serving
from rlhfkit.feedback.store import Store
from rlhfkit.loop.labeler import simulate_labels
from rlhfkit.rewards import RewardSpec, build_source

STRENGTHS = ((0.5, "slight"), (1.0, "clear"), (float("inf"), "strong"))


def label_queue(url: str, token: str, reward, noise: float, seed: int) -> int:
    """Label every item the annotator with `token` is given (comparisons of two responses); returns how
    many. `reward` scores ``(prompts, responses)`` as a `rlhfkit.rewards` source does."""
    headers = {"Authorization": f"Bearer {token}"}
    generator = torch.Generator().manual_seed(seed)
    done = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        while (reply := client.post("/api/next")).status_code == 200:
            task = reply.json()
            if len(task["responses"]) != 2:
                raise ValueError(f"item {task['item_id']}: the stand-in labels pairs only")
            turns = [{"role": t["role"], "content": t["content"]} for t in task["turns"]]
            texts = [r["text"] for r in task["responses"]]
            score_a, score_b = reward([turns, turns], texts).float()
            picked = simulate_labels(score_a[None], score_b[None], "bt", noise, generator).labels[0]
            gap = abs(float(score_a - score_b))
            strength = next(name for limit, name in STRENGTHS if gap < limit)
            body = {"item_id": task["item_id"], "label": f"{picked}_better", "strength": strength}
            client.post("/api/annotations", json=body).raise_for_status()
            done += 1
        reply.raise_for_status()
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    parser.add_argument("--project", required=True)
    parser.add_argument("--reward", required=True, help="the reward model folder the stand-ins follow")
    parser.add_argument("--annotators", type=int, default=2, help="stand-ins, each labelling its own queue")
    parser.add_argument("--noise", type=float, default=0.1, help="probability of flipping each pick")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    store = Store.open(args.db)
    reward = build_source(RewardSpec(kind="model", path=args.reward, name="stand-in"))
    existing = {name for _, name, _ in store.annotators(args.project)}
    with serving(store) as url:
        for n in range(1, args.annotators + 1):
            name = f"stand-in-{n}"
            token = store.rotate_token(args.project, name) if name in existing else None
            token = token or store.add_annotator(args.project, name)
            labelled = label_queue(url, token, reward, args.noise, args.seed + n)
            print(f"{name} (a stand-in following {args.reward}, not a person): {labelled} labels")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
