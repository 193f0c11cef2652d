"""Prompts taken from preference pairs or unpaired rows are rolled out once each (GRPO, RLOO, PPO)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.data.load import load_and_normalize


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("method", ["grpo", "rloo", "ppo"])
def test_prompts_of_pairs_are_deduplicated(tmp_path: Path, method: str) -> None:
    rows = [{"prompt": p, "chosen": f" good {i}", "rejected": f" bad {i}"} for i, p in enumerate("aabbbc")]
    dataset, fmt = load_and_normalize(_write(tmp_path, rows), method)
    assert dataset["prompt"] == ["a", "b", "c"]
    assert fmt.rows == 3 and fmt.duplicates_dropped == 3
    assert "3 repeated prompts dropped" in fmt.summary()


@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_prompts_of_unpaired_rows_are_deduplicated(tmp_path: Path, method: str) -> None:
    rows = [{"prompt": p, "completion": " x", "label": label} for p in ("a", "b") for label in (True, False)]
    dataset, _ = load_and_normalize(_write(tmp_path, rows), method)
    assert dataset["prompt"] == ["a", "b"]


def test_rows_that_differ_in_a_reward_column_are_kept(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "chosen": " y", "rejected": " n", "answer": ans} for ans in ("1", "2", "2")]
    dataset, _ = load_and_normalize(_write(tmp_path, rows), "grpo")
    assert dataset["prompt"] == ["a", "a"] and dataset["answer"] == ["1", "2"]


def test_prompt_only_data_is_taken_as_given(tmp_path: Path) -> None:
    dataset, fmt = load_and_normalize(_write(tmp_path, [{"prompt": "a"}, {"prompt": "a"}]), "grpo")
    assert dataset["prompt"] == ["a", "a"] and fmt.duplicates_dropped == 0
