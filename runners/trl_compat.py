"""The one place that imports TRL's experimental trainers.

ORPO and CPO (SimPO is CPO with loss_type="simpo", cpo_alpha=0) live in trl.experimental in
TRL 1.16 and may move between releases; recipes import them from here so a move is a one-file fix.
"""

from __future__ import annotations

import warnings


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
