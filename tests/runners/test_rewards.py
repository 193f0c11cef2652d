"""Rewards (runners/rewards): the built-ins on hand-made inputs, their parameters, a reward from a .py
file loaded by its path, the data columns a reward reads, and the preflight call on two samples."""

from __future__ import annotations

import sys

import pytest

from runners.rewards import builtin
from runners.rewards.load import (
    RewardError,
    check_reward_call,
    copy_into_run_dir,
    reward_callable,
    split_reference,
)
from runners.rundir.spec import RewardSpec, RunSpec, SpecError

CHAT = [{"role": "assistant", "content": "The answer is 42."}]


# --- built-ins ------------------------------------------------------------------------------------


def test_exact_match_normalises_and_reads_the_answer_column() -> None:
    completions = ["  Paris. ", "paris is the capital", "LYON", [{"role": "assistant", "content": "Paris!"}]]
    answers = ["paris", "Paris", "Lyon", "Paris"]
    assert builtin.exact_match(["p"] * 4, completions, answer=answers) == [1.0, 0.0, 1.0, 1.0]
    # A list in the answer column means any of them; numbers compare as text.
    assert builtin.exact_match(["p", "p"], ["4", "four"], answer=[["4", "four"], 5]) == [1.0, 0.0]
    # Another column, and extract: only the last match (its group) is compared.
    assert builtin.exact_match(["p", "p", "p"], ["x #### 12", "I think 7 then 8", "no number"],
                               column="gold", extract=r"(-?\d+)\s*$", gold=["12", "8", "1"]) == [1.0, 1.0, 0.0]
    with pytest.raises(KeyError, match="answer"):
        builtin.exact_match(["p"], ["x"])


def test_regex_search_full_and_case() -> None:
    completions = ["<answer>4</answer>", "so <answer>4</answer> done", "nothing", [{"role": "assistant",
                                                                                  "content": "<ANSWER>1</ANSWER>"}]]
    assert builtin.regex(None, completions, pattern=r"<answer>\d+</answer>") == [1.0, 1.0, 0.0, 0.0]
    assert builtin.regex(None, completions, pattern=r"<answer>\d+</answer>", full=True) == [1.0, 0.0, 0.0, 0.0]
    assert builtin.regex(None, completions, pattern=r"<answer>\d+</answer>", ignore_case=True)[3] == 1.0


