"""Iterative RLHF with active selection of the pairs to label: ``rlhfkit loop`` (see ``rlhfkit.loop.run``).

config.py      LoopConfig and its sections
layout.py      the run folder's files, written atomically
candidates.py  K samples per prompt; every pair scored by the current reward model(s)
selection.py   strategies (random, uncertainty, ensemble): pure functions of preference probabilities
labels.py      label records and the trainable pairs they give
labeler.py     the simulated labeler: a gold reward model, Bradley-Terry or argmax, label noise
human.py       the human labeler: a batch of items in the feedback app, polled until labelled
scoring.py     a reward model loaded once to score (prompt, response) pairs
stages.py      the trainers' configs for a round, held-out gold pairs, the round's record
run.py         run_loop: the rounds, their stages, and resuming
"""
