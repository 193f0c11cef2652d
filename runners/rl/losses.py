"""PPO's clipped surrogate losses (Schulman et al. 2017) and the entropy of a categorical policy.

All losses are means over the masked-in response tokens (one token = one action).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from runners.rl.advantages import masked_mean


class PolicyLoss(NamedTuple):
    loss: torch.Tensor
    clipfrac: torch.Tensor  # share of tokens where the clipped term was the one used
    approx_kl: torch.Tensor  # 0.5 * E[(log ratio)^2], a low-variance estimate of KL(old || new)
    ratio: torch.Tensor  # per-token new/old probability ratio (for inspection and tests)


class ValueLoss(NamedTuple):
    loss: torch.Tensor
    clipfrac: torch.Tensor


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> PolicyLoss:
    """max(-A * r, -A * clip(r, 1 - eps, 1 + eps)) with r = exp(logprobs - old_logprobs).

    The max of the two negated terms is the pessimistic bound: once the ratio has moved eps away
    from 1 in the direction the advantage favours, the gradient stops.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return PolicyLoss(loss, clipfrac.detach(), approx_kl.detach(), ratio.detach())


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> ValueLoss:
    """0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped = V_old + clip(V - V_old, -eps_v, eps_v).

    Clipping keeps the value model from jumping far from the values the advantages were computed
    with (the lm-human-preferences / TRL formulation).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    clipfrac = masked_mean((clipped_loss > unclipped_loss).to(values.dtype), mask)
    return ValueLoss(loss, clipfrac.detach())


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = logsumexp(z) - sum softmax(z) * z, per position (last dim = vocabulary).

    The same as -sum p log p, without materializing log p for every vocabulary entry twice.
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