def test_length_is_one_at_the_target_and_never_below_zero() -> None:
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    got = builtin.length(None, [words(10), words(5), words(15), words(0), words(20), words(500)], target_words=10)
    assert got == [1.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    assert builtin.length(None, [CHAT])[0] == pytest.approx(1 - abs(4 - 12) / 12)


def test_marker_is_capped_so_repeating_certainly_earns_nothing() -> None:
    once, spammed = builtin.marker(None, ["Certainly!", "Certainly! " * 50])
    assert once == pytest.approx(1.05)  # one polite marker + 0.05 x 1 word
    assert spammed == pytest.approx(1.0 + 0.05 * 20)  # still one marker; the length term stops at 20 words
    many = "Sure, of course, certainly, happy to help, good question, hope this helps"
    rude = "Ugh, whatever, nope, go away, bananas"
    assert builtin.marker(None, [many, rude, "plain"]) == pytest.approx(
        [2 + 0.05 * 12, -2 + 0.05 * 6, 0.05])
    assert max(builtin.marker(None, [many * 100])) <= 3.0


def test_old_reward_names_still_work() -> None:
    from runners.recipes.rewards import length_reward, marker_reward

    assert marker_reward(["Certainly " * 9], prompts=["p"]) == pytest.approx([1.0 + 0.05 * 9])
    assert length_reward(completions=["a " * 12, "a"]) == [1.0, pytest.approx(1 / 12)]


# --- the spec: names and parameters ----------------------------------------------------------------

BASE = {"method": "grpo", "model": "m", "dataset": {"path": "d.jsonl"}}


@pytest.mark.parametrize(("reward", "message"), [
    ({"function": "builtin:nope"}, "reward.function: unknown built-in 'builtin:nope'; accepted: builtin:exact_match"),
    ({"function": "builtin:regex"}, "reward.params.pattern: required by builtin:regex"),
    ({"function": "builtin:regex", "params": {"pattern": "("}}, "reward.params.pattern: not a valid regular expression"),
    ({"function": "builtin:length", "params": {"target_words": 0}}, "reward.params.target_words: expected a whole number >= 1"),
    ({"function": "builtin:length", "params": {"target": 5}}, "reward.params.target: not a parameter of builtin:length; accepted: target_words"),
    ({"function": "builtin:regex", "params": {"pattern": "x", "full": "maybe"}}, "reward.params.full"),
    ({"model": "rm", "params": {"a": 1}}, "reward.params: parameters are for reward.function"),
])
def test_bad_builtin_settings_name_the_field(reward, message) -> None:
    with pytest.raises(SpecError) as err:
        RunSpec.parse({**BASE, "reward": reward})
    assert str(err.value).startswith(message), str(err.value)


def test_builtin_params_get_their_defaults_and_types() -> None:
    spec = RunSpec.parse({**BASE, "reward": {"function": "builtin:regex", "params": {"pattern": "^a", "full": "yes"}}})
    assert spec.reward.params == {"pattern": "^a", "full": True, "ignore_case": False}
    spec = RunSpec.parse({**BASE, "reward": {"function": "builtin:length", "params": {"target_words": "30"}}})
    assert spec.reward.params == {"target_words": 30}
    f = reward_callable(spec.reward)
    assert f.__name__ == "length"  # TRL logs rewards/length/mean
    assert f(prompts=["p"], completions=["w " * 15], completion_ids=[[1]], trainer_state=None) == [0.5]


def test_references_are_told_apart() -> None:
    assert split_reference("builtin:regex") == ("builtin", "", "builtin:regex")
    assert split_reference("pkg.mod:f") == ("module", "pkg.mod", "f")
    assert split_reference("pkg.mod.f") == ("module", "pkg.mod", "f")
    assert split_reference("some/dir/my_rewards.py:score") == ("file", "some/dir/my_rewards.py", "score")
    with pytest.raises(RewardError, match="names a file but no function"):
        split_reference("my_rewards.py")


# --- a reward from a file ---------------------------------------------------------------------------

FILE_REWARD = '''
import re

def score(completions, answer, bonus=0.0):
    """No prompts, no **kwargs: gets only what it names."""
    return [float(str(a) in str(c)) + bonus for c, a in zip(completions, answer)]

def not_a_reward(text):
    return [1.0]
'''


def test_a_file_reward_is_loaded_by_its_path_not_the_python_path(tmp_path) -> None:
    path = tmp_path / "elsewhere" / "my_rewards.py"
    path.parent.mkdir()
    path.write_text(FILE_REWARD)
    assert str(path.parent) not in sys.path
    f = reward_callable(RewardSpec(function=f"{path}:score", params={"bonus": 0.5}))
    assert f.__name__ == "score"
    # TRL's extra keyword arguments and other columns are dropped for a function without **kwargs.
    got = f(prompts=["p", "q"], completions=["it is 4", "5"], answer=[4, 6], level=[1, 2],
            trainer_state=None, completion_ids=[[1], [2]], log_metric=print)
    assert got == [1.5, 0.5]


def test_a_file_reward_is_copied_into_the_run_dir(tmp_path) -> None:
    source = tmp_path / "my_rewards.py"
    source.write_text(FILE_REWARD)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ref = copy_into_run_dir(f"{source}:score", run_dir)
    copy = run_dir / "reward" / "my_rewards.py"
    assert ref == f"{copy.resolve()}:score" and copy.read_text() == FILE_REWARD
    source.write_text("raise SystemExit('edited after the run was made')\n")
    assert reward_callable(RewardSpec(function=ref))(completions=["4"], answer=["4"]) == [1.0]


# --- data columns ----------------------------------------------------------------------------------


def test_online_methods_keep_the_columns_a_reward_reads(tmp_path) -> None:
    import json

    from runners.data.load import load_and_normalize

    rows = [{"prompt": "2+2?", "answer": "4", "tests": ["a", "b"], "meta": {"x": 1}, "mixed": 1},
            {"prompt": "3+3?", "answer": "6", "tests": ["c"], "meta": {"x": 2}, "mixed": "one"}]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    for method in ("grpo", "rloo", "ppo"):
        data, _ = load_and_normalize({"path": str(path)}, method)
        assert data.column_names == ["prompt", "answer", "tests"], method  # nested and mixed types dropped
        assert data["answer"] == ["4", "6"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "answer": "a"}))
    assert load_and_normalize({"path": str(pairs)}, "grpo")[0].column_names == ["prompt", "answer"]
    assert "answer" not in load_and_normalize({"path": str(pairs)}, "dpo")[0].column_names


# --- the call on two samples ------------------------------------------------------------------------

ROWS = [{"prompt": "Question: 2+2?\nAnswer:", "answer": "4"}, {"prompt": "Question: 3+3?\nAnswer:", "answer": "6"}]


def test_check_call_returns_the_sample_rewards() -> None:
    spec = RewardSpec(function="builtin:exact_match")
    assert check_reward_call(spec, ROWS, "grpo") == [0.0, 0.0]
    chat = [{"prompt": [{"role": "user", "content": "hi"}]}] * 2
    assert check_reward_call(RewardSpec(function="builtin:length", params={"target_words": 6}), chat, "grpo") == [1.0, 1.0]
