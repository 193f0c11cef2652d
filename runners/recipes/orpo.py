"""ORPO: odds-ratio preference optimization (Hong et al. 2024), TRL's experimental ORPOTrainer.

    python -m runners.recipes.orpo --spec runs/<id>/spec.yaml [--resume]

No reference model: the loss is the SFT loss on the chosen answer plus beta times a log-odds-ratio
term that pushes chosen above rejected. The trainer comes from runners.recipes.trl_compat (trl.experimental).
"""

from __future__ import annotations

from runners.recipes import common, trl_compat


def train(argv: list[str] | None = None) -> int:
    ORPOConfig, ORPOTrainer = trl_compat.orpo()

    run = common.start("orpo", argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, ORPOConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    trainer = ORPOTrainer(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=common.peft_config(run),
        callbacks=[run.monitor],
    )
    common.count_pair_tokens(run, trainer)  # for tokens_per_second: this trainer logs no token count
    return common.finish(run, trainer)


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
