"""RM: a reward model trained on preference pairs (Bradley-Terry loss) with TRL's RewardTrainer.

    python -m runners.recipes.rm --spec runs/<id>/spec.yaml [--resume]

The model is the base LM with a one-logit score head (AutoModelForSequenceClassification,
num_labels=1; the head starts random). It learns to score chosen above rejected; metrics.jsonl has
TRL's `accuracy` (share of pairs ranked right) and `margin`. The saved model can be given to the
grpo/rloo recipes as `reward.model`.
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None) -> int:
    from trl import RewardConfig, RewardTrainer

    run = common.start("rm", argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, RewardConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, head="score", tokenizer=tokenizer)
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=common.peft_config(run, task_type="SEQ_CLS"),
        callbacks=[run.monitor],
    )
    return common.finish(run, trainer)


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
