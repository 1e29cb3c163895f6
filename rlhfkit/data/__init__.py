"""Records and their formats: the schema shared by trainers and the feedback app, and its loaders.

Imports nothing beyond the standard library (``datasets`` only when a hub id is loaded).
"""

from rlhfkit.data.errors import DataError, LoadReport, SkippedRecord
from rlhfkit.data.hh import (
    ASSISTANT_TAG,
    HUMAN_TAG,
    HHFormatError,
    hh_to_messages,
    join_prompt_response,
    messages_to_hh,
    split_hh_dialogue,
)
from rlhfkit.data.loaders import (
    load_preferences,
    load_prompts,
    load_sft,
    load_unpaired,
    read_records,
    train_eval_split,
)
from rlhfkit.data.records import PreferencePair, Prompt, PromptOnly, SFTExample, UnpairedExample

__all__ = [
    "ASSISTANT_TAG",
    "HUMAN_TAG",
    "DataError",
    "HHFormatError",
    "LoadReport",
    "PreferencePair",
    "Prompt",
    "PromptOnly",
    "SFTExample",
    "SkippedRecord",
    "UnpairedExample",
    "hh_to_messages",
    "join_prompt_response",
    "load_preferences",
    "load_prompts",
    "load_sft",
    "load_unpaired",
    "messages_to_hh",
    "read_records",
    "split_hh_dialogue",
    "train_eval_split",
]
