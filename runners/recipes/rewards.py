"""Python reward functions for the grpo/rloo recipes (spec.reward.function), used by tests and demos.

TRL calls a reward function as f(prompts=..., completions=..., **columns) and expects one float per
completion. Completions are strings, or message lists for conversational prompts.
"""

from __future__ import annotations

from typing import Any

POLITE_MARKERS = ("sure", "happy to help", "of course", "certainly", "hope this helps", "good question")
RUDE_MARKERS = ("ugh", "whatever", "nope", "go away", "bananas")


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: the generated assistant message(s)
        return " ".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def marker_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """+1 per polite marker phrase, -1 per rude one, plus a little for length up to 20 words.

    The length term gives even a random tiny model's answers different rewards, so the group
    advantages are not all zero.
    """
    rewards = []
    for completion in completions:
        text = _text(completion).lower()
        polite = sum(text.count(m) for m in POLITE_MARKERS)
        rude = sum(text.count(m) for m in RUDE_MARKERS)
        words = min(len(text.split()), 20)
        rewards.append(float(polite - rude) + 0.05 * words)
    return rewards


def length_reward(completions: list[Any], target_words: int = 12, **kwargs: Any) -> list[float]:
    """Closer to target_words is better: 1 at the target, falling by 1/target per word off."""
    return [1.0 - abs(len(_text(c).split()) - target_words) / target_words for c in completions]
