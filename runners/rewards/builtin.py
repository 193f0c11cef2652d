"""Built-in reward functions, picked by name in a spec: `reward.function: builtin:<name>`.

Each is a plain function f(prompts, completions, **columns) -> list[float], TRL's reward-function
convention: one float per completion; a completion is a string, or (conversational data) a list of
{role, content} messages; the data's other columns arrive as keyword lists aligned with completions.
Parameters come from `reward.params` and are passed as keyword arguments.

Every term is bounded, so a policy cannot raise its reward without limit by repeating a phrase or
writing more: exact_match and regex give 0 or 1, length gives [0, 1], marker gives [-2, 3].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POLITE_MARKERS = ("sure", "happy to help", "of course", "certainly", "hope this helps", "good question")
RUDE_MARKERS = ("ugh", "whatever", "nope", "go away", "bananas")
MARKER_CAP = 2  # distinct marker phrases counted, each side: repeating "Certainly" earns nothing more
MARKER_LENGTH_WORDS = 20  # words that earn the marker reward's small length term
MARKER_WORD_BONUS = 0.05

PREFIX = "builtin:"


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the contents of a list of {role, content} messages."""
    if isinstance(completion, list):  # conversational: the generated assistant message(s)
        return " ".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def _normalize(text: str) -> str:
    """Case, surrounding whitespace and punctuation, and runs of whitespace do not count."""
    return " ".join(str(text).lower().split()).strip(" .,;:!?\"'`")


def _accepted(answer: Any) -> list[str]:
    if isinstance(answer, (list, tuple)):
        return [_normalize(a) for a in answer if a is not None]
    return [] if answer is None else [_normalize(answer)]


def exact_match(
    prompts: list[Any] | None = None,
    completions: list[Any] | None = None,
    column: str = "answer",
    extract: str | None = None,
    **columns: Any,
) -> list[float]:
    """1.0 when the completion equals the row's answer, else 0.0.

    The answer is the data column `column` (default `answer`; a list there means any of them). Both
    sides are compared after lower-casing, collapsing whitespace and stripping surrounding punctuation.
    With `extract` (a regular expression), only the completion's last match of it is compared (its
    first group if it has one), e.g. `extract: '####\\s*(.+)'` or `extract: '-?\\d+(?:\\.\\d+)?'`.
    """
    completions = list(completions or [])
    if column not in columns:
        raise KeyError(f"exact_match needs the data column {column!r}")
    answers = list(columns[column])
    pattern = re.compile(extract, re.DOTALL) if extract else None
    rewards = []
    for completion, answer in zip(completions, answers, strict=True):
        text = completion_text(completion)
        if pattern is not None:
            found = list(pattern.finditer(text))
            if not found:
                rewards.append(0.0)
                continue
            last = found[-1]
            text = last.group(1) if pattern.groups else last.group(0)
        rewards.append(1.0 if _normalize(text) in _accepted(answer) else 0.0)
    return rewards


def regex(
    prompts: list[Any] | None = None,
    completions: list[Any] | None = None,
    pattern: str = "",
    full: bool = False,
    ignore_case: bool = False,
    **columns: Any,
) -> list[float]:
    """1.0 when the completion matches `pattern` (anywhere; the whole completion with `full: true`),
    else 0.0: a format check, e.g. `pattern: '^<think>.*</think>\\s*<answer>.*</answer>$'`."""
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    compiled = re.compile(pattern, flags)
    match = compiled.fullmatch if full else compiled.search
    return [1.0 if match(completion_text(c).strip() if full else completion_text(c)) else 0.0
            for c in completions or []]


def length(
    prompts: list[Any] | None = None,
    completions: list[Any] | None = None,
    target_words: int = 12,
    **columns: Any,
) -> list[float]:
    """Closeness to `target_words` words: 1.0 at the target, falling linearly by 1/target per word
    off it, never below 0.0 (no words, or twice the target or more)."""
    return [max(0.0, 1.0 - abs(len(completion_text(c).split()) - target_words) / target_words)
            for c in completions or []]


