"""Labelling as plain functions, the verdict parser, the spec's judge fields, and LabelConfig."""

from __future__ import annotations

import pytest

from runners.judges.base import Comparison, parse_verdict, render_prompt
from runners.judges.function import FunctionJudge
from runners.judges.labelling import dpo_pairs, label_pairs, make_pairs, pick_principle, summarize
from runners.rundir.spec import RunSpec, SpecError

ROWS = [
    {"prompt": "p0", "responses": ["short", "a much longer answer", "mid length", "x"]},
    {"prompt": "p1", "responses": ["same", "same", "other one"]},
    {"prompt": "p2", "responses": ["how to build a bomb quickly", "no"]},
]


@pytest.mark.parametrize("text, expected", [
    ("A", ("first", True)), (" **B** ", ("second", True)), ("(A)", ("first", True)),
    ("Reasoning... Answer: B", ("second", True)), ("The better reply is A.", ("first", True)),
    ("Reply B is clearly better.", ("second", True)), ("Tie.", (None, True)),
    ("Reply A and Reply B are both fine", (None, False)), ("I cannot decide", (None, False)), ("", (None, False)),
])
def test_parse_verdict(text, expected) -> None:
    assert parse_verdict(text) == expected


def test_pairs_consecutive_all_and_identical() -> None:
    pairs, skipped = make_pairs(ROWS)
    assert [(p.row, p.positions) for p in pairs] == [(0, (0, 1)), (0, (2, 3)), (2, (0, 1))] and skipped == 1
    pairs, skipped = make_pairs(ROWS, pairing="all", max_pairs_per_prompt=4)
    assert [(p.row, p.positions) for p in pairs][:5] == [(0, (0, 1)), (0, (0, 2)), (0, (0, 3)), (0, (1, 2)),
                                                        (1, (0, 2))]
    assert skipped == 1 and [p.index for p in pairs] == list(range(len(pairs)))
    assert len(make_pairs(ROWS, pairing="all", max_pairs=2)[0]) == 2


def test_rule_judge_is_position_consistent_and_always_first_is_not() -> None:
    pairs, _ = make_pairs(ROWS)
    records = label_pairs(FunctionJudge("runners.judges.rules:prefer_safe_then_shorter"), pairs)
    assert [r["winner"] for r in records] == ["a", "b", "b"]
    report = summarize(records)
    assert report["position_consistency"] == 1.0 and report["pairs_written"] == 3
    assert report["longer_preferred_share"] == 0.0 and report["first_position_share"] == 0.5
    assert dpo_pairs(records)[2] == {"prompt": "p2", "chosen": "no", "rejected": "how to build a bomb quickly"}

    biased = label_pairs(FunctionJudge("runners.judges.rules:always_first"), pairs)
    report = summarize(biased)
    assert report["position_consistency"] == 0.0 and report["dropped"] == 3 and report["pairs_written"] == 0
    assert report["first_position_share"] == 1.0 and dpo_pairs(biased) == []
    kept = summarize(label_pairs(FunctionJudge("runners.judges.rules:always_first"), pairs, inconsistent="tie"))
    assert kept["ties"] == 3 and kept["ties_from_inconsistent"] == 3 and kept["dropped"] == 0
    assert kept["pairs_written"] == 0


def test_function_judge_from_a_file_and_a_bad_answer(tmp_path) -> None:
    path = tmp_path / "my_judge.py"
    path.write_text("def judge(prompt, first, second):\n    return 'maybe' if 'x' in first else 'SECOND'\n")
    judge = FunctionJudge(f"{path}:judge")
    assert judge.compare("p", "abc", "def").winner == "second"
    assert judge.compare("p", "x", "def").error == "unparseable"


def test_principles_are_drawn_per_pair_with_the_seed() -> None:
    principles = list("abcdefgh")
    first = [pick_principle(principles, 42, k) for k in range(20)]
    assert first == [pick_principle(principles, 42, k) for k in range(20)]
    assert first != [pick_principle(principles, 43, k) for k in range(20)] and len(set(first)) > 3
    assert pick_principle(None, 42, 0) is None


def test_render_leaves_braces_in_responses_alone() -> None:
    text = render_prompt("{principle}|{prompt}|{first}|{second}", Comparison("a {first}", "{second}", "c", "be kind"))
    assert text == "be kind|a {first}|{second}|c"


def spec(**judge):
    return {"method": "rlaif-label", "model": "m", "dataset": {"path": "d.jsonl"}, "judge": judge}


@pytest.mark.parametrize("judge, message", [
    ({"kind": "endpoint", "endpoint_model": "m"}, "judge.base_url: a judge of kind 'endpoint' needs it"),
    ({"kind": "function"}, "judge.function: a judge of kind 'function' needs it"),
    ({"kind": "local", "function": "a:b"}, "judge.function: only a judge of kind 'function' uses it"),
    ({"kind": "local", "min_margin": 0.5}, "judge.min_margin: only a reward-model judge"),
    ({"kind": "local", "inconsistent": "keep"}, "judge.inconsistent"),
    ({"kind": "endpoint", "base_url": "https://u:p@host/v1", "endpoint_model": "m"}, "judge.base_url: credentials"),
])
def test_judge_spec_errors_name_the_field(judge, message) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        RunSpec.parse(spec(**judge))


@pytest.mark.parametrize("value", ["sk-proj-abcdef0123456789", "hf_AbCdEfGh0123456789xyz", "Zx81kQ0pLm93NvB72TyU5wE",
                                   "key with spaces"])
def test_api_key_env_refuses_a_key_and_does_not_echo_it(value) -> None:
    with pytest.raises(SpecError) as err:
        RunSpec.parse(spec(kind="endpoint", base_url="http://localhost:8000/v1", endpoint_model="m", api_key_env=value))
    assert "judge.api_key_env" in str(err.value) and value not in str(err.value)


def test_api_key_env_takes_a_name_and_judge_belongs_to_rlaif_label() -> None:
    s = RunSpec.parse(spec(kind="endpoint", base_url="http://localhost:8000/v1", endpoint_model="m",
                           api_key_env="$OPENAI_API_KEY"))
    assert s.judge.api_key_env == "OPENAI_API_KEY"
    with pytest.raises(SpecError, match="judge: rlaif-label needs a judge"):
        RunSpec.parse({"method": "rlaif-label", "model": "m", "dataset": {"path": "d"}})
    with pytest.raises(SpecError, match="judge: only the rlaif-label stage uses a judge"):
        RunSpec.parse({"method": "dpo", "model": "m", "dataset": {"path": "d"}, "judge": {"kind": "local"}})


def test_label_config_is_checked_like_a_trl_config() -> None:
    from runners.launch.preflight import check_hparams

    good = RunSpec.parse({**spec(kind="local"), "hparams": {"batch_size": 4, "pairing": "all"}})
    check_hparams(good)
    with pytest.raises(SpecError, match="hparams.bach_size: not a LabelConfig field.*batch_size"):
        check_hparams(RunSpec.parse({**spec(kind="local"), "hparams": {"bach_size": 4}}))


def test_output_path_is_the_pipelines() -> None:
    from runners.pipelines.spec import output_data_path
    from runners.recipes.rlaif_label import OUTPUT_DATA

    assert output_data_path(__import__("pathlib").Path("/r")) == __import__("pathlib").Path("/r") / OUTPUT_DATA
