"""Issue 11 item 14: the data check reads a row at a time with bounded memory and finds what the
recipe's load finds; the recipe tokenizes only the train rows max_steps can reach."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from runners.data import load
from runners.data.load import DataError, load_and_normalize, load_rows, scan_rows


def pairs(n: int, repeat_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        j = i - 1 if repeat_every and i % repeat_every == repeat_every - 1 else i  # a repeated pair now and then
        rows.append({"prompt": f"Question {j}: what colour is thing {j}? " + "word " * 40,
                     "chosen": f" Blue {j}. " + "fine " * 60, "rejected": f" Green {j}. " + "poor " * 50,
                     "source": "gen"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("method", ["dpo", "kto", "grpo", "sft"])
def test_the_check_finds_what_the_recipe_load_finds(tmp_path, method):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(500, repeat_every=10))
    dataset, fmt = load_and_normalize(str(data), method)
    scan = scan_rows(str(data), method)
    assert scan.format == fmt  # name, rows kept, repeats dropped, warnings
    assert scan.input_rows == 500 and scan.streamed
    assert scan.rows == dataset.to_list()[: len(scan.rows)] and len(scan.rows) == load.SAMPLE_ROWS
    assert scan.prompts == 450  # every tenth pair repeats the one before it
    if method == "grpo":
        assert fmt.rows == 450 and fmt.duplicates_dropped == 50
        assert dataset.column_names == ["prompt", "source"]  # a reward column, kept by both


def test_check_memory_does_not_grow_with_the_file(tmp_path):
    """Peak Python allocations of the check over 2,000 and 8,000 rows (about 1.2 and 5 MB): the check
    keeps 8 bytes a row; reading the rows whole (the recipe) keeps them all."""
    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = write_jsonl(tmp_path / "small.jsonl", pairs(2_000))
    large = write_jsonl(tmp_path / "large.jsonl", pairs(8_000))
    scan_rows(str(small), "dpo")  # first-time imports (numpy) are not the check's memory
    check_small, check_large = peak(lambda: scan_rows(str(small), "dpo")), peak(lambda: scan_rows(str(large), "dpo"))
    whole_large = peak(lambda: load_rows(str(large)))
    size = large.stat().st_size
    assert check_large < check_small + 6_000 * 64  # grows by tens of bytes a row, not by the row (~880 bytes)
    assert check_large < size / 8
    assert whole_large > size  # what the check no longer does


def test_csv_and_parquet_are_read_in_pieces_and_agree_with_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pairs(2_500)
    jsonl = write_jsonl(tmp_path / "pairs.jsonl", rows)
    parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=300)  # 9 row groups
    csv_path = tmp_path / "pairs.csv"
    import csv

    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    expected = scan_rows(str(jsonl), "dpo")
    for path in (parquet, csv_path):
        scan = scan_rows(str(path), "dpo")
        assert scan.streamed and scan.input_rows == 2_500 and scan.prompts == 2_500
        assert scan.rows == expected.rows and scan.format.name == "preference"


def test_csv_row_with_too_many_fields_names_its_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,chosen,rejected\n"Sky?", Blue., Green.\nSea?, Blue, really, Green.\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.csv: line 3 has 4 fields but the header has 3; quote values"):
        scan_rows(str(path), "dpo")


def test_large_json_document_is_refused_with_a_pointer_to_jsonl(tmp_path, monkeypatch):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs(50)), encoding="utf-8")
    assert scan_rows(str(path), "dpo").input_rows == 50 and not scan_rows(str(path), "dpo").streamed
    monkeypatch.setattr(load, "JSON_WHOLE_LIMIT", path.stat().st_size - 1)
    with pytest.raises(DataError, match=r"pairs.json: a 0 MiB JSON document is parsed whole .* give JSON Lines"):
        scan_rows(str(path), "dpo")


def test_a_line_separator_inside_a_string_stays_in_its_row(tmp_path):
    """The old reader split lines with str.splitlines, which also breaks at U+2028."""
    row = {"prompt": "Sky\u2028colour?", "chosen": " Blue.", "rejected": " Green."}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert scan_rows(str(path), "dpo").rows == [row]


def test_the_check_counts_prompts_for_the_held_out_split(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(3))
    with pytest.raises(DataError, match="eval_fraction 0.1 of 3 distinct prompts leaves no evaluation rows"):
        scan_rows({"path": str(data), "eval_fraction": 0.1}, "dpo")
    assert scan_rows({"path": str(data), "eval_fraction": 0.34}, "dpo").prompts == 3


def test_preflight_returns_the_first_rows_only(tmp_path):
    from runners.launch.preflight import check_dataset
    from runners.rundir.spec import RunSpec

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(100))
    sample = check_dataset(RunSpec.parse({"method": "dpo", "model": "m", "dataset": {"path": str(data)}}))
    assert len(sample) == load.SAMPLE_ROWS and sample[0]["prompt"].startswith("Question 0:")


# --- the recipe tokenizes only what max_steps reaches ----------------------------------------------


def start_run(make_run_dir, tiny_model_dir, data: Path, method: str = "dpo", **fields):
    from runners.recipes import common

    fields.setdefault("dataset", {"path": str(data)})
    spec = make_run_dir(method=method, model=str(tiny_model_dir), devices="cpu", **fields)
    return common.start(method, ["--spec", str(spec)])


def test_max_steps_cuts_the_train_set_to_the_rows_it_reaches(make_run_dir, tiny_model_dir, tmp_path, monkeypatch,
                                                              capsys):
    from runners.recipes import common

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(200))
    hparams = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 3}
    run = start_run(make_run_dir, tiny_model_dir, data, max_steps=2, hparams=hparams)
    train, held = common.load_data(run)
    assert len(train) == (2 + 1) * 2 * 3 and held is None  # a step more: the loader reads a batch ahead
    assert run.monitor.epoch_scale == 18 / 200  # the logged epoch stays a pass over all 200 rows
    assert "tokenizing 18 of 200 train rows" in capsys.readouterr().out
    numbers = [int(r["prompt"].split(":")[0].removeprefix("Question ")) for r in train]
    assert numbers == sorted(numbers) and numbers[-1] > 18  # a seeded draw over the whole file, order kept
    assert common.load_data(run)[0]["prompt"] == train["prompt"]  # the same rows again (a resume)

    monkeypatch.setenv("WORLD_SIZE", "2")  # two processes each take their batches
    assert len(common.load_data(run)[0]) == 36
    monkeypatch.delenv("WORLD_SIZE")

    run = start_run(make_run_dir, tiny_model_dir, data, max_steps=2, hparams=hparams,
                    dataset={"path": str(data), "eval_fraction": 0.25})
    train, held = common.load_data(run)
    assert len(train) == 18 and len(held) == 50  # the held-out prompts whole; none of them trained on
    assert not set(train["prompt"]) & set(held["prompt"])

    run = start_run(make_run_dir, tiny_model_dir, data, max_steps=200, hparams=hparams)
    assert len(common.load_data(run)[0]) == 200  # more steps than rows: every row


def test_grpo_counts_a_generation_that_spans_several_steps(make_run_dir, tiny_model_dir, tmp_path):
    from runners.recipes import common

    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Prompt {i}?"} for i in range(500)])
    hparams = {"per_device_train_batch_size": 4, "num_generations": 4, "steps_per_generation": 8}
    run = start_run(make_run_dir, tiny_model_dir, data, "grpo", max_steps=2, hparams=hparams,
                    reward={"function": "runners.recipes.rewards:marker_reward"})
    assert common.rows_needed(run) == (2 + 1) * 4 * 8


def test_dpo_with_two_steps_tokenizes_only_the_rows_it_uses(make_run_dir, tiny_model_dir, tmp_path, monkeypatch):
    """The DPO recipe end to end: every Dataset.map the trainer runs (tokenizing) sees 6 rows of 240
    (2 steps of 2 rows, and a step more for the loader's look-ahead)."""
    import datasets

    from runners.recipes import dpo

    rows = [{"prompt": f"Q{i}: sky?", "chosen": f" Blue {i}.", "rejected": f" Green {i}."} for i in range(240)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    seen: list[int] = []
    real_map = datasets.Dataset.map

    def counting_map(self, *args, **kwargs):
        seen.append(len(self))
        return real_map(self, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "map", counting_map)
    spec = make_run_dir(method="dpo", model=str(tiny_model_dir), dataset={"path": str(data)}, devices="cpu",
                        max_steps=2, save_steps=100, gradient_checkpointing=False,
                        hparams={"per_device_train_batch_size": 2, "max_length": 64, "learning_rate": 1e-3})
    assert dpo.main(["--spec", str(spec)]) == 0
    assert seen and set(seen) == {6}


# --- the recipe's rows: Arrow chunks typed as Dataset.from_list types the whole list ----------------


def whole_list_load(path: str, method: str):
    """The recipe's load before it read in chunks: every row in lists, then Dataset.from_list."""
    from datasets import Dataset

    rows, source, lines = load_rows(path)
    name = load.detect_format(rows, source=source).name
    load.validate_rows(rows, name, source, lines)
    normalized = load.normalize(rows, name, method)
    if method in load.ONLINE_METHODS:
        normalized = load.with_reward_columns(rows, normalized, name)
    if method in load.PROMPT_METHODS and (name in load.PREFERENCE_FORMATS or name == "unpaired"):
        normalized = load.unique_rows(normalized)
    return Dataset.from_list(normalized)


@pytest.mark.parametrize("method", ["dpo", "kto", "grpo", "sft"])
def test_chunked_rows_equal_the_whole_list_load(tmp_path, monkeypatch, method):
    monkeypatch.setattr(load, "CHUNK_ROWS", 7)  # many chunks, repeats across them
    rows = pairs(60, repeat_every=5)
    for i, row in enumerate(rows):  # reward columns: null in a whole chunk, integers then floats, mixed types
        row["answer"] = None if i < 10 else f"a{i}"
        row["score"] = i if i < 30 else i + 0.5
        row["mixed"] = i if i % 2 else "x"
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    dataset, _ = load_and_normalize(str(data), method)
    expected = whole_list_load(str(data), method)
    assert dataset.features == expected.features
    assert dataset.to_list() == expected.to_list()
    if method == "grpo":
        assert dataset.column_names == ["prompt", "source", "answer", "score"]  # 'mixed' has two types


def test_message_rows_keep_their_types(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "CHUNK_ROWS", 3)
    rows = [{"messages": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"A{i}"}]}
            for i in range(10)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    dataset, _ = load_and_normalize(str(data), "sft")
    expected = whole_list_load(str(data), "sft")
    assert dataset.features == expected.features and dataset.to_list() == rows
