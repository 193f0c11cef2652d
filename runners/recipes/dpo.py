"""DPO: direct preference optimization (Rafailov et al. 2023) with TRL's DPOTrainer.

    python -m runners.recipes.dpo --spec runs/<id>/spec.yaml [--resume]

The reference model is a frozen copy of the policy, loaded by TRL from the same path. With LoRA no
copy is loaded: the reference is the base model with the adapter switched off. hparams
`precompute_ref_log_probs: true` computes the reference log-probs once before training instead, so
no reference is held in memory while training. `loss_type` picks the loss (sigmoid, ipo, robust,
hinge, ...); TRL's defaults apply otherwise (beta 0.1, lr 1e-6).
"""

from __future__ import annotations

from runners.recipes import common


def train(argv: list[str] | None = None, forced: dict | None = None, method: str = "dpo") -> int:
    from trl import DPOConfig, DPOTrainer

    run = common.start(method, argv)
    train_set, eval_set = common.load_data(run)
    config = common.build_config(run, DPOConfig, forced=forced, has_eval=eval_set is not None)
    tokenizer = common.load_tokenizer(run)
    model = common.load_model(run, tokenizer=tokenizer)
    common.describe_reference(run, config)
    trainer = DPOTrainer(
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