def marker(
    prompts: list[Any] | None = None,
    completions: list[Any] | None = None,
    **columns: Any,
) -> list[float]:
    """Politeness markers: +1 per distinct polite phrase present ("sure", "certainly", ...), -1 per
    distinct rude one, each side counted up to 2 (repeating a phrase earns nothing more), plus 0.05
    per word up to 20 words. Range [-2, 3].

    The length term gives even a random tiny model's answers different rewards, so the group
    advantages are not all zero; the demo's prompts and the tiny model learn it in a minute.
    """
    rewards = []
    for completion in completions or []:
        text = completion_text(completion).lower()
        polite = min(MARKER_CAP, sum(1 for m in POLITE_MARKERS if m in text))
        rude = min(MARKER_CAP, sum(1 for m in RUDE_MARKERS if m in text))
        words = min(len(text.split()), MARKER_LENGTH_WORDS)
        rewards.append(float(polite - rude) + MARKER_WORD_BONUS * words)
    return rewards


# --- the registry: names, parameters, columns ------------------------------------------------------


@dataclass(frozen=True)
class Param:
    kind: type  # str, int, bool
    default: Any
    help: str
    required: bool = False
    minimum: int | None = None


@dataclass(frozen=True)
class Builtin:
    name: str
    function: Callable[..., list[float]]
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    column_param: str | None = None  # the parameter naming the data column the reward reads

    @property
    def ref(self) -> str:
        return PREFIX + self.name

    def columns(self, params: dict[str, Any]) -> list[str]:
        """The data columns this reward reads, with these parameters."""
        if self.column_param is None:
            return []
        return [str(params.get(self.column_param, self.params[self.column_param].default))]


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "exact_match", exact_match,
            "1 when the completion equals the data's answer column (normalised), else 0",
            {"column": Param(str, "answer", "data column holding the reference answer (a list: any of them)"),
             "extract": Param(str, None, "regular expression: compare only its last match in the completion "
                                         "(its first group if it has one)")},
            column_param="column",
        ),
        Builtin(
            "regex", regex,
            "1 when the completion matches a regular expression (a format check), else 0",
            {"pattern": Param(str, None, "regular expression the completion must match", required=True),
             "full": Param(bool, False, "match the whole completion (stripped), not just a part of it"),
             "ignore_case": Param(bool, False, "ignore upper/lower case")},
        ),
        Builtin(
            "length", length,
            "1 at target_words words, falling linearly to 0 at no words or twice the target",
            {"target_words": Param(int, 12, "the word count that scores 1.0", minimum=1)},
        ),
        Builtin(
            "marker", marker,
            "politeness markers (+1 per distinct polite phrase, -1 per rude one, up to 2 each) plus "
            "0.05 per word up to 20: the tiny demo's reward",
        ),
    )
}


def is_builtin(ref: str) -> bool:
    return ref.startswith(PREFIX)


def get_builtin(ref: str) -> Builtin:
    """The built-in named by 'builtin:<name>'; a ValueError naming reward.function otherwise."""
    name = ref[len(PREFIX):] if is_builtin(ref) else ref
    try:
        return BUILTINS[name]
    except KeyError:
        accepted = ", ".join(b.ref for b in BUILTINS.values())
        raise ValueError(f"reward.function: unknown built-in {ref!r}; accepted: {accepted}") from None


def check_params(ref: str, params: dict[str, Any]) -> dict[str, Any]:
    """The built-in's parameters, validated and with their defaults; a ValueError naming
    reward.params.<name> and what is accepted otherwise."""
    builtin = get_builtin(ref)
    unknown = sorted(set(params) - set(builtin.params))
    if unknown:
        accepted = ", ".join(builtin.params) or "none"
        raise ValueError(f"reward.params.{unknown[0]}: not a parameter of {builtin.ref}; accepted: {accepted}")
    out: dict[str, Any] = {}
    for name, spec in builtin.params.items():
        where = f"reward.params.{name}"
        if name not in params or params[name] is None:
            if spec.required:
                raise ValueError(f"{where}: required by {builtin.ref} ({spec.help})")
            if spec.default is not None:
                out[name] = spec.default
            continue
        value = params[name]
        if spec.kind is bool:
            if not isinstance(value, bool):
                from planner.parsing import parse_bool

                value = parse_bool(value, where)
        elif spec.kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"{where}: expected a whole number, got {value!r}")
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{where}: expected a whole number, got {value!r}") from None
            if spec.minimum is not None and value < spec.minimum:
                raise ValueError(f"{where}: expected a whole number >= {spec.minimum}, got {value}")
        else:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: expected a non-empty string, got {value!r}")
        out[name] = value
    for name in ("pattern", "extract"):
        if name in out:
            try:
                re.compile(out[name])
            except re.error as exc:
                raise ValueError(f"reward.params.{name}: not a valid regular expression ({exc})") from None
    return out
