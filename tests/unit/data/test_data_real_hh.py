"""The real HH-RLHF sample: 1,995 good pairs and 5 whose prompts differ."""

import gzip
import json
from pathlib import Path

import pytest

from rlhfkit.data import DataError, join_prompt_response, load_preferences, load_prompts

REAL = Path("/work/shared/data/hh-rlhf/harmless-base-2000.jsonl.gz")
BAD_LINES = [911, 1379, 1622, 1865, 1896]

pytestmark = pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} not present")


def test_real_hh_with_skip_invalid():
    report = load_preferences(REAL, skip_invalid=True)
    assert len(report) == 1995
    assert [s.line for s in report.skipped] == BAD_LINES
    assert all(s.field == "rejected" and s.reason.startswith("HH prompts differ") for s in report.skipped)
    assert report.summary().endswith("1995 records, 5 skipped (5 × HH prompts differ)")
    with gzip.open(REAL, "rt", encoding="utf-8") as f:
        originals = [json.loads(line) for line in f]
    good = [row for i, row in enumerate(originals, 1) if i not in BAD_LINES]
    for pair, row in zip(report.records, good, strict=True):
        assert join_prompt_response(pair.prompt, pair.chosen) == row["chosen"]
        assert join_prompt_response(pair.prompt, pair.rejected) == row["rejected"]


def test_real_hh_without_skip_names_first_bad_line():
    with pytest.raises(DataError) as info:
        load_preferences(REAL)
    assert (info.value.line, info.value.field) == (911, "rejected")
    assert str(info.value).startswith(f"{REAL}:911: field 'rejected': HH prompts differ")


def test_real_hh_feeds_prompts_with_the_same_records_as_pairs():
    prompts = load_prompts(REAL, skip_invalid=True)
    pairs = load_preferences(REAL, skip_invalid=True)
    assert len(prompts) == len(pairs) == 1995
    assert [p.prompt for p in prompts.records] == [p.prompt for p in pairs.records]
