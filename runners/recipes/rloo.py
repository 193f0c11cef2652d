"""RLOO: REINFORCE leave-one-out (Ahmadian et al. 2024) with TRL's RLOOTrainer.

    python -m runners.recipes.rloo --spec runs/<id>/spec.yaml [--resume]

Online like GRPO: `num_generations` answers per prompt; each answer's baseline is the mean reward of
the other answers to the same prompt. Reward: spec.reward (a reward model path or a dotted-path
Python function). Data: prompts (preference data gives its prompts).
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None) -> int:
    from trl import RLOOConfig, RLOOTrainer

    run = common.start("rloo", argv)
    rewards = common.reward_functions(run)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, RLOOConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    trainer = RLOOTrainer(
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
