"""PPO: RLHF with proximal policy optimization (Ouyang et al. 2022) with our PPOTrainer (runners.rl).

    accelerate launch -m runners.recipes.ppo --spec runs/<id>/spec.yaml [--resume]

TRL 1.16 has no PPO trainer; runners/rl/ppo_trainer.py is ours, on transformers + accelerate (+ peft).
The policy (spec.model) samples answers to the prompts; spec.reward scores them (a reward model,
e.g. the rm recipe's output, or a function: runners.rewards, docs/runners.md "Rewards"); a value model (from the reward
model, or the policy with a fresh scalar head: hparams.value_model) estimates the return; the
reference is a frozen copy of the policy (with spec.lora: the policy with its adapter disabled).
hparams are PPOConfig fields (runners/rl/ppo_config.py). Data: prompts (preference data gives its
prompts). One iteration = one metrics row; docs/ppo.md says what each metric means.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

from runners.recipes import common
from runners.rl.ppo_trainer import PPOHooks


class RunHooks(PPOHooks):
    """Connects the trainer to the run directory: metrics.jsonl through the run's RunMonitor (the same
    writer, peak memory and STOP logic as the TRL recipes), samples.jsonl, and the STOP file."""

    def __init__(self, run: common.Run, is_main: bool) -> None:
        self.run = run
        self.is_main = is_main

    def on_log(self, trainer, row: dict[str, Any]) -> None:
        state = SimpleNamespace(
            global_step=row["step"], max_steps=row["max_steps"], epoch=row["epoch"], num_input_tokens_seen=0,
            is_world_process_zero=self.is_main,
        )
        self.run.monitor.on_log(None, state, None, logs=row)
        self.run.log(
            f"iteration {row['step']}/{row['max_steps']}: score {row['score']:.4f} kl {row['kl']:.4f} "
            f"response_length {row['response_length']:.1f} ({row['iteration_seconds']:.2f} s)"
        )

    def on_samples(self, trainer, samples: list[dict[str, Any]]) -> None:
        if not self.is_main:
            return
        with (self.run.run_dir / "samples.jsonl").open("a", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample) + "\n")

    def should_stop(self, trainer) -> bool:
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        self.run.monitor.on_step_end(None, None, control)  # every process joins the STOP all-reduce
        return self.run.monitor.stopped


def build_ppo_config(run: common.Run, n_prompts: int, num_processes: int):
    """PPOConfig from spec.hparams (checked like the TRL recipes' configs) and the spec's own fields."""
    from runners.rl.ppo_config import PPOConfig

    hparams = dict(run.spec.hparams)
    common.check_hparams(hparams, PPOConfig, {})
    spec = run.spec
    if spec.max_steps > 0:
        iterations = spec.max_steps
    else:
        per_iteration = int(hparams.get("per_device_train_batch_size", PPOConfig.per_device_train_batch_size))
        iterations = max(1, math.ceil(spec.num_train_epochs * n_prompts / (per_iteration * num_processes)))
    if hparams.get("value_model", "reward") == "reward" and spec.reward is not None and not spec.reward.model:
        if "value_model" in hparams:
            raise common.SpecError(
                "hparams.value_model: 'reward' starts the value model from the reward model, but spec.reward "
                "is a function; use value_model: policy"
            )
        hparams["value_model"] = "policy"
        run.log("value model: the policy with a fresh scalar head (the reward is a function, not a model)")
    try:
        return PPOConfig(
            **hparams,
            seed=spec.seed,
            max_steps=iterations,
            save_steps=spec.save_steps,
            output_dir=str(run.output_dir),
            gradient_checkpointing=spec.gradient_checkpointing,
        )
    except (ValueError, TypeError) as exc:
        raise common.SpecError(f"hparams: PPOConfig rejected the settings: {exc}") from None


def render_prompts(run: common.Run, tokenizer, prompts: list[Any]) -> list[str]:
    """Prompt strings as the policy sees them: conversational prompts through the chat template."""
    if not any(isinstance(p, list) for p in prompts):
        return [str(p) for p in prompts]
    if not tokenizer.chat_template:
        raise common.SpecError(
            f"model: {run.spec.model}'s tokenizer has no chat template, but the prompts are conversational"
        )
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


def load_scalar_model(run: common.Run, path: str, tokenizer):
    """A one-logit sequence classifier (reward or value model) from a path or hub id."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=common.model_dtype(run.precision), trust_remote_code=run.spec.trust_remote_code
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train(argv: list[str] | None = None) -> int:
    import copy

    from accelerate import Accelerator
    from transformers import set_seed

    from runners.rl.ppo_trainer import SHARDING_REFUSED, PPOTrainer, list_checkpoints, sharding_engine

    run = common.start("ppo", argv)
    engine = sharding_engine()
    if engine:
        raise common.SpecError(f"sharding: {engine} launch refused. {SHARDING_REFUSED}")
    reward_spec = run.spec.reward
    if reward_spec is None:
        raise common.SpecError("reward: ppo needs a reward model or a reward function")
    reward_function = None if reward_spec.model else common.reward_functions(run)[0]
    train_set, eval_set = common.load_data(run)
    if eval_set is not None:
        run.log("eval_fraction: PPO has no evaluation pass; the held-out prompts are not used")
    accelerator = Accelerator(cpu=not run.cuda, mixed_precision="bf16" if run.precision == "amp-bf16" else "no")
    config = build_ppo_config(run, len(train_set), accelerator.num_processes)
    common.warn_vanishing_updates(run, config.learning_rate)
    tokenizer = common.load_tokenizer(run)
    prompts = render_prompts(run, tokenizer, list(train_set["prompt"]))
    columns = {name: list(train_set[name]) for name in train_set.column_names if name != "prompt"}

    set_seed(run.spec.seed)  # the fresh value head, when there is one, starts the same every run
    policy = common.load_model(run, tokenizer=tokenizer)
    lora = common.peft_config(run)
    if lora is not None:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora)
        ref_policy = None
    else:
        ref_policy = copy.deepcopy(policy)
    common.describe_reference(run, config)
    reward = reward_function if reward_function is not None else load_scalar_model(run, reward_spec.model, tokenizer)
    value_source = reward_spec.model if config.value_model == "reward" else run.spec.model
    value_model = load_scalar_model(run, value_source, tokenizer)
    run.log(f"value model: from {value_source} ({config.value_model})")
    run.monitor.on_train_begin(None, None, None, model=policy)

    hooks = RunHooks(run, accelerator.is_main_process)
    trainer = PPOTrainer(config, policy, ref_policy, value_model, reward, tokenizer, prompts,
                         accelerator=accelerator, hooks=hooks, columns=columns if reward_function else None,
                         optimizer_factory=common.kahan_adamw if run.precision == "bf16-kahan" else None)
    resume_from = None
    if run.resume:
        found = list_checkpoints(run.output_dir)
        resume_from = found[-1] if found else None
        run.log(f"resuming from {resume_from}" if resume_from else
                f"--resume: no checkpoint in {run.output_dir}; starting from iteration 0")
    trainer.train(resume_from=resume_from)

    extras = {"method": run.method, "precision": run.precision, "device": "cuda" if run.cuda else "cpu",
              "data_format": run.data_format.name if run.data_format else None}
    if trainer.stopped:
        run.log(f"STOP file seen: checkpoint {trainer.last_checkpoint}; exiting")
        if accelerator.is_main_process:
            common.write_result(run.run_dir, "stopped", run.monitor, checkpoint=str(trainer.last_checkpoint), **extras)
        return 0
    final_dir, final_value_dir = run.output_dir / "final", run.output_dir / "final-value"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainer.save_models(final_dir, final_value_dir)
        common.write_result(run.run_dir, "succeeded", run.monitor, final_model=str(final_dir),
                            final_value_model=str(final_value_dir), **extras)
    run.log(f"done: final policy in {final_dir}, value model in {final_value_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
