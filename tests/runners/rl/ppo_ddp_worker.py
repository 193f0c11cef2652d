"""One process of the two-process PPO test (tests/runners/rl/test_ppo_ddp.py), started by
`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo). Each process trains the tiny model for
a few iterations and writes what the test compares across processes: the prompts it rolled out,
the metric rows, its local per-iteration scores, and checksums of the policy and value weights."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch


def main(model_dir: str, out_dir: str) -> None:
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from runners.rl.ppo_config import PPOConfig
    from runners.rl.ppo_trainer import PPOHooks, PPOTrainer

    torch.set_num_threads(1)
    prompts_file = Path(__file__).resolve().parents[3] / "runners" / "data" / "demo_prompts.jsonl"
    prompts = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)  # the same start weights on both processes, as from_pretrained gives
    policy = AutoModelForCausalLM.from_pretrained(model_dir)
    value = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    value.config.pad_token_id = tokenizer.pad_token_id
    policy_start = sum(float(p.detach().double().sum()) for p in policy.parameters())
    local_scores: list[list[float]] = []

    def reward(prompts, completions, **kw):
        scores = [float(len(c.split())) for c in completions]
        local_scores.append(scores)
        return scores

    class Hooks(PPOHooks):
        rows: list[dict] = []

        def on_log(self, trainer, row):
            self.rows.append(dict(row))

    hooks = Hooks()
    config = PPOConfig(max_steps=3, per_device_train_batch_size=4, num_mini_batches=2, response_length=6,
                       learning_rate=3e-3, lr_scheduler_type="constant", kl_coef=0.1, seed=0)
    # cpu=True, as the recipe passes on a CPU: without it accelerate sees no GPU and each process runs alone
    trainer = PPOTrainer(config, policy, copy.deepcopy(policy), value, reward, tokenizer, prompts, hooks=hooks,
                         accelerator=Accelerator(cpu=True))
    trainer.train()
    rank = trainer.accelerator.process_index
    policy_sum = sum(float(p.detach().double().sum()) for p in trainer.accelerator.unwrap_model(trainer.policy).parameters())
    value_sum = sum(float(p.detach().double().sum()) for p in trainer.accelerator.unwrap_model(trainer.value).parameters())
    doc = {"rank": rank, "world": trainer.accelerator.num_processes,
           "batches": [trainer.batch_indices(i) for i in range(3)], "rows": hooks.rows,
           "local_scores": local_scores, "policy_sum": policy_sum, "value_sum": value_sum,
           "policy_start": policy_start}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(doc), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
