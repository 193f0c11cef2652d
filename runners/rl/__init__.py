"""RL algorithms (PPO) for alignment, with the math as plain functions on tensors.

    advantages.py   masked statistics, whitening, GAE and returns
    losses.py       clipped policy and value losses, entropy from logits
    kl.py           per-token KL estimators, fixed/adaptive KL controllers, per-token rewards
    rollout.py      sampling responses with the KV cache, truncation at EOS, log-probs, values, scores
    ppo_config.py   PPOConfig: every knob with its published default and what it costs
    ppo_trainer.py  PPOTrainer: the loop (roll out, score, advantages, clipped updates, KL control)

Each function is small enough to check by hand on a few numbers (tests/runners/rl).
"""
