"""The one-question-at-a-time API the app uses: next question, progress, back, restart, validation."""

from __future__ import annotations

import pytest

import advisor
from advisor.framework import longest_remaining


def _run(choices: list) -> tuple[list[str], list[tuple[int, int]], dict]:
    """Answer questions in order with `choices`; return the keys asked, the progress seen, the answers."""
    answers: dict = {}
    asked, seen = [], []
    for value in choices:
        s = advisor.step(answers)
        assert not s.done, (asked, answers)
        asked.append(s.question.key)
        seen.append((s.answered, s.expected))
        answers = advisor.answer(answers, s.question.key, value)
    return asked, seen, answers


def test_first_question_is_the_reward_signal_with_explanation_and_accepted_values():
    s = advisor.step({})
    q = s.question
    assert q.key == "reward_signal"
    assert q.explain and q.text
    assert list(q.values) == ["pairwise", "scalar", "episode", "verifiable", "binary", "none"]
    d = s.to_dict()
    assert d["question"]["accepted"] == list(q.values) and d["answered"] == 0
    fw = advisor.framework()
    assert s.expected == longest_remaining(fw, fw.start) + longest_remaining(fw, fw.after)


def test_dpo_path_asks_only_its_questions_then_the_optional_hardware():
    asked, seen, answers = _run(["pairwise", "style", "human", "2000", None, None])
    assert asked == ["reward_signal", "task", "annotators", "pairs", "failure_mode", "model"]
    final = advisor.step(answers)
    assert final.done and final.question is None and final.outcome == "dpo"
    assert final.answered == final.expected == 6
    # progress never goes backwards and never exceeds the expected count
    fractions = [a / e for a, e in seen]
    assert fractions == sorted(fractions) and all(a < e for a, e in seen)


def test_short_paths_skip_irrelevant_questions():
    asked, _, answers = _run(["binary", None])
    assert asked == ["reward_signal", "model"]
    assert advisor.step(answers).outcome == "kto"
    asked, _, _ = _run(["verifiable"])
    assert asked == ["reward_signal"]
    assert advisor.step({"reward_signal": "verifiable"}).question.key == "model"  # hardware, optional


def test_hardware_questions_follow_a_given_model():
    pytest.importorskip("planner")
    asked, _, answers = _run(["episode", "llama-3.1-8b", "H100-80GB", "2"])
    assert asked == ["reward_signal", "model", "gpu", "gpus"]
    assert advisor.step(answers).done
    assert answers["gpu"] == "H100-80GB" and answers["gpus"] == 2


def test_progress_counts_the_longest_open_path():
    answered, expected = advisor.progress({"reward_signal": "pairwise"})
    assert answered == 1
    # pairwise -> task -> reward_model -> annotators -> pairs -> failure_mode, then model, gpu, gpus
    assert expected == 1 + 5 + 3


def test_back_removes_the_last_answer_on_the_path_and_restart_clears():
    answers = {"reward_signal": "pairwise", "task": "safety", "annotators": "human", "pairs": 10}
    assert advisor.step(answers).question.key == "failure_mode"
    previous = advisor.back(answers)
    assert previous == {"reward_signal": "pairwise", "task": "safety", "annotators": "human"}
    assert advisor.step(previous).question.key == "pairs"
    assert advisor.restart() == {}


def test_changing_an_earlier_answer_keeps_the_later_ones_but_ignores_them_off_path():
    answers = {"reward_signal": "pairwise", "task": "safety", "annotators": "none", "principles": True}
    assert advisor.step(answers).outcome == "cai"
    answers["task"] = "style"
    s = advisor.step(answers)
    assert s.outcome == "rlaif"  # style without annotators: the AI judge; `principles` is off the path
    assert "n_principles" not in s.path


def test_answer_validates_and_names_the_field():
    with pytest.raises(advisor.AdvisorError, match="task: 'poetry' is not accepted; accepted: style, safety"):
        advisor.answer({}, "task", "poetry")
    with pytest.raises(advisor.AdvisorError, match="pairs: .*integer >= 0"):
        advisor.answer({}, "pairs", "-5")
    with pytest.raises(advisor.AdvisorError, match="reward_model: 'maybe'.*true or false"):
        advisor.answer({}, "reward_model", "maybe")
    with pytest.raises(advisor.AdvisorError, match="unknown question 'colour'; accepted: reward_signal, task"):
        advisor.answer({}, "colour", "blue")
    assert advisor.answer({}, "pairs", "12,500") == {"pairs": 12500}
    assert advisor.answer({}, "reward_model", "yes") == {"reward_model": True}
    assert advisor.answer({}, "task", " Style ") == {"task": "style"}


def test_a_required_question_skipped_stays_pending():
    s = advisor.step({"reward_signal": None})
    assert s.question.key == "reward_signal"


def test_advise_reports_missing_answers_for_the_path():
    with pytest.raises(advisor.MissingAnswersError) as err:
        advisor.advise({"reward_signal": "pairwise", "task": "style"})
    assert err.value.missing == ["annotators"]
    assert "pairs" in err.value.possible
    with pytest.raises(advisor.MissingAnswersError) as err:
        advisor.advise({})
    assert err.value.missing == ["reward_signal"]
    # `pairs` does not change the path, so the walk continues and lists everything it can
    with pytest.raises(advisor.MissingAnswersError) as err:
        advisor.advise({"reward_signal": "pairwise", "task": "multi_objective"})
    assert err.value.missing == ["pairs"]
    assert isinstance(err.value, ValueError)
