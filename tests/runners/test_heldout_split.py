"""The held-out split is made by prompt, before any reshaping shows: no held-out prompt is trained on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from runners.data.load import DataError, prompt_key, split_by_prompt
from runners.recipes import common


def _pairs(n_prompts: int, per_prompt: int) -> list[dict]:
    return [{"prompt": f"Question {i}?", "chosen": f" Good answer {i}.{j}", "rejected": f" Bad answer {i}.{j}"}
            for i in range(n_prompts) for j in range(per_prompt)]


def _run(tmp_path: Path, method: str, rows: list[dict], fraction: float = 0.25, seed: int = 42):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = SimpleNamespace(dataset=SimpleNamespace(path=str(path), split="train", columns={}, format=None,
                                                   eval_fraction=fraction), seed=seed, max_steps=None)
    return SimpleNamespace(method=method, spec=spec, data_format=None, log=lambda message: None)


@pytest.mark.parametrize("method", ["kto", "dpo"])
@pytest.mark.parametrize("seed", [0, 42, 7])
def test_no_held_out_prompt_is_trained_on(tmp_path: Path, method: str, seed: int) -> None:
    # two pairs per prompt; KTO turns each into a desirable and an undesirable row of the same prompt
    run = _run(tmp_path, method, _pairs(24, 2), seed=seed)
    train, held_out = common.load_data(run)
    train_prompts = {prompt_key(r) for r in train}
    held_prompts = {prompt_key(r) for r in held_out}
    assert held_prompts and not held_prompts & train_prompts
    assert len(held_prompts) == 6  # a quarter of the 24 prompts, every row of each
    assert len(train) + len(held_out) == (96 if method == "kto" else 48)


def test_kto_keeps_both_halves_of_a_pair_together(tmp_path: Path) -> None:
    train, held_out = common.load_data(_run(tmp_path, "kto", _pairs(40, 1)))
    for part in (train, held_out):
        labels: dict[str, set] = {}
        for row in part:
            labels.setdefault(row["prompt"], set()).add(row["label"])
        assert all(v == {True, False} for v in labels.values())


def test_split_needs_a_prompt_on_each_side() -> None:
    rows = [{"prompt": "same", "completion": str(i), "label": True} for i in range(10)]
    with pytest.raises(DataError, match="distinct prompts"):
        split_by_prompt(rows, 0.1, 0)


def test_messages_are_grouped_by_the_turns_before_the_answer() -> None:
    def conv(q: str, a: str) -> dict:
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}

    assert prompt_key(conv("Hi", "Hello")) == prompt_key(conv("Hi", "Hey"))
    assert prompt_key(conv("Hi", "Hello")) != prompt_key(conv("Bye", "Hello"))
