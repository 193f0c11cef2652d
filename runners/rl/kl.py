"""The KL penalty: per-token estimators, the coefficient's controllers, and the per-token rewards.

The reward PPO maximizes is the score minus beta times KL(policy || reference), spread over the
tokens: every token pays -beta * kl_t and the last token of the response also gets the score
(Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022).
"""

from __future__ import annotations

from typing import Any

import torch

KL_ESTIMATORS = ("k1", "k3")


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    k1 = log p - log q: unbiased, can be negative per token.
    k3 = (q/p - 1) - log(q/p): unbiased, never negative, lower variance (Schulman, "Approximating
    KL divergence", 2020). p = policy, q = reference, tokens sampled from p.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl_estimator: {estimator!r} is not one of {', '.join(KL_ESTIMATORS)}")


class FixedKLController:
    """beta stays where it was set."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional control of beta towards a target KL (Ziegler et al. 2019, section 2.2).

        e = clip(KL / target - 1, -0.2, 0.2);   beta <- beta * (1 + e * n_steps / horizon)

    KL above target raises beta (a stronger pull to the reference), below target lowers it; the
    clip and the horizon keep beta from swinging on one noisy batch.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL: target and horizon must be positive")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last masked-in token of each row (responses are contiguous from position 0)."""
    return (mask.sum(dim=1).long() - 1).clamp(min=0)


def per_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non_score_rewards): -kl_coef * kl on every response token, plus the sequence's
    score on its last token. The score is a judgement of the whole response, so it arrives when the
    response is complete; GAE carries it back to earlier tokens."""
    mask = mask.to(kl.dtype)
    non_score = -kl_coef * kl * mask
    rewards = non_score.clone()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards, non_score


def apply_missing_eos_penalty(scores: torch.Tensor, ended_with_eos: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """Replace the score of responses cut off at the length limit by `penalty` (None: keep scores).

    A reward model scores a truncated answer as if it were complete; without this, the policy can
    learn to ramble to the limit (the "non-EOS penalty" of the RLHF-with-PPO implementation notes).
    """
    if penalty is None:
        return scores
    return torch.where(ended_with_eos, scores, torch.full_like(scores, float(penalty)))
