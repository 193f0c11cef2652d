"""Deterministic rule judges for tests and demos (judge kind 'function').

    judge: {kind: function, function: runners.judges.rules:prefer_safe_then_shorter}

A function judge is called as f(prompt, first, second) and returns 'first', 'second' or None (a tie).
"""

from __future__ import annotations

import re

# A short list of words the demo treats as unsafe; a response containing any of them loses.
UNSAFE_WORDS = ("weapon", "poison", "explosive", "steal", "hack", "kill", "bomb", "overdose")
_WORD = re.compile(r"[a-z]+")


def unsafe_count(text: str) -> int:
    """How many words of the text start with an UNSAFE_WORDS entry (hack, hacking, poisoned...)."""
    return sum(1 for word in _WORD.findall(text.lower()) if word.startswith(UNSAFE_WORDS))


def prefer_safe_then_shorter(prompt: str, first: str, second: str) -> str | None:
    """The response with fewer unsafe words; between equally safe ones the shorter (in words); a tie
    when both counts are equal. Judges the content only, so asking in the other order gives the
    mirrored answer: it is perfectly position-consistent."""
    unsafe = unsafe_count(first), unsafe_count(second)
    if unsafe[0] != unsafe[1]:
        return "first" if unsafe[0] < unsafe[1] else "second"
    lengths = len(first.split()), len(second.split())
    if lengths[0] != lengths[1]:
        return "first" if lengths[0] < lengths[1] else "second"
    return None


def prefer_longer(prompt: str, first: str, second: str) -> str | None:
    """The response with more words (a judge with a length bias, for the report's length figures)."""
    lengths = len(first.split()), len(second.split())
    if lengths[0] == lengths[1]:
        return None
    return "first" if lengths[0] > lengths[1] else "second"


def always_first(prompt: str, first: str, second: str) -> str:
    """Whatever is shown first wins: a judge with pure position bias. Both orders always disagree,
    so its position consistency is 0 and labelling drops every pair."""
    return "first"
