"""CSV / TSV tables and the field mapping: hand-written tables, each error naming file, row and column."""

import gzip
import json

import pytest

from rlhfkit.data import DataError, PreferencePair, load_preferences, load_prompts, load_sft
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.data.tables import Columns

SUPPORT = Columns({"prompt": "instruction", "response": "response"})
HEADER = "instruction,intent,response\n"


def user(text):
    return [{"role": "user", "content": text}]


def test_quoted_newlines_give_one_row_each_and_the_line_it_starts_on(tmp_path):
    path = tmp_path / "support.csv"
    path.write_text(
        HEADER
        + 'where is my order,track_order,"I\'m sorry to hear that.\nPlease check your tracking number."\n'
        + '"refund, please",get_refund,"Sure, ""refunds"" take 5 days."\n'
        + "cancel it,cancel_order,\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as e:
        load_sft(path, columns=SUPPORT)
    # row 3 starts on line 5: the quoted newline of row 1 took a line; the empty cell names its column
    assert (e.value.line, e.value.row, e.value.field) == (5, 3, "response")
    assert str(e.value) == f"{path}:5 (row 3): column 'response': empty response"
    report = load_sft(path, skip_invalid=True, columns=SUPPORT)
    assert [(r.prompt, r.response) for r in report] == [
        (user("where is my order"), "I'm sorry to hear that.\nPlease check your tracking number."),
        (user("refund, please"), 'Sure, "refunds" take 5 days.'),
    ]
    assert [(s.line, s.field) for s in report.skipped] == [(5, "response")]


def test_gzip_tsv_with_system_column_and_no_mapping(tmp_path):
    path = tmp_path / "pairs.tsv.gz"
    rows = ["prompt\tchosen\trejected\tsystem\tmargin", "hi\tHello! How can I help?\tWhat.\tBe kind.\t2"]
    rows.append("yo\ta\tb\t\t")
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    pairs = load_preferences(path).records
    system = {"role": "system", "content": "Be kind."}
    assert pairs == [
        PreferencePair([system, *user("hi")], "Hello! How can I help?", "What.", 2.0),
        PreferencePair(user("yo"), "a", "b", None),  # an empty system or margin cell is none
    ]


def test_missing_column_names_the_key_and_the_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "hi,greet,hello\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_sft(path, columns=Columns({"prompt": "question", "response": "response"}))
    assert str(e.value) == (
        f"{path}:1: missing column 'question': data.fields.prompt names it; "
        "the header has instruction, intent, response"
    )
    with pytest.raises(DataError, match="missing column 'channel': data.filter.channel"):
        load_sft(path, columns=Columns(SUPPORT.fields, {"channel": "email"}))


def test_empty_prompt_cell_and_unreadable_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + ',greet,hello\nhi,greet\nok,greet,fine\n"open,greet,x\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_sft(path, columns=SUPPORT)
    assert str(e.value) == f"{path}:2 (row 1): column 'instruction': empty prompt"
    report = load_sft(path, skip_invalid=True, columns=SUPPORT)
    assert [r.response for r in report] == ["fine"]
    assert [(s.line, s.reason.split(":")[0]) for s in report.skipped] == [
        (2, "empty prompt"),
        (3, "unreadable row"),  # 2 cells, the header names 3
        (5, "unreadable row"),  # an unclosed quote
    ]
    assert "2 cells, the header names 3 columns" in report.skipped[1].reason


def test_filter_keeps_matching_rows_and_counts_the_rest(tmp_path, capsys):
    path = tmp_path / "t.csv"
    lines = [f"msg {i},{'track_order' if i % 3 == 0 else 'refund'},answer {i}" for i in range(12)]
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    data = DataConfig(
        path=str(path), fields=dict(SUPPORT.fields), filter={"intent": "track_order"}, eval_fraction=0.25
    )
    train, held_out = load_split(data, load_sft)
    assert sorted(r.response for r in train + held_out) == ["answer 0", "answer 3", "answer 6", "answer 9"]
    assert (len(train), len(held_out)) == (3, 1)
    assert "4 records, 0 skipped, 8 left out by data.filter" in capsys.readouterr().out
    both = Columns(SUPPORT.fields, {"intent": ["track_order", "refund"]})
    assert len(load_prompts(path, columns=both)) == 12
    with pytest.raises(DataError, match="data.filter left out all 12 rows"):
        load_prompts(path, columns=Columns(SUPPORT.fields, {"intent": "nothing"}))


def test_mapping_works_on_json_lines_and_errors_name_the_column(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"question": "hi", "answer": "hello", "lang": "en"}]
    rows.append({"question": "", "answer": "x", "lang": "en"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    columns = Columns({"prompt": "question", "response": "answer"}, {"lang": "en"})
    with pytest.raises(DataError) as e:
        load_sft(path, columns=columns)
    assert str(e.value) == f"{path}:2: field 'question': empty prompt"  # a JSON record has no rows
    report = load_sft(path, skip_invalid=True, columns=columns)
    assert [(r.prompt, r.response) for r in report] == [("hi", "hello")]  # a JSON prompt string is as is


def test_unknown_field_name_is_refused():
    with pytest.raises(ValueError, match="unknown field"):
        DataConfig(fields={"question": "instruction"})
