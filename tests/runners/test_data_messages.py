"""Issue 11 item 15: bad fields, pairs without signal, misspelt columns and wrong first-row types are
one line naming the row (and JSONL line), the column and what is expected, from `alignplan run` (exit
2, nothing prepared), and the data doctor reports the same conditions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch_helpers import run_cli

from runners.registry.store import Registry


def msgs(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


GOOD_PAIR = {"prompt": "Sky colour?", "chosen": " Blue.", "rejected": " Green."}
GOOD_MESSAGES = {"messages": msgs(("user", "Sky colour?"), ("assistant", "Blue."))}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_fails(capsys, runs_dir: Path, model: Path, data: Path, method: str = "dpo") -> str:
    """`alignplan run` on data: exit 2, one line on stderr, nothing on stdout, nothing prepared."""
    reward = ["--reward-function", "runners.recipes.rewards:marker_reward"] if method in ("grpo", "rloo") else []
    code, out, err = run_cli(capsys, "run", "--method", method, "--model", str(model), "--dataset", str(data),
                             "--devices", "cpu", *reward)
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "cannot tell the data format" not in err
    assert Registry.for_runs_root(runs_dir).list() == []
    return err.strip()


BAD_VALUES = [(None, "null"), (["Blue."], "a list"), ({"text": "Blue."}, "an object (dict)"), (5, "a number (5)")]


@pytest.mark.parametrize(("value", "said"), BAD_VALUES)
@pytest.mark.parametrize("key", ["content", "role"])
def test_sft_message_field_of_the_wrong_type(capsys, runs_dir, tiny_model_dir, tmp_path, key, value, said):
    bad = {"messages": msgs(("user", "Hi"), ("assistant", "Hello."))}
    bad["messages"][1][key] = value
    data = write_jsonl(tmp_path / "sft.jsonl", [GOOD_MESSAGES, bad])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data, "sft")
    assert f"sft.jsonl: row 2 (line 2), column 'messages': message 2's '{key}' is {said}" in err
    assert "expected a list of {role, content} messages with string role and non-empty string content" in err


@pytest.mark.parametrize(("value", "said"), BAD_VALUES)
@pytest.mark.parametrize("column", ["chosen", "rejected", "prompt"])
def test_preference_message_lists_name_row_column_and_message(capsys, runs_dir, tiny_model_dir, tmp_path, column,
                                                              value, said):
    good = {"prompt": msgs(("user", "Sky colour?")), "chosen": msgs(("assistant", "Blue.")),
            "rejected": msgs(("assistant", "Green."))}
    bad = json.loads(json.dumps(good))
    bad[column][0]["content"] = value
    data = write_jsonl(tmp_path / "pairs.jsonl", [good, good, bad])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert f"row 3 (line 3), column '{column}': message 1's 'content' is {said}" in err


def test_message_without_content_in_the_first_row_is_named_not_a_format_riddle(capsys, runs_dir, tiny_model_dir,
                                                                                tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": [{"role": "user"}], "rejected": msgs(("user", "x"))}])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert "row 1 (line 1), column 'chosen': message 1 has no 'content'" in err
    assert "expected a string or a list of {role, content} messages" in err


@pytest.mark.parametrize(("value", "said"), [(5, "a number (5)"), ({"a": 1}, "an object (dict)"), (None, "null")])
def test_wrong_type_in_the_first_row_names_row_and_column(capsys, runs_dir, tiny_model_dir, tmp_path, value, said):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{**GOOD_PAIR, "chosen": value}, GOOD_PAIR])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert (f"pairs.jsonl: row 1 (line 1), column 'chosen': got {said}; expected a string or a list of "
            "{role, content} messages") in err


def test_wrong_type_in_a_later_row_names_its_line(capsys, runs_dir, tiny_model_dir, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD_PAIR) + "\n\n" + json.dumps({**GOOD_PAIR, "rejected": 7}) + "\n")
    err = run_fails(capsys, runs_dir, tiny_model_dir, path)
    assert "row 2 (line 3), column 'rejected': expected a string, got a number (7)" in err


@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_misspelt_column_is_named_with_the_column_meant(capsys, runs_dir, tiny_model_dir, tmp_path, method):
    """{prompt, chosen, rejeted} reads as prompt-only: DPO refused it without saying why, GRPO took
    it silently and trained on the prompts alone."""
    rows = [{"prompt": "Sky?", "chosen": " Blue.", "rejeted": " Green."}] * 2
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    err = run_fails(capsys, runs_dir, tiny_model_dir, data, method)
    assert "row 1 (line 1): column 'rejeted' is not known; did you mean 'rejected'?" in err
    assert "read as format 'prompt-only'" in err and "'preference'" in err
    assert "dataset.columns {'rejeted': 'rejected'}" in err


def test_misspelt_kto_label_and_sft_messages(capsys, runs_dir, tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "p", "completion": "c", "lable": True}])
    assert "column 'lable' is not known; did you mean 'label'?" in run_fails(capsys, runs_dir, tiny_model_dir, data,
                                                                           "kto")
    data = write_jsonl(tmp_path / "sft.jsonl", [{"mesages": GOOD_MESSAGES["messages"]}])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data, "sft")
    assert "column 'mesages' is not known; did you mean 'messages'?" in err and "cannot be told" in err


def test_extra_columns_near_a_format_column_are_left_alone_when_they_change_nothing(tmp_path):
    """A reward column 'labels' beside prompt-only data: read as 'label' it is still prompt-only."""
    from runners.data.load import scan_rows

    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "2+2?", "labels": "4"}, {"prompt": "3+3?", "labels": "6"}])
    scan = scan_rows(str(data), "grpo")
    assert scan.format.name == "prompt-only" and scan.rows[0] == {"prompt": "2+2?", "labels": "4"}


def test_every_pair_without_a_difference_is_an_error(capsys, runs_dir, tiny_model_dir, tmp_path):
    same = {"prompt": "Sky?", "chosen": " Blue.", "rejected": " Blue."}
    data = write_jsonl(tmp_path / "pairs.jsonl", [same, same, same])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert "chosen equals rejected in all 3 pairs (first at row 1 (line 1))" in err
    assert "expected chosen and rejected to be two different answers" in err


def test_some_pairs_without_a_difference_are_a_warning_with_count_and_first_row(capsys, runs_dir, tiny_model_dir,
                                                                                 tmp_path):
    same = {"prompt": "Sea?", "chosen": " Blue.", "rejected": " Blue."}
    data = write_jsonl(tmp_path / "pairs.jsonl", [GOOD_PAIR, same, GOOD_PAIR, same])
    code, out, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset",
                             str(data), "--devices", "cpu", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["warnings"] == []
    assert f"warning: {data}: chosen equals rejected in 2 of 4 pairs (first at row 2 (line 2))" in err
    # a method that reads only the prompts or the chosen answer is not warned
    code, _, err = run_cli(capsys, "run", "--method", "sft", "--model", str(tiny_model_dir), "--dataset",
                           str(data), "--devices", "cpu", "--dry-run", "--json")
    assert code == 0 and "chosen equals rejected" not in err


def test_implicit_pairs_without_a_shared_prompt(capsys, runs_dir, tiny_model_dir, tmp_path):
    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."},
            {"chosen": "Blue, surely.", "rejected": "Green, I think."}]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert "row 2 (line 2), columns 'chosen'/'rejected': they share no prompt" in err
    assert "expected both to start with the same prompt text, or a prompt column" in err


def test_empty_shared_prompt_of_message_pairs_names_the_row(capsys, runs_dir, tiny_model_dir, tmp_path):
    good = {"chosen": msgs(("user", "Hi"), ("assistant", "Hello.")), "rejected": msgs(("user", "Hi"), ("assistant", "Go."))}
    bad = {"chosen": msgs(("assistant", "Hello.")), "rejected": msgs(("assistant", "Go."))}
    data = write_jsonl(tmp_path / "pairs.jsonl", [good, bad])
    err = run_fails(capsys, runs_dir, tiny_model_dir, data)
    assert "row 2 (line 2): chosen and rejected share no prompt turns" in err


def test_dry_run_refuses_a_data_file_that_is_here_and_wrong(capsys, runs_dir, tiny_model_dir, tmp_path):
    """A dry run may plan for another machine, so a file missing here is a warning; a file that is here
    and wrong is wrong everywhere: one line, exit 2, nothing prepared."""
    data = write_jsonl(tmp_path / "pairs.jsonl", [{**GOOD_PAIR, "chosen": 5}])
    code, out, err = run_cli(capsys, "run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset", str(data),
                             "--dry-run", "--json")
    assert code == 2 and out == ""
    assert "row 1 (line 1), column 'chosen': got a number (5)" in err and len(err.strip().splitlines()) == 1
    assert not any(runs_dir.glob("*-dpo-*"))


# --- the data doctor reports the same conditions --------------------------------------------------


def test_doctor_names_bad_message_fields_as_bad_rows(tmp_path):
    from runners.data import doctor

    good = {"prompt": "Sky?", "chosen": msgs(("user", "Sky?"), ("assistant", "Blue.")),
            "rejected": msgs(("user", "Sky?"), ("assistant", "Green."))}
    bad = json.loads(json.dumps(good))
    bad["rejected"][1]["content"] = None
    data = write_jsonl(tmp_path / "pairs.jsonl", [good, good, bad, good])
    report = doctor.inspect(str(data))
    assert report["pairs"] == 3 and report["bad_rows"]["count"] == 1
    (example,) = report["bad_rows"]["examples"]
    assert example["line"] == 3 and "column 'rejected': message 2's 'content' is null" in example["problem"]


def test_doctor_refuses_a_misspelt_column_and_a_wrong_first_row(capsys, tmp_path):
    from alignplan.cli import main

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Sky?", "chosen": " Blue.", "rejeted": " Green."}])
    assert main(["data", "inspect", str(data)]) == 2
    err = capsys.readouterr().err
    assert "column 'rejeted' is not known; did you mean 'rejected'?" in err and len(err.strip().splitlines()) == 1
    data = write_jsonl(tmp_path / "pairs.jsonl", [{**GOOD_PAIR, "chosen": 5}])
    assert main(["data", "inspect", str(data)]) == 2
    assert "row 1 (line 1), column 'chosen': got a number (5)" in capsys.readouterr().err
