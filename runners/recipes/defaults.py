"""Each recipe method's published defaults, with their source: the one place they are written down.

The recipes (common.build_config puts them under spec.hparams), the Launch page
(alignplan.launch_form.TRL_DEFAULTS) and docs/runners.md ("Method defaults") read them from here.
Only what differs from the method's TRL 1.16 config is set; where TRL's own default is the method's
published value, SOURCES says so. Pure data: no torch, no TRL, so the app can import it.
"""

from __future__ import annotations

from typing import Any

# Values the recipe sets on its TRL config before spec.hparams (which may change them).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # SimPO runs on TRL's CPOTrainer, whose CPOConfig keeps CPO's beta 0.1 and simpo_gamma 0.5. The
    # SimPO paper trains with beta 2.0-2.5 and the margin gamma as a fraction of beta; TRL's loss
    # uses simpo_gamma / beta as the margin, so simpo_gamma is gamma itself: 1.0 with beta 2.0 is
    # gamma/beta = 0.5. cpo_alpha 0 drops CPO's NLL term (SimPO has none).
    "simpo": {"beta": 2.0, "simpo_gamma": 1.0, "cpo_alpha": 0.0},
}

SOURCES: dict[str, str] = {
    "sft": "TRL 1.16 SFTConfig (learning_rate 2e-5)",
    "rm": "TRL 1.16 RewardConfig (learning_rate 1e-4)",
    "dpo": "TRL 1.16 DPOConfig: beta 0.1, learning_rate 1e-6, the values Rafailov et al. 2023 "
           "(arXiv:2305.18290) train with",
    "ipo": "TRL 1.16 DPOConfig with loss_type ipo: beta (IPO's tau) 0.1; Azar et al. 2023 (arXiv:2310.12036) "
           "set no default",
    "kto": "TRL 1.16 KTOConfig: beta 0.1, desirable/undesirable weights 1.0 (Ethayarajh et al. 2024, arXiv:2402.01306)",
    "orpo": "TRL 1.16 ORPOConfig: beta (ORPO's lambda) 0.1, the lambda Hong et al. 2024 (arXiv:2403.07691) train with",
    "simpo": "Meng, Xia & Chen 2024, SimPO, arXiv:2405.14734 (NeurIPS 2024): beta 2.0-2.5 with the target "
             "margin set as gamma/beta; their hyper-parameter table for Llama-3-8B-Base is beta 2.0, gamma 1.0 "
             "(gamma/beta 0.5), and the authors' repository (princeton-nlp/SimPO) recommends beta 2.0 or 2.5 "
             "and tuning gamma = c x beta. No NLL term (cpo_alpha 0).",
    "grpo": "TRL 1.16 GRPOConfig: beta 0.0 (no KL term), num_generations 8",
    "rloo": "TRL 1.16 RLOOConfig: beta 0.05, num_generations 2 (the method: Ahmadian et al. 2024, arXiv:2402.14740)",
    "ppo": "runners/rl/ppo_config.py (our PPO; TRL 1.16 has none)",
}


def method_defaults(method: str) -> dict[str, Any]:
    """A copy of the method's published defaults that differ from its TRL config's ({} when none)."""
    return dict(METHOD_DEFAULTS.get(method, {}))
