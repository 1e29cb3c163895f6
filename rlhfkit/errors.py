"""Errors a user can fix, shared by the trainers and the CLI; importing this module imports no torch.

The CLI prints these as one clear line (exit code 2) instead of a traceback.
"""

from __future__ import annotations


class ModelNotFoundError(FileNotFoundError):
    """A model name could not be resolved; the message lists every place that was tried."""


class RewardError(ValueError):
    """A reward source failed or returned unusable scores; the message names it and the prompt index."""


class NonFiniteError(FloatingPointError):
    """A loss or reward became NaN or infinite; the message names the step and the quantity."""
