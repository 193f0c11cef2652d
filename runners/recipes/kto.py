"""KTO: Kahneman-Tversky optimization (Ethayarajh et al. 2024) with TRL's KTOTrainer.

    python -m runners.recipes.kto --spec runs/<id>/spec.yaml [--resume]

Data: unpaired prompt/completion/label (label true = desirable). Paired preference data is unpaired
first: each pair gives a desirable (chosen) and an undesirable (rejected) row. Like DPO it keeps a
frozen reference (a copy loaded from the same path, or the adapter-off base with LoRA).
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None) -> int:
    from trl import KTOConfig, KTOTrainer

    run = common.start("kto", argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, KTOConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    common.describe_reference(run, config)
    trainer = KTOTrainer(
        model=model,  # loaded from a path, so TRL can load the reference from the same path
        ref_model=None,
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
