"""The one place that imports TRL's experimental trainers, and names each recipe's TRL config.

ORPO and CPO (SimPO is CPO with loss_type="simpo", cpo_alpha=0) live in trl.experimental in
TRL 1.16 and may move between releases; recipes import them from here so a move is a one-file fix.
"""

from __future__ import annotations

import warnings
from typing import Any

# Settings a recipe fixes on its TRL config (hparams may repeat them, not change them).
FORCED_SETTINGS: dict[str, dict[str, Any]] = {"ipo": {"loss_type": ["ipo"]}, "simpo": {"loss_type": "simpo"}}
# The TRL config class behind each recipe that is not an experimental one.
_STABLE_CONFIGS = {"sft": "SFTConfig", "rm": "RewardConfig", "dpo": "DPOConfig", "ipo": "DPOConfig",
                   "kto": "KTOConfig", "grpo": "GRPOConfig", "rloo": "RLOOConfig"}


def orpo():
    """(ORPOConfig, ORPOTrainer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    return ORPOConfig, ORPOTrainer


def cpo():
    """(CPOConfig, CPOTrainer); SimPO is CPOConfig(loss_type="simpo", cpo_alpha=0.0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from trl.experimental.cpo import CPOConfig, CPOTrainer
    return CPOConfig, CPOTrainer


def config_for(method: str) -> tuple[type, dict[str, Any]]:
    """(the TRL config class the method's recipe builds, the settings the recipe fixes), for the
    recipes TRL trains; KeyError for any other method (runners.recipes.configs covers every recipe)."""
    if method == "orpo":
        return orpo()[0], {}
    if method == "simpo":
        return cpo()[0], FORCED_SETTINGS["simpo"]
    import trl

    return getattr(trl, _STABLE_CONFIGS[method]), FORCED_SETTINGS.get(method, {})
