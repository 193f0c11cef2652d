"""One question at a time, for UIs: what to ask next, progress on the current path, back and restart.

Answers are a plain dict {question key: value}. A key present with the value None means "asked and
skipped" (optional questions then take their default). Answers to questions off the current path are
kept but ignored, so going back and choosing another branch never loses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advisor.framework import Question, Walk, framework, longest_remaining, validate_answers, walk


@dataclass
class Step:
    """The state of a questionnaire: the next question (None when done) and the progress on this path."""

    question: Question | None
    node: str | None  # the tree node asking it
    answered: int
    expected: int
    path: list[str] = field(default_factory=list)  # node ids taken so far (then the outcome id)
    outcome: str | None = None  # set once the decision questions are answered
    done: bool = False

    @property
    def fraction(self) -> float:
        return self.answered / self.expected if self.expected else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question.to_dict() if self.question else None,
            "node": self.node,
            "answered": self.answered,
            "expected": self.expected,
            "path": list(self.path),
            "outcome": self.outcome,
            "done": self.done,
        }


def _walks(answers: dict[str, Any]) -> tuple[Walk, Walk | None]:
    fw = framework()
    main = walk(answers, use_defaults=False)
    if main.outcome is None or fw.after is None:
        return main, None
    return main, walk(answers, start=fw.after, use_defaults=False)


def step(answers: dict[str, Any] | None = None) -> Step:
    """The next question to ask given the answers so far, with answered/expected counts for this path."""
    fw = framework()
    answers = validate_answers(answers or {})
    main, hardware = _walks(answers)
    answered = len(main.asked) + (len(hardware.asked) if hardware else 0)
    if main.pending is not None:
        after = longest_remaining(fw, fw.after) if fw.after else 0
        expected = answered + longest_remaining(fw, main.pending) + after
        node = main.pending
    elif hardware is not None and hardware.pending is not None:
        expected = answered + longest_remaining(fw, hardware.pending)
        node = hardware.pending
    else:
        return Step(None, None, answered, answered, main.path, main.outcome, done=True)
    question = fw.questions[fw.nodes[node].question]
    return Step(question, node, answered, expected, main.path, main.outcome, done=False)


def next_question(answers: dict[str, Any] | None = None) -> Question | None:
    """The next question on the path, or None when every question (hardware included) is answered or skipped."""
    return step(answers).question


def progress(answers: dict[str, Any] | None = None) -> tuple[int, int]:
    """(answered, expected) on the path these answers take; expected counts the longest way still open."""
    s = step(answers)
    return s.answered, s.expected


def answered_keys(answers: dict[str, Any] | None = None) -> list[str]:
    """Question keys answered (or skipped) on the current path, in the order they were asked."""
    answers = validate_answers(answers or {})
    main, hardware = _walks(answers)
    return main.asked + (hardware.asked if hardware else [])


def back(answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answers without the last question answered on the current path (a UI's Back button)."""
    answers = dict(answers or {})
    keys = answered_keys(answers)
    if keys:
        answers.pop(keys[-1], None)
    return answers


def restart() -> dict[str, Any]:
    """Empty answers (a UI's Restart button)."""
    return {}


def answer(answers: dict[str, Any] | None, key: str, raw: Any) -> dict[str, Any]:
    """The answers with `key` set from raw input (text from a form or prompt); raises AdvisorError if invalid."""
    fw = framework()
    new = dict(answers or {})
    new[key] = raw
    checked = validate_answers({key: raw}, fw)  # raises with the field and what is accepted
    new[key] = checked[key]
    return new
