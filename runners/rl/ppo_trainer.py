"""PPOTrainer: RLHF with PPO (Ouyang et al. 2022; Ziegler et al. 2019) on transformers + accelerate.

Entry point, usable without a run directory:

    trainer = PPOTrainer(config, policy, ref_policy, value_model, reward, tokenizer, prompts,
                         accelerator=None, hooks=None)
    rows = trainer.train(resume_from=None)     # list of per-iteration metric dicts

    config       PPOConfig (runners.rl.ppo_config)
    policy       AutoModelForCausalLM, trained; or a peft model (LoRA), then pass ref_policy=None and
                 the reference is the same model with its adapter disabled (no second copy)
    ref_policy   frozen copy of the initial policy (None with a peft policy)
    value_model  AutoModelForSequenceClassification(num_labels=1), trained; its scalar head read at
                 every response position gives V
    reward       a frozen AutoModelForSequenceClassification(num_labels=1) (scored at the last
                 non-pad token) or a function f(prompts: list[str], completions: list[str], **columns)
                 -> list[float]
    tokenizer    shared by all four models (TRL's PPO had the same requirement)
    prompts      list[str], already rendered (chat template applied by the caller)
    accelerator  accelerate.Accelerator; None: a new one (CPU or one GPU). DDP only (see below)
    hooks        PPOHooks: metrics rows, samples, the stop decision (e.g. a STOP file)
    columns      {name: one value per prompt}: data columns a reward function reads (e.g. answer);
                 each batch's values reach it as keyword lists, as TRL passes them
    resume_from  a checkpoint-<iteration>/ directory written by save_checkpoint

One iteration, top to bottom in `iteration()`:
    1. roll out: the policy samples one response per prompt (no grad, KV cache)
    2. score: reward model or function; log-probs under the reference and the sampling policy; values
    3. per-token rewards = -beta * KL_t (+ the score on the last token); GAE; whitened advantages
    4. ppo_epochs x shuffled mini-batches: clipped policy loss + vf_coef * clipped value loss,
       gradient accumulation over micro-batches, gradient clipping, one optimizer per model
    5. the KL controller updates beta from this rollout's KL
Under DeepSpeed or FSDP the trainer refuses to start: PPO trains two models (policy and value) and
holds two more (reference, reward); this loop prepares them for DDP only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runners.rl.advantages import explained_variance, gae, masked_mean, masked_whiten
from runners.rl.kl import (
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    kl_per_token,
    per_token_rewards,
)
from runners.rl.losses import policy_loss, value_loss
from runners.rl.ppo_config import PPOConfig
from runners.rl.rollout import (
    Rollout,
    TokenScalars,
    response_logprobs,
    response_values,
    sample,
    sequence_scores,
)

RewardFunction = Callable[..., list[float]]

SHARDING_REFUSED = (
    "PPO trains two models (policy and value) next to a frozen reference and reward model, and this "
    "recipe runs them under DDP only, not DeepSpeed or FSDP: use LoRA (spec.lora) to fit the policy, "
    "or launch without sharding (zero_stage 0, DDP)"
)
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"


class PPOHooks:
    """What the trainer tells the world; override any. Every process calls every hook."""

    def on_log(self, trainer: PPOTrainer, row: dict[str, Any]) -> None:
        """One metrics row per iteration (the same row on every process)."""

    def on_samples(self, trainer: PPOTrainer, samples: list[dict[str, Any]]) -> None:
        """Every sample_every iterations: this process's first prompts, responses and scores."""

    def should_stop(self, trainer: PPOTrainer) -> bool:
        """Asked after each iteration; must give the same answer on every process."""
        return False


