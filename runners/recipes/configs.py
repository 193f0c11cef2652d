"""The config class behind every recipe: TRL's for the trainers TRL provides (trl_compat), our own
for PPO and the stages that train nothing (their settings are checked the same way). Kept apart
from trl_compat so that the recipes' common code can ask TRL's without importing the stages that
import it back."""

from __future__ import annotations

from typing import Any

from runners.recipes import trl_compat


def config_for(method: str) -> tuple[type, dict[str, Any]]:
    """(the config class the method's recipe builds, the settings the recipe fixes); KeyError for a
    method without a recipe."""
    if method == "ppo":  # TRL 1.16 has no PPO: our own config
        from runners.rl.ppo_config import PPOConfig

        return PPOConfig, {}
    if method == "rlaif-label":  # labelling trains nothing: its own config (batch size, pairing)
        from runners.judges.config import LabelConfig

        return LabelConfig, {}
    if method == "generate":  # a generation stage trains nothing: its sampling config
        from runners.recipes.generate import GenerateConfig

        return GenerateConfig, {}
    if method == "cai-generate":
        from runners.recipes.cai_generate import CaiGenerateConfig

        return CaiGenerateConfig, {}
    return trl_compat.config_for(method)
