"""PPOTrainer passes the data columns of each batch's prompts to a reward function, as keyword lists
aligned with the completions (TRL's reward-function convention), so builtin:exact_match works for ppo."""

from __future__ import annotations

import pytest
import torch
from test_ppo_trainer import make_trainer, prompts


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_each_prompts_columns_reach_the_reward_function(tiny_model_dir) -> None:
    seen: list[tuple[list[str], list[str]]] = []

    def reward(prompts, completions, answer, **kw):
        seen.append((list(prompts), list(answer)))
        return [0.0] * len(completions)

    all_prompts = prompts()
    answers = [f"answer {i}" for i in range(len(all_prompts))]
    trainer = make_trainer(tiny_model_dir, reward, max_steps=2, per_device_train_batch_size=4, num_mini_batches=1)
    trainer.columns = {"answer": answers}
    trainer.train()
    assert len(seen) == 2
    for batch_prompts, batch_answers in seen:
        assert batch_answers == [answers[all_prompts.index(p)] for p in batch_prompts]
    assert seen[0][0] != seen[1][0]  # a new batch each iteration, with its own answers


def test_columns_must_match_the_prompts() -> None:
    from runners.rl.ppo_config import PPOConfig
    from runners.rl.ppo_trainer import PPOTrainer

    with pytest.raises(ValueError, match="columns.answer: 1 values for 60 prompts"):
        PPOTrainer(PPOConfig(), None, None, None, lambda **kw: [], None, prompts(), columns={"answer": ["x"]})
