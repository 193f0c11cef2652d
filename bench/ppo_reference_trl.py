"""The TRL 1.11 side of bench/ppo_reference.py: trl.experimental.ppo.PPOTrainer on the tiny model.

    bench/.venv-trl111/bin/python bench/ppo_reference_trl.py CONFIG.json OUT.json

Runs in its own venv (torch 2.13 CPU, trl==1.11.0, the transformers pip resolves for it), which
bench/ppo_reference.py builds; it imports nothing of ours, so it runs there without alignplan
installed. CONFIG.json is written by bench/ppo_reference.py: the policy, reward-model and prompt
paths and the shared hyper-parameters. OUT.json gets one row per PPO iteration (rollout + update),
with TRL's own logged metrics and the wall-clock seconds of the iteration, plus the versions used.

How the shared hyper-parameters map onto TRL 1.11's PPOConfig (read from its source):
- batch_size (prompts per rollout) -> per_device_train_batch_size, with gradient_accumulation_steps=1
  and one process: TRL's rollout batch is per_device_train_batch_size * gradient_accumulation_steps,
  a mini-batch is that divided by num_mini_batches, and with accumulation 1 the optimizer steps once
  per mini-batch.
- iterations -> total_episodes = iterations * batch_size (TRL runs ceil(total_episodes/batch_size)
  updates).
- lr_scheduler_type "constant" (TRL's TrainingArguments default is linear decay to 0).
- stop_token "eos": a response ends at its first EOS (kept; the rest padded), as in our trainer,
  which always stops at EOS; no missing-EOS penalty.
- adam_epsilon from the config (TrainingArguments' default is 1e-8, ours 1e-5). TRL's PPO loop never
  clips gradients (max_grad_norm is unused there), so our side runs without clipping.
- kl_estimator "k1": the per-token KL in the reward is logprob_policy - logprob_ref, and the logged
  objective/kl is that summed over the response and averaged over the batch, measured on the
  rollout (before the iteration's update).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    cfg = json.loads(open(argv[0], encoding="utf-8").read())
    out_path = argv[1]
    hp = cfg["hparams"]

    import torch

    torch.set_num_threads(int(cfg.get("threads", 1)))

    import accelerate
    import datasets
    import transformers
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(cfg["policy_path"])
    tokenizer.padding_side = "left"  # TRL's PPO generates after the prompt: pad prompts on the left

    prompts = [json.loads(line)["prompt"] for line in open(cfg["prompts_path"], encoding="utf-8") if line.strip()]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})

    torch.manual_seed(hp["seed"])
    policy = AutoModelForCausalLM.from_pretrained(cfg["policy_path"], dtype=torch.float32)
    ref_policy = AutoModelForCausalLM.from_pretrained(cfg["policy_path"], dtype=torch.float32)
    reward_model = AutoModelForSequenceClassification.from_pretrained(cfg["reward_path"], num_labels=1, dtype=torch.float32)
    value_model = AutoModelForSequenceClassification.from_pretrained(cfg["reward_path"], num_labels=1, dtype=torch.float32)
    reward_model.requires_grad_(False)

    batch = hp["batch_size"]
    work = tempfile.mkdtemp(prefix="ppo-trl111-")
    args = PPOConfig(
        output_dir=work,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_mini_batches=hp["num_mini_batches"],
        num_ppo_epochs=hp["ppo_epochs"],
        total_episodes=hp["iterations"] * batch,
        local_rollout_forward_batch_size=batch,
        response_length=hp["response_length"],
        temperature=hp["temperature"],
        stop_token="eos",
        missing_eos_penalty=None,
        kl_coef=hp["kl_coef"],
        kl_estimator="k1",
        cliprange=hp["cliprange"],
        cliprange_value=hp["cliprange_value"],
        vf_coef=hp["vf_coef"],
        gamma=hp["gamma"],
        lam=hp["lam"],
        whiten_rewards=False,
        learning_rate=hp["learning_rate"],
        adam_epsilon=hp.get("adam_epsilon", 1e-8),
        lr_scheduler_type="constant",
        warmup_steps=0,
        seed=hp["seed"],
        num_sample_generations=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        disable_tqdm=True,
        gradient_checkpointing=False,
    )

    rows: list[dict] = []

    class Recorder(TrainerCallback):
        """One row per iteration: TRL's metrics (logged just before on_step_end) and the seconds since
        the previous iteration ended (the first since training began: rollout + update)."""

        def __init__(self) -> None:
            self.last = None
            self.pending: dict = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.pending = dict(logs or {})

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            seconds = now - self.last
            logs, self.pending = self.pending, {}
            rows.append({
                "iteration": state.global_step,
                "score": logs.get("objective/scores"),
                "kl": logs.get("objective/kl"),
                "seconds": seconds,
                "metrics": logs,
            })
            self.last = now
            print(f"trl iter {state.global_step}: score {logs.get('objective/scores'):+.4f} "
                  f"kl {logs.get('objective/kl'):+.5f} {seconds:.2f}s", file=sys.stderr, flush=True)

    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
        eval_dataset=None,
        callbacks=[Recorder()],
    )
    # PrinterCallback prints every log dict; the Recorder reports one line per iteration instead.
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    # TRL 1.11 seeds torch (dataloader order, sampling) but draws its mini-batch shuffles from numpy's
    # global generator, which nothing seeds: without this, two runs with the same seed differ.
    import random

    import numpy as np

    np.random.seed(hp["seed"])
    random.seed(hp["seed"])
    started = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - started

    result = {
        "side": "trl",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "accelerate": accelerate.__version__,
            "datasets": datasets.__version__,
        },
        "threads": torch.get_num_threads(),
        "total_seconds": total,
        "rows": rows,
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
