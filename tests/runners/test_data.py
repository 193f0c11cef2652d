"""runners.data.load: format detection, normalization, and every bad-data error (fast: no model, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.data.load import (
    ACCEPTED,
    DataError,
    detect_format,
    load_and_normalize,
    split_hh,
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def msgs(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


ROWS_BY_FORMAT: dict[str, dict] = {
    "preference": {"prompt": "Q: sky?\nA:", "chosen": " Blue.", "rejected": " Green."},
    "preference-implicit": {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    "preference-conversational": {
        "prompt": msgs(("user", "Sky colour?")),
        "chosen": msgs(("assistant", "Blue.")),
        "rejected": msgs(("assistant", "Green.")),
    },
    "preference-messages": {
        "prompt": "Sky colour?",
        "chosen": msgs(("user", "Sky colour?"), ("assistant", "Blue.")),
        "rejected": msgs(("user", "Sky colour?"), ("assistant", "Green.")),
    },
    "hh-transcript": {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Sky colour?\n\nAssistant: Blue.",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Sky colour?\n\nAssistant: Go away.",
    },
    "unpaired": {"prompt": "Sky colour?", "completion": " Blue.", "label": True},
    "prompt-only": {"prompt": "Sky colour?"},
    "prompt-completion": {"prompt": "Sky colour?", "completion": " Blue."},
    "sft-messages": {"messages": msgs(("user", "Sky colour?"), ("assistant", "Blue."))},
    "text": {"text": "The sky is blue."},
}


@pytest.mark.parametrize("name", sorted(ROWS_BY_FORMAT))
def test_detect_format_names_each_format(name: str) -> None:
    fmt = detect_format([ROWS_BY_FORMAT[name]])
    assert fmt.name == name
    assert fmt.description


@pytest.mark.parametrize("name", sorted(ROWS_BY_FORMAT))
def test_load_and_normalize_reports_the_detected_format(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS_BY_FORMAT[name]] * 3)
    method = next(m for m, formats in ACCEPTED.items() if name in formats)
    dataset, fmt = load_and_normalize(str(path), method)
    assert fmt.name == name
    assert fmt.rows == len(dataset) >= 3
    assert str(path) in fmt.summary() and name in fmt.summary()


def test_explicit_preference_is_kept_as_is(tmp_path: Path) -> None:
    row = ROWS_BY_FORMAT["preference"]
    dataset, _ = load_and_normalize(write_jsonl(tmp_path / "p.jsonl", [row, row]), "dpo")
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset[0] == row


def test_implicit_prompt_is_split_at_a_word_boundary(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [ROWS_BY_FORMAT["preference-implicit"]])
    dataset, _ = load_and_normalize(path, "dpo")
    assert dataset[0] == {"prompt": "The sky is ", "chosen": "blue.", "rejected": "green."}


def test_hh_transcript_splits_at_the_last_assistant_turn(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "hh.jsonl", [ROWS_BY_FORMAT["hh-transcript"]])
    dataset, _ = load_and_normalize(path, "dpo")
    row = dataset[0]
    assert row["prompt"] == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Sky colour?\n\nAssistant:"
    assert row["chosen"] == " Blue."
    assert row["rejected"] == " Go away."
    assert split_hh("\n\nHuman: a\n\nAssistant: b") == ("\n\nHuman: a\n\nAssistant:", " b")


def test_ultrafeedback_messages_split_into_prompt_turns_and_answer(tmp_path: Path) -> None:
    row = dict(ROWS_BY_FORMAT["preference-messages"], score_chosen=8.0, score_rejected=3.0)
    dataset, fmt = load_and_normalize(write_jsonl(tmp_path / "uf.jsonl", [row]), "dpo")
    assert fmt.name == "preference-messages"
    assert dataset[0]["prompt"] == msgs(("user", "Sky colour?"))
    assert dataset[0]["chosen"] == msgs(("assistant", "Blue."))
    assert dataset[0]["rejected"] == msgs(("assistant", "Green."))
    assert dataset.column_names == ["prompt", "chosen", "rejected"]  # score columns dropped


def test_conversational_preference_keeps_message_lists(tmp_path: Path) -> None:
    row = ROWS_BY_FORMAT["preference-conversational"]
    dataset, _ = load_and_normalize(write_jsonl(tmp_path / "c.jsonl", [row]), "orpo")
    assert dataset[0] == row


def test_kto_unpairs_preference_pairs(tmp_path: Path) -> None:
    rows = [ROWS_BY_FORMAT["preference"], {"prompt": "Q2", "chosen": " yes", "rejected": " no"}]
    dataset, fmt = load_and_normalize(write_jsonl(tmp_path / "p.jsonl", rows), "kto")
    assert fmt.name == "preference"
    assert len(dataset) == 4
    assert dataset.column_names == ["prompt", "completion", "label"]
    assert [r["label"] for r in dataset] == [True, False, True, False]
    assert dataset[3] == {"prompt": "Q2", "completion": " no", "label": False}


def test_kto_labels_accept_bools_ints_and_strings(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": "c", "label": v} for v in (True, 0, "true", "False", 1)]
    dataset, _ = load_and_normalize(write_jsonl(tmp_path / "k.jsonl", rows), "kto")
    assert dataset["label"] == [True, False, True, False, True]


def test_online_methods_take_the_prompts_of_preference_data(tmp_path: Path) -> None:
    rows = [ROWS_BY_FORMAT["preference"]] * 2
    dataset, _ = load_and_normalize(write_jsonl(tmp_path / "p.jsonl", rows), "grpo")
    assert dataset.column_names == ["prompt"]
    assert dataset[0]["prompt"] == "Q: sky?\nA:"


def test_sft_trains_on_chosen_answers_of_preference_data(tmp_path: Path) -> None:
    dataset, _ = load_and_normalize(write_jsonl(tmp_path / "p.jsonl", [ROWS_BY_FORMAT["preference"]]), "sft")
    assert dataset[0] == {"prompt": "Q: sky?\nA:", "completion": " Blue."}


def test_column_mapping_renames_before_detection(tmp_path: Path) -> None:
    rows = [{"question": "Q", "good": " a", "bad": " b"}] * 2
    spec = {"path": str(write_jsonl(tmp_path / "m.jsonl", rows)), "columns": {"question": "prompt", "good": "chosen", "bad": "rejected"}}
    dataset, fmt = load_and_normalize(spec, "dpo")
    assert fmt.name == "preference"
    assert dataset[0] == {"prompt": "Q", "chosen": " a", "rejected": " b"}


def test_dataset_spec_object_is_accepted(tmp_path: Path) -> None:
    from runners.rundir.spec import DatasetSpec

    path = write_jsonl(tmp_path / "p.jsonl", [ROWS_BY_FORMAT["prompt-only"]] * 2)
    dataset, fmt = load_and_normalize(DatasetSpec(path=str(path)), "rloo")
    assert (fmt.name, len(dataset)) == ("prompt-only", 2)


def test_json_csv_and_parquet_files_load(tmp_path: Path) -> None:
    import pandas as pd

    rows = [ROWS_BY_FORMAT["preference"], {"prompt": "Q2", "chosen": " y", "rejected": " n"}]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "wrapped.json").write_text(json.dumps({"train": rows}), encoding="utf-8")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.json", "wrapped.json", "d.csv", "d.parquet"):
        dataset, fmt = load_and_normalize(tmp_path / name, "dpo")
        assert fmt.name == "preference", name
        assert dataset[1] == rows[1], name


def test_parquet_message_lists_come_back_as_plain_lists(tmp_path: Path) -> None:
    import pandas as pd

    rows = [ROWS_BY_FORMAT["sft-messages"]] * 2
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    dataset, fmt = load_and_normalize(tmp_path / "m.parquet", "sft")
    assert fmt.name == "sft-messages"
    assert dataset[0]["messages"] == rows[0]["messages"]


def test_bundled_demo_files_suit_their_methods(demo_data: dict[str, Path]) -> None:
    expected = {"preference": ("dpo", "preference"), "kto": ("kto", "unpaired"), "prompts": ("grpo", "prompt-only"),
                "sft": ("sft", "sft-messages")}
    for key, (method, name) in expected.items():
        dataset, fmt = load_and_normalize(demo_data[key], method)
        assert fmt.name == name
        assert len(dataset) >= 40
    dataset, _ = load_and_normalize(demo_data["preference"], "dpo")
    assert len(dataset) >= 200


# --- errors ---------------------------------------------------------------------------------------


def error_for(tmp_path: Path, content: bytes | str, method: str = "dpo", suffix: str = ".jsonl", **spec) -> str:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError) as info:
        load_and_normalize({"path": str(path), **spec}, method)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in error_for(tmp_path, "")
    assert "empty" in error_for(tmp_path, "\n  \n")


def test_non_utf8_bytes_give_byte_offset_and_line(tmp_path: Path) -> None:
    good = json.dumps(ROWS_BY_FORMAT["preference"]) + "\n"
    content = good.encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'
    message = error_for(tmp_path, content)
    offset = len(good.encode()) + len('{"prompt": "caf')
    assert "UTF-8" in message
    assert f"byte offset {offset}" in message
    assert "line 2" in message


def test_bad_json_line_gives_its_line_number(tmp_path: Path) -> None:
    good = json.dumps(ROWS_BY_FORMAT["preference"])
    message = error_for(tmp_path, f"{good}\n\n{good}\n{{\"prompt\": \"x\",\n")
    assert "line 4" in message and "not valid JSON" in message


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    assert "line 1" in error_for(tmp_path, "[1, 2]\n")


def test_missing_columns_name_found_and_expected(tmp_path: Path) -> None:
    message = error_for(tmp_path, json.dumps({"question": "q", "answer": "a"}) + "\n")
    assert "['answer', 'question']" in message
    assert "prompt" in message and "chosen" in message


def test_missing_column_in_a_later_row(tmp_path: Path) -> None:
    rows = [ROWS_BY_FORMAT["preference"], {"prompt": "q", "chosen": "a"}]
    message = error_for(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))
    assert "row 2" in message and "rejected" in message and "found columns ['chosen', 'prompt']" in message


def test_empty_string_names_row_and_column(tmp_path: Path) -> None:
    rows = [ROWS_BY_FORMAT["preference"]] * 2 + [{"prompt": "q", "chosen": "  ", "rejected": "b"}]
    message = error_for(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))
    assert "row 3" in message and "'chosen'" in message and "empty string" in message


def test_null_value_names_row_and_column(tmp_path: Path) -> None:
    rows = [ROWS_BY_FORMAT["preference"], {"prompt": "q", "chosen": "a", "rejected": None}]
    message = error_for(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))
    assert "row 2" in message and "'rejected'" in message and "null" in message


def test_empty_message_content(tmp_path: Path) -> None:
    row = {"messages": msgs(("user", "hi"), ("assistant", ""))}
    message = error_for(tmp_path, json.dumps(row) + "\n", method="sft")
    assert "row 1" in message and "message 2" in message


def test_bad_kto_label(tmp_path: Path) -> None:
    message = error_for(tmp_path, json.dumps({"prompt": "p", "completion": "c", "label": "maybe"}) + "\n", method="kto")
    assert "'label'" in message and "maybe" in message


@pytest.mark.parametrize(
    ("fmt", "method"),
    [("prompt-only", "dpo"), ("text", "kto"), ("sft-messages", "rm"), ("unpaired", "simpo"), ("text", "grpo")],
)
def test_format_that_does_not_suit_the_method(tmp_path: Path, fmt: str, method: str) -> None:
    message = error_for(tmp_path, json.dumps(ROWS_BY_FORMAT[fmt]) + "\n", method=method)
    assert f"'{fmt}'" in message and f"method '{method}'" in message and "expects" in message


def test_undetectable_columns(tmp_path: Path) -> None:
    message = error_for(tmp_path, json.dumps({"foo": 1}) + "\n")
    assert "['foo']" in message and "dataset.columns" in message


def test_column_mapping_of_a_missing_column(tmp_path: Path) -> None:
    message = error_for(tmp_path, json.dumps(ROWS_BY_FORMAT["preference"]) + "\n", columns={"question": "prompt"})
    assert "question" in message and "['chosen', 'prompt', 'rejected']" in message


def test_forced_unknown_format(tmp_path: Path) -> None:
    message = error_for(tmp_path, json.dumps(ROWS_BY_FORMAT["preference"]) + "\n", format="csv-magic")
    assert "csv-magic" in message and "preference" in message


def test_unsupported_suffix(tmp_path: Path) -> None:
    assert ".txt" in error_for(tmp_path, "hello", suffix=".txt")


def test_bad_json_file(tmp_path: Path) -> None:
    assert "line 1" in error_for(tmp_path, '[{"prompt": ', suffix=".json")


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_and_normalize(str(tmp_path / "nope.jsonl"), "dpo")


def test_unreachable_hub_dataset_names_the_local_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_and_normalize("someorg/some-preference-set", "dpo")
    message = str(info.value)
    assert "someorg/some-preference-set" in message and "local" in message and ".jsonl" in message


def test_data_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import runners.data.load, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_answer_only_message_lists_take_the_prompt_column(tmp_path: Path) -> None:
    row = {"prompt": "Sky colour?", "chosen": msgs(("assistant", "Blue.")), "rejected": msgs(("assistant", "Green."))}
    dataset, fmt = load_and_normalize(write_jsonl(tmp_path / "a.jsonl", [row]), "dpo")
    assert fmt.name == "preference-messages"
    assert dataset[0]["prompt"] == msgs(("user", "Sky colour?"))
    assert dataset[0]["chosen"] == msgs(("assistant", "Blue."))


def test_message_lists_without_any_prompt(tmp_path: Path) -> None:
    row = {"chosen": msgs(("assistant", "Blue.")), "rejected": msgs(("assistant", "Green."))}
    message = error_for(tmp_path, json.dumps(row) + "\n")
    assert "row 1" in message and "no prompt" in message


def test_unreachable_hub_fails_at_once_looking_only_in_the_local_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    import planner.models

    modes: list[bool] = []

    def not_cached(*args, **kwargs):
        modes.append(datasets.config.HF_HUB_OFFLINE)  # online, the client would retry for ~24 s
        raise ConnectionError("not in the cache")

    monkeypatch.setattr(planner.models, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(DataError, match="hub cannot be reached") as info:
        load_and_normalize("someorg/some-preference-set", "dpo")
    assert modes == [True] and "not in the local datasets cache" in str(info.value)
    assert "local .jsonl" in str(info.value)


def cache_hub_dataset(cache: Path, repo: str, rows: list[dict]) -> None:
    """Leave in `cache` what datasets keeps after loading hub data set `repo` once (an Arrow file per
    split and dataset_info.json under <org>___<name>/default/0.0.0/<hash>/), built from local rows."""
    import shutil

    import datasets

    org, name = repo.split("/")
    source = write_jsonl(cache.parent / f"{name}.jsonl", rows)
    build = cache.parent / f"build-{name}"
    datasets.load_dataset("json", data_files=str(source), split="train", cache_dir=str(build))
    built = next(p for p in (build / "json").glob("default-*/0.0.0/*") if p.is_dir())
    target = cache / f"{org}___{name}" / "default" / "0.0.0" / "0123456789abcdef"
    shutil.copytree(built, target)
    (target / "json-train.arrow").rename(target / f"{name}-train.arrow")


def test_a_cached_hub_dataset_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    import planner.models

    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad answer"} for i in range(6)]
    cache_hub_dataset(tmp_path / "cache", "acme/prefs", rows)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    offline_before = datasets.config.HF_HUB_OFFLINE
    monkeypatch.setattr(planner.models, "_hub_reachable", lambda timeout=3.0: False)
    dataset, fmt = load_and_normalize("acme/prefs", "dpo")
    assert fmt.name == "preference" and len(dataset) == 6 and dataset[0]["prompt"] == "q0"
    assert datasets.config.HF_HUB_OFFLINE == offline_before  # the flag is put back
    with pytest.raises(DataError, match="not in the local datasets cache"):
        load_and_normalize("acme/other", "dpo")


def test_the_launch_check_accepts_a_cached_hub_dataset_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    import planner.models
    from runners.launch.preflight import check_dataset
    from runners.rundir.spec import RunSpec

    cache_hub_dataset(tmp_path / "cache", "acme/prefs",
                      [{"prompt": "q", "chosen": "good", "rejected": "bad"}] * 3)
    cache_hub_dataset(tmp_path / "cache", "acme/answers", [{"prompt": "q", "completion": "a"}] * 3)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(planner.models, "_hub_reachable", lambda timeout=3.0: False)

    def spec(path: str, method: str = "dpo") -> RunSpec:
        return RunSpec.parse({"method": method, "model": "m", "dataset": {"path": path}})

    check_dataset(spec("acme/prefs"))  # cached: loaded and checked like a local file
    with pytest.raises(DataError, match="acme/answers"):
        check_dataset(spec("acme/answers"))  # ...so a format DPO cannot use is caught before launch
    with pytest.raises(DataError, match="not in the local datasets cache"):
        check_dataset(spec("acme/missing"))
