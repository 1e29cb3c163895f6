"""``rlhfkit <command> --help`` lists the same keys, types and defaults as before the ``sampling`` section,
except the sampling keys, which moved from ``P.<key>`` to ``P.sampling.<key>``, and the
summarize-from-feedback and table keys (field mapping, row filter, system prompt) added to every ``data``
section since.

``cli_help/<command>.txt`` are snapshots of ``describe_config`` taken before that change (they stay as
they are). Entries are compared in order: ``  key (type, default X)`` (or ``required``) and section
headers ``  key: [section Class]``; help texts are not compared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlhfkit.cli import COMMANDS
from rlhfkit.config import describe_config

SNAPSHOTS = Path(__file__).parent / "cli_help"
SAMPLING_KEYS = ("max_prompt_length", "max_new_tokens", "temperature", "top_k", "top_p")
CONFIG_COMMANDS = [name for name, command in COMMANDS.items() if command.has_config]
# commands added after the snapshots were taken: nothing to compare them with
NEW_COMMANDS = {"generate", "kto"}
SNAPSHOT_COMMANDS = [name for name in CONFIG_COMMANDS if name not in NEW_COMMANDS]
# keys added to every data section after the snapshots were taken (the summarize-from-feedback options,
# then the column mapping, row filter and system prompt of issue 19)
ADDED_DATA_KEYS = (
    "max_query_chars",
    "margin_from_confidence",
    "sft_target",
    "fields",
    "filter",
    "system_prompt",
)
# sections added since, per command: the pipeline's grpo stage (its `stages` type lists it, same default),
# the loop's self-play gold model (issue 19)
ADDED_SECTIONS = {"pipeline": ("grpo",), "loop": ("simulated.self_play",)}
# keys added since, per command: the RL trainers' `fsdp` (issue 21)
ADDED_KEYS = {
    "ppo": ("fsdp",),
    "grpo": ("fsdp",),
    "rloo": ("fsdp",),
    "pipeline": ("ppo.fsdp",),
    "loop": ("ppo.fsdp", "grpo.fsdp"),
}
CHANGED_TYPES = {"pipeline": {"stages"}}

KEY_LINE = re.compile(r"^  (?P<key>[\w.]+) \((?P<rest>.*)\)$")
SECTION_LINE = re.compile(r"^  (?P<key>[\w.]+): \[(?P<kind>[^\]]*)\]")


def _entries(text: str) -> list[tuple[str, str, str]]:
    """(key, type, default) per key line and (key, "section", kind) per section header, in order."""
    out = []
    for line in text.splitlines():
        if m := SECTION_LINE.match(line):
            out.append((m["key"], "section", m["kind"]))
        elif m := KEY_LINE.match(line):
            rest = m["rest"]
            if rest.endswith(", required"):
                out.append((m["key"], rest.removesuffix(", required"), "required"))
            else:
                tp, sep, default = rest.partition(", default ")
                assert sep, f"cannot parse the help line {line!r}"
                out.append((m["key"], tp, default))
    return out


def _moved(entries: list[tuple[str, str, str]], sampling_prefixes: set[str]) -> list[tuple[str, str, str]]:
    """The old entries with ``P.<sampling key>`` renamed to ``P.sampling.<key>`` for each prefix ``P`` that
    now has a ``sampling`` section; the new section header goes before its first key."""
    out = []
    for key, tp, default in entries:
        prefix, _, name = key.rpartition(".")
        if prefix in sampling_prefixes and name in SAMPLING_KEYS and tp != "section":
            section = f"{prefix}.sampling" if prefix else "sampling"
            if not any(k == section for k, *_ in out):
                out.append((section, "section", "*"))
            key = f"{section}.{name}"
        out.append((key, tp, default))
    return out


def _sampling_prefixes(entries: list[tuple[str, str, str]]) -> set[str]:
    return {
        key.removesuffix("sampling").removesuffix(".")
        for key, tp, _ in entries
        if tp == "section" and key.rpartition(".")[2] == "sampling"
    }


@pytest.mark.parametrize("name", SNAPSHOT_COMMANDS)
def test_help_keys_match_the_snapshot_but_for_the_sampling_section(name):
    snapshot = SNAPSHOTS / f"{name}.txt"
    old = _entries(snapshot.read_text(encoding="utf-8"))
    new = _entries(describe_config(COMMANDS[name].config()))
    added = [k for k, *_ in new if k.rpartition(".")[2] in ADDED_DATA_KEYS]
    assert added and all(k.rpartition(".")[0].endswith("data") for k in added)
    sections = ADDED_SECTIONS.get(name, ())
    added += [k for k, *_ in new if any(k == s or k.startswith(f"{s}.") for s in sections)]
    assert all(any(k == s for k in added) for s in sections)
    keys = ADDED_KEYS.get(name, ())
    assert set(keys) <= {k for k, *_ in new}
    added += keys
    new = [entry for entry in new if entry[0] not in added]
    changed = CHANGED_TYPES.get(name, set())
    old = [(k, "*" if k in changed else tp, d) for k, tp, d in old]
    new = [(k, "*" if k in changed else tp, d) for k, tp, d in new]
    assert old and new
    prefixes = _sampling_prefixes(new)
    expected = _moved(old, prefixes)
    # the new section's header: any section class, as long as it is a plain (not optional) section
    got = [(k, tp, "*" if tp == "section" and k.rpartition(".")[2] == "sampling" else d) for k, tp, d in new]
    for key, tp, kind in new:
        if tp == "section" and key.rpartition(".")[2] == "sampling":
            assert kind.startswith("section ") and "optional" not in kind, (key, kind)
    assert got == expected


def test_every_command_with_a_config_has_a_snapshot():
    """Every command but the new ones; a command added later belongs in NEW_COMMANDS."""
    assert {p.stem for p in SNAPSHOTS.glob("*.txt")} == set(SNAPSHOT_COMMANDS)
    assert NEW_COMMANDS <= set(CONFIG_COMMANDS)


def test_the_sampling_commands_lost_their_flat_keys():
    """The commands that sample all show their sampling keys only under a ``sampling`` section."""
    for name in ("ppo", "grpo", "rloo", "eval", "loop", "pipeline"):
        entries = _entries(describe_config(COMMANDS[name].config()))
        assert _sampling_prefixes(entries), name
    loop = {key for key, *_ in _entries(describe_config(COMMANDS["loop"].config()))}
    for section in ("candidates", "ppo", "grpo", "eval"):
        assert f"{section}.sampling.temperature" in loop and f"{section}.temperature" not in loop
    assert "dpo.max_prompt_length" in loop  # DPO's own training key, not a sampling one
