"""The judge interface: every judge answers the same question, "which of these two responses is better?".

    verdicts = judge.compare_batch([Comparison(prompt, first, second, principle), ...])
    verdict = judge.compare(prompt, first, second)

A Verdict names the position that won ('first', 'second', or None for a tie or no usable answer), the
probability of 'first' when the judge gives one, the judge's raw answer when it wrote one, and what it
cost. `error` is set when there was no usable verdict: the answer could not be parsed ('unparseable')
or the request failed after its retries ('failed: ...'). Labelling (runners.judges.labelling) asks
every pair in both orders; a judge itself knows nothing of orders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Winner = Literal["first", "second"]

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
PAIRWISE_PROMPT = PROMPTS_DIR / "pairwise.txt"
CONSTITUTIONAL_PROMPT = PROMPTS_DIR / "constitutional.txt"
PLACEHOLDERS = ("{prompt}", "{first}", "{second}", "{principle}")
# The labels the prompts give the two positions; the verdict is read as one of them.
LABELS = ("A", "B")

UNPARSEABLE = "unparseable"


class JudgeError(ValueError):
    """A judge that cannot be used as configured; one line naming the judge field."""


@dataclass(frozen=True)
class Comparison:
    """One question to a judge: the prompt and two responses in the order shown."""

    prompt: str
    first: str
    second: str
    principle: str | None = None  # the constitution principle's text, for the constitutional prompt


@dataclass
class Verdict:
    winner: Winner | None
    p_first: float | None = None  # P(first is better) when the judge gives a probability
    raw: str | None = None  # the judge's answer text (endpoint), else None
    tokens: int = 0  # input + output tokens the answer took (0 for a function judge)
    cached: bool = False  # the answer came from the on-disk cache (endpoint): nothing paid this time
    error: str | None = None  # 'unparseable', or 'failed: <why>' when no usable verdict came back
    input_tokens: int = 0
    output_tokens: int = 0
    extra: dict = field(default_factory=dict)  # judge-specific numbers (reward-model scores)

    @property
    def usable(self) -> bool:
        return self.error is None


class Judge:
    """Base class: subclasses implement compare_batch (or _compare_one for the simple ones)."""

    kind = "judge"

    def compare(self, prompt: str, first: str, second: str, principle: str | None = None) -> Verdict:
        return self.compare_batch([Comparison(prompt, first, second, principle)])[0]

    def compare_batch(self, comparisons: list[Comparison]) -> list[Verdict]:
        return [self._compare_one(c) for c in comparisons]

    def _compare_one(self, comparison: Comparison) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def stats(self) -> dict:
        """Counters for the report (requests sent, retries, cache hits for an endpoint judge)."""
        return {}

    def close(self) -> None:
        pass


# --- the prompt file ----------------------------------------------------------------------------


def read_prompt_template(path: str | Path | None, constitutional: bool = False) -> str:
    """The judge prompt's text: the user's file, else the bundled pairwise or constitutional prompt."""
    target = Path(path).expanduser() if path else (CONSTITUTIONAL_PROMPT if constitutional else PAIRWISE_PROMPT)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JudgeError(f"judge.prompt_file: {target}: file not found") from None
    except UnicodeDecodeError:
        raise JudgeError(f"judge.prompt_file: {target}: not UTF-8 text") from None
    missing = [p for p in ("{prompt}", "{first}", "{second}") if p not in text]
    if missing:
        raise JudgeError(f"judge.prompt_file: {target}: missing the placeholder(s) {', '.join(missing)}")
    if constitutional and "{principle}" not in text:
        raise JudgeError(f"judge.prompt_file: {target}: a constitution is given but the prompt has no {{principle}}")
    return text


def render_prompt(template: str, comparison: Comparison) -> str:
    """Fill the placeholders in one pass, so braces inside a response are left as they are."""
    values = {
        "{prompt}": comparison.prompt.strip(),
        "{first}": comparison.first.strip(),
        "{second}": comparison.second.strip(),
        "{principle}": (comparison.principle or "").strip(),
    }
    return re.sub(r"\{(?:prompt|first|second|principle)\}", lambda m: values[m.group(0)], template).rstrip()


# --- reading a written verdict --------------------------------------------------------------------

_DECORATION = " \t\r\n*_`'\"().:[]#>-"
_TIE = re.compile(r"^\W*(tie|equal|neither|both)\b", re.IGNORECASE)
_KEYED = re.compile(
    r"(?:answer|verdict|better(?:\s+(?:response|reply))?(?:\s+is)?|winner|choice|prefer(?:red)?)\s*(?:is\s*)?[:=\-]?\s*"
    r"[*_`'\"(\[]*(?:response\s+|reply\s+)?([AB])\b",
    re.IGNORECASE,
)
_NAMED = re.compile(r"\b(?:response|reply)\s+([AB])\b", re.IGNORECASE)


def parse_verdict(text: str | None) -> tuple[Winner | None, bool]:
    """(winner, parsed) from a judge's written answer.

    Accepted: the answer is just the label ('A', '**B**', '(A)'); or the last 'Answer: A' /
    'Verdict - B' / 'the better response is A' in it; or it names exactly one of 'Response A' and
    'Response B'; or it starts with 'tie'/'equal'/'neither'/'both' (a parsed tie). Anything else is
    (None, False): unparseable, counted in the report.
    """
    if not text:
        return None, False
    bare = text.strip(_DECORATION)
    if bare in LABELS:
        return _winner(bare), True
    if len(bare) <= 12 and bare.upper().removeprefix("RESPONSE").removeprefix("REPLY").strip(_DECORATION) in LABELS:
        return _winner(bare.upper().removeprefix("RESPONSE").removeprefix("REPLY").strip(_DECORATION)), True
    keyed = _KEYED.findall(text)
    if keyed:
        return _winner(keyed[-1].upper()), True
    if _TIE.match(bare):
        return None, True
    named = {m.upper() for m in _NAMED.findall(text)}
    if len(named) == 1:
        return _winner(named.pop()), True
    return None, False


def _winner(label: str) -> Winner:
    return "first" if label == LABELS[0] else "second"
