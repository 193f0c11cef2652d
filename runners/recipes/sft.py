"""SFT: supervised fine-tuning with TRL's SFTTrainer.

    python -m runners.recipes.sft --spec runs/<id>/spec.yaml [--resume]

Data: messages (chat turns), prompt/completion, or text. Preference data is accepted too and trains
on prompt + chosen answer (the usual warm-up before DPO). With prompt/completion data TRL computes
the loss on the completion only (its default completion_only_loss).
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None) -> int:
    from trl import SFTConfig, SFTTrainer

    run = common.start("sft", argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, SFTConfig, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    trainer = SFTTrainer(
        model=model,
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
