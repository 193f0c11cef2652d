"""Masked statistics, whitening and generalized advantage estimation over response tokens.

Responses in a batch have different lengths: tensors are (batch, response_length) with a mask that
is 1 on the tokens of a response (up to and including its first EOS) and 0 on the padding after it.
Every statistic here counts only the masked-in tokens.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of values where mask is 1 (over all of them, or along dim)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of values where mask is 1; unbiased (n - 1) as in the reference implementations."""
    mean = masked_mean(values, mask)
    sq = masked_mean((values - mean) ** 2, mask)
    if not unbiased:
        return sq
    n = mask.sum()
    if n < 2:
        # One token has no spread; returning the biased 0 avoids a division by zero.
        return sq
    return sq * n / (n - 1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked tokens.

    shift_mean=False keeps the mean (only rescales): used for rewards, whose sign carries meaning,
    while advantages are centred so that half push a token up and half push it down.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over the response tokens.

    rewards[t]: reward for emitting token t; values[t]: V of the state before token t.
        delta_t = r_t + gamma * V_{t+1} - V_t          (V after the last token is 0: the episode ends)
        A_t     = delta_t + gamma * lam * A_{t+1}
        returns = A + V                                (the value target)
    Padding after a response's end is zeroed first, so the last real token sees V_{t+1} = 0 and
    the padding contributes nothing. Returns (advantages, returns), both zero on the padding.
    """
    mask = mask.to(values.dtype)
    rewards = rewards * mask
    values = values * mask
    length = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    returns = (advantages + values) * mask
    return advantages, returns


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns): 1 when the value model predicts the returns, <= 0 when
    it does no better than their mean."""
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return torch.tensor(float("nan"))
    return 1 - masked_var(returns - values, mask) / var_returns
