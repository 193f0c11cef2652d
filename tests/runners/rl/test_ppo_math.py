"""PPO's math on small tensors, each checked against the formula worked out by hand in the test."""

from __future__ import annotations

import math

import pytest
import torch

from runners.rl.advantages import explained_variance, gae, masked_mean, masked_var, masked_whiten
from runners.rl.kl import (
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    kl_per_token,
    per_token_rewards,
)
from runners.rl.losses import entropy_from_logits, policy_loss, value_loss
from runners.rl.rollout import truncate_after_eos


def test_masked_mean_and_unbiased_var_ignore_padding() -> None:
    values = torch.tensor([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # kept: 1, 2, 3 -> mean 2; squared deviations 1, 0, 1 -> unbiased var 2 / (3 - 1) = 1
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_var(values, mask).item() == pytest.approx(1.0)
    assert masked_mean(values, mask, dim=1).tolist() == pytest.approx([1.5, 3.0])


def test_whitening_centres_and_scales_and_can_keep_the_mean() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased std 1: (1-2)/1, (2-2)/1, (3-2)/1
    assert masked_whiten(values, mask)[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    # shift_mean=False adds the mean back: 1, 2, 3 (std already 1)
    assert masked_whiten(values, mask, shift_mean=False)[0, :3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_gae_by_hand() -> None:
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 7.0, 7.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])  # row 2 is one token long; its padding must not count
    adv, ret = gae(rewards, values, mask, gamma, lam)

    # row 1: deltas from the back, V after the last token = 0
    d2 = 1.0 + gamma * 0.0 - 0.3  # 0.7
    d1 = 0.0 + gamma * 0.3 - 0.2  # 0.07
    d0 = 0.0 + gamma * 0.2 - 0.1  # 0.08
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[0].tolist() == pytest.approx([a0 + 0.1, a1 + 0.2, a2 + 0.3])
    # row 2: a single token: A = r - V = 0.5 - 0.4; padding zero
    assert adv[1].tolist() == pytest.approx([0.1, 0.0, 0.0])
    assert ret[1].tolist() == pytest.approx([0.5, 0.0, 0.0])


def test_gae_with_lambda_one_and_no_discount_is_reward_to_go_minus_value() -> None:
    rewards = torch.tensor([[0.2, -0.1, 1.0]])
    values = torch.tensor([[0.5, 0.3, 0.1]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    to_go = [0.2 - 0.1 + 1.0, -0.1 + 1.0, 1.0]
    assert ret[0].tolist() == pytest.approx(to_go)
    assert adv[0].tolist() == pytest.approx([to_go[0] - 0.5, to_go[1] - 0.3, to_go[2] - 0.1])


def test_clipped_policy_loss_by_hand() -> None:
    eps = 0.2
    old = torch.zeros(1, 4)
    # ratios e^0.5 = 1.6487 (clipped to 1.2), e^-0.5 = 0.6065 (clipped to 0.8), 1.1 (inside), padding
    new = torch.tensor([[0.5, -0.5, math.log(1.1), 3.0]])
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = policy_loss(new, old, adv, mask, eps)

    # token 1: A=+1, r=1.6487: max(-1.6487, -1.2) = -1.2 (clipped term used)
    # token 2: A=+1, r=0.6065: max(-0.6065, -0.8) = -0.6065 (unclipped; the clip only stops gains)
    # token 3: A=-2, r=1.1:    max(2.2, 2.2) = 2.2 (inside the range: equal, not counted as clipped)
    expected_loss = (-1.2 + -math.exp(-0.5) + 2.2) / 3
    assert out.loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert out.clipfrac.item() == pytest.approx(1 / 3)
    # approx_kl = 0.5 * mean(log_ratio^2) = 0.5 * (0.25 + 0.25 + ln(1.1)^2) / 3
    assert out.approx_kl.item() == pytest.approx(0.5 * (0.25 + 0.25 + math.log(1.1) ** 2) / 3, rel=1e-5)


def test_clipped_value_loss_by_hand() -> None:
    eps = 0.2
    old = torch.tensor([[1.0, 1.0, 0.0]])
    new = torch.tensor([[2.0, 1.1, 9.0]])
    ret = torch.tensor([[3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    out = value_loss(new, old, ret, mask, eps)
    # token 1: unclipped (2-3)^2 = 1; clipped value 1.2: (1.2-3)^2 = 3.24 -> 3.24 (clipped term wins)
    # token 2: within range: (1.1-0)^2 = 1.21 both -> 1.21, not counted as clipped
    assert out.loss.item() == pytest.approx(0.5 * (3.24 + 1.21) / 2, rel=1e-5)
    assert out.clipfrac.item() == pytest.approx(0.5)


def test_entropy_from_logits_by_hand() -> None:
    uniform = torch.zeros(1, 4)
    assert entropy_from_logits(uniform).item() == pytest.approx(math.log(4))
    logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]])
    assert entropy_from_logits(logits).item() == pytest.approx(-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)), rel=1e-5)


def test_kl_estimators_by_hand() -> None:
    logp = torch.tensor([math.log(0.5), math.log(0.1)])
    ref = torch.tensor([math.log(0.25), math.log(0.2)])
    # k1 = log p - log q
    assert kl_per_token(logp, ref, "k1").tolist() == pytest.approx([math.log(2), math.log(0.5)])
    # k3 = q/p - 1 - log(q/p): q/p = 0.5 -> 0.5 - 1 - ln 0.5; q/p = 2 -> 2 - 1 - ln 2
    assert kl_per_token(logp, ref, "k3").tolist() == pytest.approx([0.5 - 1 - math.log(0.5), 1 - math.log(2)], rel=1e-5)
    assert (kl_per_token(logp, ref, "k3") >= 0).all()
    assert kl_per_token(ref, ref, "k3").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(logp, ref, "k2")


def test_per_token_rewards_put_the_score_on_the_last_response_token() -> None:
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    scores = torch.tensor([2.0, -1.0])
    rewards, non_score = per_token_rewards(scores, kl, mask, kl_coef=0.5)
    torch.testing.assert_close(non_score, torch.tensor([[-0.05, -0.1, -0.15], [-0.2, -0.25, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.1, -0.15 + 2.0], [-0.2, -0.25 - 1.0, 0.0]]))


def test_missing_eos_penalty_replaces_the_score() -> None:
    scores = torch.tensor([0.9, 0.8])
    ended = torch.tensor([True, False])
    assert apply_missing_eos_penalty(scores, ended, -1.0).tolist() == pytest.approx([0.9, -1.0])
    assert apply_missing_eos_penalty(scores, ended, None).tolist() == pytest.approx([0.9, 0.8])


def test_truncation_after_the_first_eos() -> None:
    eos, pad = 2, 0
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    out, mask, ended = truncate_after_eos(ids, eos, pad)
    assert out.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_explained_variance() -> None:
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    # predicting the mean everywhere explains nothing: 1 - var(r - 2) / var(r) = 0
    assert explained_variance(torch.full((1, 3), 2.0), returns, mask).item() == pytest.approx(0.0)


def test_adaptive_kl_controller_moves_beta_towards_the_target() -> None:
    above = AdaptiveKLController(0.1, target=6.0, horizon=100)
    above.update(current_kl=12.0, n_steps=10)
    # error = clip(12/6 - 1, -0.2, 0.2) = 0.2 -> beta * (1 + 0.2 * 10 / 100) = 0.1 * 1.02
    assert above.value == pytest.approx(0.102)
    below = AdaptiveKLController(0.1, target=6.0, horizon=100)
    below.update(current_kl=3.0, n_steps=10)
    # error = 3/6 - 1 = -0.5, clipped to -0.2 -> 0.1 * 0.98
    assert below.value == pytest.approx(0.098)
    near = AdaptiveKLController(0.1, target=6.0, horizon=100)
    near.update(current_kl=6.6, n_steps=10)
    assert near.value == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))
    restored = AdaptiveKLController(1.0, target=1.0, horizon=1.0)
    restored.load_state_dict(above.state_dict())
    assert (restored.value, restored.target, restored.horizon) == (above.value, 6.0, 100.0)


def test_fixed_kl_controller_keeps_beta() -> None:
    fixed = FixedKLController(0.05)
    fixed.update(current_kl=100.0, n_steps=1000)
    assert fixed.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.05
