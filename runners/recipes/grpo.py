"""GRPO: group relative policy optimization (Shao et al. 2024) with TRL's GRPOTrainer.

    python -m runners.recipes.grpo --spec runs/<id>/spec.yaml [--resume]

Online: for each prompt the policy generates `num_generations` answers, a reward scores them, and
each answer's advantage is its reward minus the group mean (over the group std). The reward is
spec.reward: a reward model path (e.g. the rm recipe's output) or a Python function by dotted path,
such as runners.recipes.rewards:marker_reward. Data: prompts (preference data gives its prompts).
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None) -> int:
    from trl import GRPOConfig, GRPOTrainer

    run = common.start("grpo", argv)
    rewards = common.reward_functions(run)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, GRPOConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=common.peft_config(run),
        callbacks=[run.monitor],
    )
    return common.finish(run, trainer)


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
