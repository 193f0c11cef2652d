"""The reward functions that used to live here, kept under their old names and signatures for
existing specs (`runners.recipes.rewards:marker_reward`). New specs name them `builtin:marker` and
`builtin:length`; all built-ins, their parameters and the calling convention are in
runners/rewards/builtin.py."""

from __future__ import annotations

from typing import Any

from runners.rewards import builtin
from runners.rewards.builtin import POLITE_MARKERS, RUDE_MARKERS

__all__ = ["POLITE_MARKERS", "RUDE_MARKERS", "length_reward", "marker_reward"]


def marker_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """builtin:marker (capped: repeating a marker phrase earns nothing more)."""
    kwargs.pop("prompts", None)
    return builtin.marker(completions=completions, **kwargs)


def length_reward(completions: list[Any], target_words: int = 12, **kwargs: Any) -> list[float]:
    """builtin:length (1 at target_words, never below 0)."""
    kwargs.pop("prompts", None)
    return builtin.length(completions=completions, target_words=target_words, **kwargs)
