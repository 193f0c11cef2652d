"""PPOConfig: every PPO knob with a help text, its published default and what changing it costs.

Sources of the defaults:
    [TRL]   TRL's former PPOConfig / OnPolicyConfig (trl <= 1.11, trl.experimental.ppo)
    [Z19]   Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"
            (lm-human-preferences): adaptive KL target and horizon, initial KL coefficient
    [S17]   Schulman et al. 2017, "Proximal Policy Optimization Algorithms": clip range, GAE lambda
    [N+]    Huang et al. 2024, "The N+ implementation details of RLHF with PPO": Adam epsilon,
            temperature-scaled log-probs, the non-EOS penalty
Batch terms: one *iteration* rolls out per_device_train_batch_size prompts on every process, then
runs ppo_epochs passes over them in num_mini_batches mini-batches (one optimizer step each), each
split into gradient_accumulation_steps micro-batches (one forward/backward each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.rl.kl import KL_ESTIMATORS

VALUE_MODEL_INITS = ("reward", "policy")
LR_SCHEDULERS = ("linear", "constant")


@dataclass
class PPOConfig:
    # --- optimization -----------------------------------------------------------------------------
    learning_rate: float = field(
        default=3e-6,  # [TRL] the PPO example's setting for 1B-class policies
        metadata={"help": "AdamW learning rate of the policy. Higher moves faster and drifts from the reference sooner."},
    )
    value_learning_rate: float | None = field(
        default=None,
        metadata={"help": "AdamW learning rate of the value model; None: the policy's learning_rate."},
    )
    lr_scheduler_type: str = field(
        default="linear",  # [TRL] TrainingArguments' default, decayed over all optimizer steps
        metadata={"help": f"Learning-rate schedule over all optimizer steps: one of {', '.join(LR_SCHEDULERS)}."},
    )
    adam_epsilon: float = field(
        default=1e-5,  # [N+] the value lm-human-preferences used (PyTorch's default is 1e-8)
        metadata={"help": "AdamW epsilon."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(
        default=1.0,  # [TRL] TrainingArguments' default
        metadata={"help": "Clip each model's gradient norm to this (0 or less: no clipping)."},
    )
    # --- batch shape ------------------------------------------------------------------------------
    per_device_train_batch_size: int = field(
        default=8,
        metadata={"help": "Prompts rolled out per process per iteration. Higher: steadier advantages, more "
                  "memory for generation (KV cache) and for the rollout's stored log-probs and values."},
    )
    num_mini_batches: int = field(
        default=1,  # [TRL]
        metadata={"help": "Mini-batches (optimizer steps) per PPO epoch over the rollout. Higher: more, "
                  "noisier updates per rollout, more time."},
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "Micro-batches per mini-batch. Higher lowers activation memory at the same "
                  "mini-batch size, at the cost of more forward/backward passes."},
    )
    ppo_epochs: int = field(
        default=4,  # [TRL] num_ppo_epochs; [S17] used 3-10
        metadata={"help": "Passes over each rollout. Higher reuses samples more (cheaper than generating) "
                  "but the policy moves further from the one that sampled them (more clipping)."},
    )
    # --- PPO losses -------------------------------------------------------------------------------
    cliprange: float = field(
        default=0.2,  # [S17], [TRL]
        metadata={"help": "Policy ratio clip epsilon. Higher allows larger steps per rollout, less stable."},
    )
    cliprange_value: float = field(
        default=0.2,  # [TRL]
        metadata={"help": "How far a value may move from its rollout value before its loss is clipped."},
    )
    vf_coef: float = field(
        default=0.1,  # [TRL]
        metadata={"help": "Weight of the value loss in the summed loss."},
    )
    gamma: float = field(
        default=1.0,  # [TRL]: no discount within a response
        metadata={"help": "Discount factor over response tokens."},
    )
    lam: float = field(
        default=0.95,  # [S17], [TRL]
        metadata={"help": "GAE lambda. Lower: less variance, more bias from the value model."},
    )
    whiten_rewards: bool = field(
        default=False,  # [TRL]
        metadata={"help": "Rescale the per-token rewards to unit variance (mean kept) before GAE."},
    )
    # --- KL penalty -------------------------------------------------------------------------------
    kl_coef: float = field(
        default=0.05,  # [TRL] kl_coef; [Z19] started adaptive control at 0.15-0.2
        metadata={"help": "beta: weight of the per-token KL penalty to the reference (the initial value "
                  "when adaptive_kl is on). Higher keeps the policy closer to the reference."},
    )
    adaptive_kl: bool = field(
        default=False,  # [TRL] fixed beta by default; [Z19] adaptive
        metadata={"help": "Adapt beta towards target_kl (Ziegler et al. 2019) instead of keeping it fixed."},
    )
    target_kl: float = field(
        default=6.0,  # [Z19] target, in nats per sequence
        metadata={"help": "Adaptive KL: the KL per sequence (nats) that beta is steered towards."},
    )
    kl_horizon: float = field(
        default=10000.0,  # [Z19]
        metadata={"help": "Adaptive KL: how many rollout samples beta takes to correct an error; higher is slower."},
    )
    kl_estimator: str = field(
        default="k1",  # [TRL]
        metadata={"help": f"Per-token KL estimator: one of {', '.join(KL_ESTIMATORS)} (k3 is never negative)."},
    )
    # --- sampling ---------------------------------------------------------------------------------
    response_length: int = field(
        default=53,  # [TRL] OnPolicyConfig.response_length
        metadata={"help": "max_new_tokens per response. Higher: more KV-cache memory and generation time."},
    )
    temperature: float = field(
        default=0.7,  # [TRL]; [N+]: the same temperature scales the training log-probs
        metadata={"help": "Sampling temperature; the log-probs PPO trains are computed at it too."},
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1.0: sample from all tokens)."})
    missing_eos_penalty: float | None = field(
        default=None,  # [TRL]; [N+] used -1
        metadata={"help": "Score given instead of the reward to a response that never emits EOS within "
                  "response_length (None: keep its score)."},
    )
    # --- models -----------------------------------------------------------------------------------
    value_model: str = field(
        default="reward",  # [Z19], [TRL]: the value model starts as the reward model
        metadata={"help": "Value model init: 'reward' (a trainable copy of the reward model; needs a reward "
                  "model) or 'policy' (the policy's backbone with a fresh scalar head)."},
    )
    # --- logging, checkpoints, run length (the recipe sets these from the spec) -------------------
    sample_every: int = field(
        default=10, metadata={"help": "Write prompts, responses and scores to samples.jsonl every N iterations."}
    )
    num_samples: int = field(default=4, metadata={"help": "How many responses each samples.jsonl entry holds."})
    seed: int = field(default=42, metadata={"help": "Seed of the data order, sampling and mini-batch shuffles."})
    max_steps: int = field(default=100, metadata={"help": "Iterations (rollout + update) to run."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every N iterations (and on stop)."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where checkpoint-<iteration>/ go; None: no checkpoints."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, about a third more time."}
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"{name}: {why} (got {getattr(self, name)!r})")

        for name in ("per_device_train_batch_size", "num_mini_batches", "gradient_accumulation_steps",
                     "ppo_epochs", "response_length", "sample_every", "max_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be 1 or more")
        if self.per_device_train_batch_size % (self.num_mini_batches * self.gradient_accumulation_steps):
            raise bad("per_device_train_batch_size",
                      "must be a multiple of num_mini_batches x gradient_accumulation_steps "
                      f"({self.num_mini_batches} x {self.gradient_accumulation_steps})")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise bad("kl_estimator", f"accepted: {', '.join(KL_ESTIMATORS)}")
        if self.value_model not in VALUE_MODEL_INITS:
            raise bad("value_model", f"accepted: {', '.join(VALUE_MODEL_INITS)}")
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            raise bad("lr_scheduler_type", f"accepted: {', '.join(LR_SCHEDULERS)}")
        if self.temperature <= 0:
            raise bad("temperature", "must be above 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma, lam: must be in [0, 1] (got {self.gamma}, {self.lam})")
        if self.cliprange <= 0 or self.cliprange_value <= 0:
            raise ValueError("cliprange, cliprange_value: must be above 0")
        if self.kl_coef < 0:
            raise bad("kl_coef", "must be 0 or more")
        if self.adaptive_kl and (self.target_kl <= 0 or self.kl_horizon <= 0):
            raise ValueError("target_kl, kl_horizon: must be above 0 with adaptive_kl")

    @property
    def mini_batch_size(self) -> int:
        return self.per_device_train_batch_size // self.num_mini_batches

    @property
    def micro_batch_size(self) -> int:
        return self.mini_batch_size // self.gradient_accumulation_steps
