"""SimPO: simple preference optimization (Meng et al. 2024) = CPO with loss_type "simpo", cpo_alpha 0.

    python -m runners.recipes.simpo --spec runs/<id>/spec.yaml [--resume]

No reference model: the implicit reward is the length-normalized log-likelihood, and the loss asks
chosen to beat rejected by a margin `simpo_gamma`. TRL's CPOTrainer (trl.experimental, imported via
runners.recipes.trl_compat) implements it; cpo_alpha 0 drops CPO's extra NLL term as in the SimPO paper.
Defaults are the paper's (beta 2.0, simpo_gamma 1.0, cpo_alpha 0: runners.recipes.defaults), not CPO's
beta 0.1.
"""

from __future__ import annotations

from runners.recipes import common, trl_compat


def train(argv: list[str] | None = None) -> int:
    CPOConfig, CPOTrainer = trl_compat.cpo()

    run = common.start("simpo", argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(
        run,
        CPOConfig,
        forced=trl_compat.FORCED_SETTINGS["simpo"],
        has_eval=eval_set is not None,
    )
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    trainer = CPOTrainer(
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