def sharding_engine() -> str | None:
    """'DeepSpeed' or 'FSDP' when accelerate launched this process with one, else None."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "DeepSpeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "FSDP"
    return None


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout makes the log-probs of the update differ from those of the rollout even before any
    step, so the ratio would not start at 1 (RLHF-with-PPO implementation details)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def is_peft_model(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-<iteration> directories, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


class PPOTrainer:
    def __init__(
        self,
        config: PPOConfig,
        policy,
        ref_policy,
        value_model,
        reward,
        tokenizer,
        prompts: list[str],
        accelerator=None,
        hooks: PPOHooks | None = None,
        columns: dict[str, list[Any]] | None = None,
        optimizer_factory: Callable[..., torch.optim.Optimizer] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        engine = sharding_engine()
        if engine:
            raise ValueError(f"{engine}: {SHARDING_REFUSED}")
        self.accelerator = accelerator or Accelerator()
        if self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
            raise ValueError(f"{self.accelerator.distributed_type.value}: {SHARDING_REFUSED}")
        if not prompts:
            raise ValueError("prompts: no prompts to roll out")
        self.config = config
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.columns = {name: list(values) for name, values in (columns or {}).items()}
        for name, values in self.columns.items():
            if len(values) != len(self.prompts):
                raise ValueError(f"columns.{name}: {len(values)} values for {len(self.prompts)} prompts")
        self.hooks = hooks or PPOHooks()
        # f(params, lr=, eps=, weight_decay=) -> optimizer; None: torch's AdamW (bf16-kahan passes Kahan AdamW)
        self.optimizer_factory = optimizer_factory
        self.peft = is_peft_model(policy)
        if ref_policy is None and not self.peft:
            raise ValueError("ref_policy: needed unless the policy is a peft (LoRA) model")
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer: has no eos_token_id; responses could never end")
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        device = self.accelerator.device

        for model in (policy, value_model):
            disable_dropout(model)
            if config.gradient_checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.ref_policy = ref_policy
        if ref_policy is not None:
            self.ref_policy = self._frozen(ref_policy, device)
        self.reward_function: RewardFunction | None = None
        self.reward_model = None
        if isinstance(reward, torch.nn.Module):
            self.reward_model = self._frozen(reward, device)
        elif callable(reward):
            self.reward_function = reward
        else:
            raise ValueError("reward: a sequence-classification model or a function f(prompts, completions)")

        self.policy_optimizer = self._optimizer(policy, config.learning_rate)
        value = TokenScalars(value_model)
        self.value_optimizer = self._optimizer(value, config.value_learning_rate or config.learning_rate)
        self.policy, self.value, self.policy_optimizer, self.value_optimizer = self.accelerator.prepare(
            policy, value, self.policy_optimizer, self.value_optimizer
        )
        steps = config.max_steps * config.ppo_epochs * config.num_mini_batches
        self.policy_scheduler = self._scheduler(self.policy_optimizer, steps)
        self.value_scheduler = self._scheduler(self.value_optimizer, steps)
        if config.adaptive_kl:
            self.kl_controller: FixedKLController | AdaptiveKLController = AdaptiveKLController(
                config.kl_coef, config.target_kl, config.kl_horizon
            )
        else:
            self.kl_controller = FixedKLController(config.kl_coef)
        self.iteration = 0  # iterations done
        self.stopped = False
        self.last_checkpoint: Path | None = None
        self.first_ratio: torch.Tensor | None = None  # the ratio of the last iteration's first micro-batch
        self._tokens_seen = 0.0
        self._orders: dict[int, torch.Tensor] = {}

    # --- setup helpers ---------------------------------------------------------------------------

    @staticmethod
    def _frozen(model, device):
        model.eval()
        model.requires_grad_(False)
        return model.to(device)

    def _optimizer(self, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            return self.optimizer_factory(params, lr=lr, eps=self.config.adam_epsilon,
                                          weight_decay=self.config.weight_decay)
        # fused: one kernel per parameter group, no full-size temporaries (torch's default foreach
        # implementation holds a copy of every parameter's denominator at once), as the planner models
        return torch.optim.AdamW(params, lr=lr, eps=self.config.adam_epsilon, weight_decay=self.config.weight_decay,
                                 fused=True)

    def _scheduler(self, optimizer, total_steps: int):
        if self.config.lr_scheduler_type == "constant":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / max(1, total_steps)))

    # --- data ------------------------------------------------------------------------------------

    def _order(self, epoch: int) -> torch.Tensor:
        """The prompt order of one pass over the data: a permutation seeded by (seed, epoch) alone, so
        the prompts of any iteration follow from the iteration count (no sampler state to save)."""
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.config.seed + epoch)
            # Keep this pass and the one before (a batch can straddle two passes), not every pass.
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = torch.randperm(len(self.prompts), generator=generator)
        return self._orders[epoch]

    def data_position(self, iteration: int) -> int:
        """Index of the first prompt of `iteration` in the stream of epochs (all processes)."""
        return iteration * self.accelerator.num_processes * self.config.per_device_train_batch_size

    def batch_indices(self, iteration: int) -> list[int]:
        """Indices into prompts (and columns) of this process's batch in `iteration`."""
        batch = self.config.per_device_train_batch_size
        first = self.data_position(iteration) + self.accelerator.process_index * batch
        n = len(self.prompts)
        return [int(self._order(g // n)[g % n]) for g in range(first, first + batch)]

    def batch_prompts(self, iteration: int) -> list[str]:
        return [self.prompts[i] for i in self.batch_indices(iteration)]

    def epoch(self) -> float:
        return self.data_position(self.iteration) / len(self.prompts)

    # --- the loop --------------------------------------------------------------------------------

    def train(self, resume_from: str | Path | None = None) -> list[dict[str, Any]]:
        """Run iterations up to config.max_steps (or until hooks.should_stop); return their rows."""
        from accelerate.utils import set_seed

        if resume_from is not None:
            self.load_checkpoint(resume_from)
        else:
            set_seed(self.config.seed, device_specific=True)  # each process samples its own responses
        rows: list[dict[str, Any]] = []
        while self.iteration < self.config.max_steps:
            row = self.iteration_step()
            rows.append(row)
            self.hooks.on_log(self, row)
            stop = bool(self.hooks.should_stop(self))
            due = self.iteration % self.config.save_steps == 0
            if self.config.output_dir and (due or stop):
                self.save_checkpoint(Path(self.config.output_dir) / f"{CHECKPOINT_PREFIX}{self.iteration}")
            if stop:
                self.stopped = True
                break
        return rows

    def iteration_step(self) -> dict[str, Any]:
        """One PPO iteration; returns its metrics row (already averaged over processes)."""
        cfg = self.config
        started = time.time()
        indices = self.batch_indices(self.iteration)
        prompts = [self.prompts[i] for i in indices]
        columns = {name: [values[i] for i in indices] for name, values in self.columns.items()}

        # 1-2. Roll out and score, all without gradients.
        rollout, logprobs, entropy, ref_logprobs, values, scores = self.roll_out(prompts, columns)
        mask = rollout.response_mask.float()
        scores = apply_missing_eos_penalty(scores, rollout.ended_with_eos, cfg.missing_eos_penalty)

        # 3. Rewards, advantages, returns.
        beta = self.kl_controller.value
        kl = kl_per_token(logprobs, ref_logprobs, cfg.kl_estimator) * mask
        rewards, non_score = per_token_rewards(scores, kl, mask, beta)
        if cfg.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask) * mask

        # 4. PPO epochs over shuffled mini-batches.
        learning_rate = self.policy_scheduler.get_last_lr()[0]
        update = self.update(rollout, logprobs, values, advantages, returns)

        # 5. Metrics (averaged over processes) and the KL controller, which sees the global KL.
        tokens = float(rollout.attention_mask.sum())
        local = {
            "score": scores.float().mean(),
            "kl": kl.sum(1).mean(),
            "non_score_reward": non_score.sum(1).mean(),
            "entropy": masked_mean(entropy, mask),
            **update,
            "explained_variance": explained_variance(values, returns, mask),
            "response_length": mask.sum(1).mean(),
            "eos_fraction": rollout.ended_with_eos.float().mean(),
            "tokens": tokens,
        }
        row = self._mean_over_processes(local)
        # the mean over processes times their number: every process counts all processes' tokens alike
        total_tokens = row.pop("tokens") * self.accelerator.num_processes
        self._tokens_seen += total_tokens
        elapsed = time.time() - started
        self.kl_controller.update(row["kl"], cfg.per_device_train_batch_size * self.accelerator.num_processes)
        self.iteration += 1
        row.update(
            step=self.iteration,
            max_steps=cfg.max_steps,
            epoch=self.epoch(),
            loss=row["policy_loss"] + cfg.vf_coef * row["value_loss"],
            learning_rate=learning_rate,
            kl_coef=beta,
            tokens_per_second=total_tokens / elapsed if elapsed > 0 else None,
            num_tokens=self._tokens_seen,
            iteration_seconds=elapsed,
            generation_time_s=self.last_generation[0],
            generation_tokens_per_second=(self.last_generation[1] * self.accelerator.num_processes
                                          / self.last_generation[0] if self.last_generation[0] > 0 else None),
        )
        if (self.iteration - 1) % cfg.sample_every == 0:
            self.hooks.on_samples(self, self._samples(prompts, rollout, scores))
        return row

    @torch.no_grad()
    def roll_out(self, prompts: list[str], columns: dict[str, list[Any]] | None = None):
        """(rollout, policy log-probs, entropy, reference log-probs, values, scores) for the prompts;
        columns: the prompts' data columns, for a reward function."""
        cfg = self.config
        device = self.accelerator.device
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # every prompt ends at the column where responses start
        try:
            query = self.tokenizer(prompts, return_tensors="pt", padding=True)
        finally:
            self.tokenizer.padding_side = side
        self.policy.eval()
        self.value.eval()
        policy = self.accelerator.unwrap_model(self.policy)
        generation_started = time.time()
        with self.accelerator.autocast():
            rollout = sample(
                policy,
                query["input_ids"].to(device),
                query["attention_mask"].to(device),
                max_new_tokens=cfg.response_length,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
            )
        # the rollout's generation time and generated tokens (this process's; throughput in issue 14)
        self.last_generation = (time.time() - generation_started, float(rollout.response_mask.sum()))
        # Forward passes in micro-batches of the size the update uses: the same shapes give the same
        # numbers, so the first update's ratio is exactly 1.
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("logprobs", "entropy", "ref", "values", "scores")}
        step = cfg.micro_batch_size
        for start in range(0, len(prompts), step):
            part = rollout.select(torch.arange(start, min(start + step, len(prompts)), device=device))
            with self.accelerator.autocast():
                logprobs, entropy = response_logprobs(self.policy, part, cfg.temperature, with_entropy=True)
                parts["logprobs"].append(logprobs)
                parts["entropy"].append(entropy)
                parts["ref"].append(self._reference_logprobs(part))
                parts["values"].append(response_values(self.value, part))
                if self.reward_model is not None:
                    parts["scores"].append(sequence_scores(self.reward_model, part))
        joined = {k: torch.cat(v) for k, v in parts.items() if v}
        if self.reward_function is not None:
            joined["scores"] = self._function_scores(prompts, rollout, columns or {})
        return (rollout, joined["logprobs"], joined["entropy"], joined["ref"], joined["values"],
                joined["scores"].float())

    def _reference_logprobs(self, part: Rollout) -> torch.Tensor:
        if self.ref_policy is not None:
            return response_logprobs(self.ref_policy, part, self.config.temperature)[0]
        # LoRA: the reference is the base model, i.e. the policy with its adapter switched off.
        policy = self.accelerator.unwrap_model(self.policy)
        with policy.disable_adapter():
            return response_logprobs(policy, part, self.config.temperature)[0]

    def completions(self, rollout: Rollout) -> list[str]:
        return self.tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)

    def _function_scores(self, prompts: list[str], rollout: Rollout, columns: dict[str, list[Any]]) -> torch.Tensor:
        completions = self.completions(rollout)
        scores = self.reward_function(prompts=prompts, completions=completions, **columns)
        if len(scores) != len(prompts):
            raise ValueError(f"reward function returned {len(scores)} scores for {len(prompts)} completions")
        return torch.tensor([float(s) for s in scores], dtype=torch.float32, device=rollout.query_ids.device)

    def update(self, rollout: Rollout, old_logprobs, old_values, advantages, returns) -> dict[str, torch.Tensor]:
        """ppo_epochs passes of clipped updates over shuffled mini-batches; mean losses and fractions."""
        cfg = self.config
        accelerator = self.accelerator
        self.policy.train()
        self.value.train()
        mask = rollout.response_mask.float()
        sums: dict[str, float] = {}
        count = 0
        self.first_ratio = None
        n = rollout.query_ids.shape[0]
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n).to(rollout.query_ids.device)
            for mb_start in range(0, n, cfg.mini_batch_size):
                mini = order[mb_start : mb_start + cfg.mini_batch_size]
                for k, start in enumerate(range(0, len(mini), cfg.micro_batch_size)):
                    idx = mini[start : start + cfg.micro_batch_size]
                    last = k == cfg.gradient_accumulation_steps - 1
                    part = rollout.select(idx)
                    # DDP all-reduces the gradients on the last micro-batch of a mini-batch only.
                    with self._no_sync(not last), accelerator.autocast():
                        logprobs, _ = response_logprobs(self.policy, part, cfg.temperature)
                        values = response_values(self.value, part)
                        pl = policy_loss(logprobs, old_logprobs[idx], advantages[idx], mask[idx], cfg.cliprange)
                        vl = value_loss(values, old_values[idx], returns[idx], mask[idx], cfg.cliprange_value)
                        loss = (pl.loss + cfg.vf_coef * vl.loss) / cfg.gradient_accumulation_steps
                    accelerator.backward(loss)
                    if self.first_ratio is None:
                        self.first_ratio = pl.ratio[mask[idx].bool()]
                    for key, value in (("policy_loss", pl.loss), ("value_loss", vl.loss),
                                       ("policy_clipfrac", pl.clipfrac), ("value_clipfrac", vl.clipfrac),
                                       ("approx_kl", pl.approx_kl)):
                        sums[key] = sums.get(key, 0.0) + float(value.detach())
                    count += 1
                if cfg.max_grad_norm and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                    accelerator.clip_grad_norm_(self.value.parameters(), cfg.max_grad_norm)
                self.policy_optimizer.step()
                self.value_optimizer.step()
                self.policy_scheduler.step()
                self.value_scheduler.step()
                self.policy_optimizer.zero_grad(set_to_none=True)
                self.value_optimizer.zero_grad(set_to_none=True)
        return {key: torch.tensor(total / count) for key, total in sums.items()}

    def _no_sync(self, skip: bool):
        if not skip or self.accelerator.num_processes == 1:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(self.accelerator.no_sync(self.policy))
        stack.enter_context(self.accelerator.no_sync(self.value))
        return stack

    def _mean_over_processes(self, local: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = list(local)
        stacked = torch.stack([torch.as_tensor(local[k], dtype=torch.float32).reshape(()).cpu() for k in keys])
        if self.accelerator.num_processes > 1:
            stacked = self.accelerator.reduce(stacked.to(self.accelerator.device), reduction="mean").cpu()
        return {k: _finite(v) for k, v in zip(keys, stacked.tolist(), strict=True)}

    def _samples(self, prompts: list[str], rollout: Rollout, scores: torch.Tensor) -> list[dict[str, Any]]:
        count = min(self.config.num_samples, len(prompts))
        completions = self.completions(rollout.select(torch.arange(count, device=rollout.query_ids.device)))
        return [
            {"iteration": self.iteration, "prompt": prompts[i], "response": completions[i], "score": float(scores[i]),
             "ended_with_eos": bool(rollout.ended_with_eos[i])}
            for i in range(count)
        ]

    # --- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Everything a resumed run needs to continue exactly: both models, both optimizers and
        schedulers, the KL controller, every process's RNG states, the iteration and data position.
        Written to a temporary name first, so a crash mid-save never leaves a checkpoint-* to resume."""
        directory = Path(directory)
        tmp = directory.with_name(f".tmp-{directory.name}")
        accelerator = self.accelerator
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            self.save_models(tmp / "policy", tmp / "value")
            torch.save(
                {
                    "policy_optimizer": self.policy_optimizer.state_dict(),
                    "value_optimizer": self.value_optimizer.state_dict(),
                    "policy_scheduler": self.policy_scheduler.state_dict(),
                    "value_scheduler": self.value_scheduler.state_dict(),
                },
                tmp / "optimizer.pt",
            )
            state = {
                "iteration": self.iteration,
                "data_position": self.data_position(self.iteration),
                "num_processes": accelerator.num_processes,
                "kl_controller": self.kl_controller.state_dict(),
                "config": asdict(self.config),
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, tmp / f"rng_state_{accelerator.process_index}.pth")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(directory, ignore_errors=True)
            tmp.rename(directory)
        accelerator.wait_for_everyone()
        self.last_checkpoint = directory
        return directory

    def save_models(self, policy_dir: str | Path, value_dir: str | Path) -> None:
        """The policy (the adapter only, with LoRA) and the value model, loadable with from_pretrained."""
        policy = self.accelerator.unwrap_model(self.policy)
        value = self.accelerator.unwrap_model(self.value).model
        policy.save_pretrained(str(policy_dir))
        value.save_pretrained(str(value_dir))
        self.tokenizer.save_pretrained(str(policy_dir))
        self.tokenizer.save_pretrained(str(value_dir))

    def load_checkpoint(self, directory: str | Path) -> None:
        directory = Path(directory)
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        if state["num_processes"] != self.accelerator.num_processes:
            raise ValueError(
                f"{directory}: written by {state['num_processes']} processes, resumed with "
                f"{self.accelerator.num_processes}; the data order and RNG states would not continue"
            )
        policy = self.accelerator.unwrap_model(self.policy)
        if self.peft:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(policy, _read_safetensors(directory / "policy"))
        else:
            _load_weights(policy, directory / "policy")
        _load_weights(self.accelerator.unwrap_model(self.value).model, directory / "value")
        optim = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=False)
        self.policy_optimizer.load_state_dict(optim["policy_optimizer"])
        self.value_optimizer.load_state_dict(optim["value_optimizer"])
        self.policy_scheduler.load_state_dict(optim["policy_scheduler"])
        self.value_scheduler.load_state_dict(optim["value_scheduler"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        self.iteration = int(state["iteration"])
        rng = torch.load(directory / f"rng_state_{self.accelerator.process_index}.pth", weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.last_checkpoint = directory


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no .safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def _load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Load save_pretrained weights into an existing model in place (optimizer states keep pointing
    at the same parameters)."""
    weights = _read_safetensors(directory)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{directory}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
