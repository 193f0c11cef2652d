"""Method profiles, declared once: what each alignment method keeps in GPU memory.

The advisor's outcomes and the runners' recipes use these method ids. A profile lists the model
copies (role, trainable or frozen, which option drops the copy), the sequences each example puts
through the policy (DPO: chosen + rejected), the phases of a training step and what each phase
holds (which copies score, how long a generated context is). The planner reads only these fields:
it has no branch on a method's id, so a new method or phase is a profile here. Multi-stage
pipelines (RLAIF, CAI) list their stages; each stage is planned like a method and the peak is the
largest stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCopy:
    """One model the method holds in memory.

    role: policy | reference | reward | value | judge.
    dropped_by: request options that remove this copy, e.g. "lora" (LoRA: the reference is the
    policy with its adapter switched off), "precompute_ref" (reference log-probs computed once
    before training), "beta0" (no KL term), "rule_reward" (a rule or function gives the reward),
    "shared_value" (the value head sits on the policy backbone), "api_judge" (the judge is a remote API).
    scalar_head: the model ends in a 1-wide score head instead of the vocabulary (reward, value).
    peft: the request's LoRA adapters and quantized base apply to this copy as they do to the policy.
    False: the runner loads it unquantized and, if it trains, trains it in full whatever lora_rank
    says (our PPO recipe's value and reward models: runners/recipes/ppo.py load_scalar_model).
    """

    role: str
    trainable: bool
    dropped_by: tuple[str, ...] = ()
    scalar_head: bool = False
    peft: bool = True


@dataclass(frozen=True)
class MethodProfile:
    """What one method (or one stage of a pipeline) holds, phase by phase.

    copies: the models it keeps; in a generation phase the first that is not dropped generates.
    sequences_per_example: sequences one training example puts through the policy (DPO: chosen + rejected).
    phases: the phases of one step, in the order they run (planner.PHASES names them all).
    stages: multi-stage pipelines: method or stage ids planned one after another (the peak is the largest).
    default_beta, default_generations: TRL's KL coefficient and completions per prompt, used where the
    request leaves beta or num_generations unset (beta 0 drops a "beta0" copy).
    scores_trainable_copies: the scoring phase also runs each trainable copy forward without
    gradients, as it always runs the frozen ones: the old log-probs and values of the rollouts
    (PPO, GRPO, RLOO, online DPO), KTO's mismatched KL batch through the policy.
    generated_context_seq_lens, generated_context_completions: how long one sequence's context is,
    in seq_len-long texts plus completion_len-long generations: (1, 0) a prompt and its completion
    (seq_len counts both); (1, 2) CAI, whose critique and revision follow the response in one
    context (its revision call reads prompt + response + critique and writes the revision). The
    generation phase sizes its KV cache from them; the other phases size each of the
    sequences_per_example sequences from them ((1, 1) RLAIF's judge: the prompt and both responses).
    kv_cache_holds_all_generations: the generation phase holds num_generations sequences per example
    at once (the generate stage: K responses per prompt in one generate call); otherwise one per
    example (TRL's online trainers count per_device_train_batch_size in completions, whatever
    num_generations is; CAI's answer, critique and revision are three generate calls, one after
    the other, each of batch_size sequences: runners/recipes/cai_generate.py).
    scoring_keeps_kv_cache: the scoring forward runs with the model's own use_cache (True), so the
    keys and values of every token it reads are held to its end, beside the logits (our local
    judge, runners/judges/local.py label_logits).
    scoring_reads_raw_logits: the scoring forward's materialised logits are read as they are (the
    judge's two label logits at the last position), with no fp32 log-softmax; they are formed after
    the layers' transients are freed, beside the final norm's output.
    fused_lm_head: TRL 1.16's trainer for this method scores tokens with its fused LM head (no T x V logits).
    completion_logprobs: the trainer takes log-probs of the completion positions only, from the
    model's materialised logits over the whole sequence (our PPO: runners/rl/rollout.py
    response_logprobs), and its scoring forward of the trainable policy also computes the entropy;
    the trainable copies' backward runs in the reverse order of their forwards (terms.completion_*).
    disables_dropout: the trainer sets every dropout to p = 0, LoRA's included (our PPO's
    disable_dropout), so lora_dropout saves nothing.
    update_epochs: passes of the training phases over each batch of scored rollouts (our PPO's
    ppo_epochs, default 4); 1 for the others. Time only (planner.timecost), not memory.
    trainer: the trainer whose memory the profile describes (our runners' recipe for the method).
    runner_unsharded: why our runner trains the method without ZeRO/FSDP sharding ("" = it shards):
    the runner never picks a sharding stage for it and refuses a forced one; the advisor offers its
    sharded fixes for an export to verl/OpenRLHF instead.
    """

    id: str
    name: str
    summary: str
    copies: tuple[ModelCopy, ...]
    sequences_per_example: int = 1
    phases: tuple[str, ...] = ("forward_backward", "optimizer_step")
    stages: tuple[str, ...] = ()
    default_beta: float | None = None
    default_generations: int = 1
    scores_trainable_copies: bool = False
    generated_context_seq_lens: int = 1
    generated_context_completions: int = 0
    kv_cache_holds_all_generations: bool = False
    scoring_keeps_kv_cache: bool = False
    scoring_reads_raw_logits: bool = False
    fused_lm_head: bool = False
    completion_logprobs: bool = False
    disables_dropout: bool = False
    update_epochs: int = 1
    trainer: str = ""  # the trainer the profile models, named in the plan's assumptions
    runner_unsharded: str = ""  # why our runner does not shard it; "" = it does
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def default_loss(self) -> str:
        """The loss the method's runner uses (planner.estimate.LOSSES): TRL 1.16's fused LM head, or
        materialised logits."""
        return "fused" if self.fused_lm_head else "materialised"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c.role for c in self.copies)


_POLICY = ModelCopy("policy", trainable=True)
_REF = ModelCopy("reference", trainable=False, dropped_by=("lora", "precompute_ref"))
_REF_KL = ModelCopy("reference", trainable=False, dropped_by=("lora", "beta0"))
_RM = ModelCopy("reward", trainable=False, dropped_by=("rule_reward",), scalar_head=True)

_STEP = ("forward_backward", "optimizer_step")

METHODS: dict[str, MethodProfile] = {
    p.id: p
    for p in [
        MethodProfile(
            "sft", "Supervised fine-tuning", "Next-token loss on (prompt, response) pairs.",
            (_POLICY,), fused_lm_head=True, trainer="TRL 1.16 SFTTrainer", source="Ouyang et al. 2022, stage 1",
        ),
        MethodProfile(
            "rm", "Reward model", "Bradley-Terry loss on chosen/rejected pairs; LM head replaced by a scalar head.",
            (ModelCopy("reward", trainable=True, scalar_head=True),), sequences_per_example=2,
            trainer="TRL 1.16 RewardTrainer", source="Ouyang et al. 2022, stage 2",
        ),
        MethodProfile(
            "ppo", "RLHF with PPO",
            "Policy and value model trained; reference (KL) and reward model frozen; rollouts generated each step.",
            (_POLICY, ModelCopy("value", trainable=True, dropped_by=("shared_value",), scalar_head=True, peft=False),
             ModelCopy("reference", trainable=False, dropped_by=("lora",)),
             ModelCopy("reward", trainable=False, dropped_by=("rule_reward",), scalar_head=True, peft=False)),
            phases=("generation", "scoring", *_STEP), scores_trainable_copies=True,
            completion_logprobs=True, disables_dropout=True, update_epochs=4,
            trainer="our PPOTrainer (runners/rl/ppo_trainer.py)",
            runner_unsharded="our PPO trainer updates two models (policy and value) beside a frozen reference and "
                             "reward model; it runs them under DDP only (accelerate prepares one model per "
                             "DeepSpeed engine, and gathering FSDP-sharded weights for generation is not written). "
                             "Use LoRA (one base copy, adapter-off reference) or fewer, larger GPUs",
            source="Schulman et al. 2017; Ouyang et al. 2022, stage 3; runners/rl/ppo_trainer.py",
            notes=("policy and value are updated in one backward pass, so their activations coexist",
                   "our PPO trainer trains the value model in full, also with LoRA on the policy, and "
                   "loads the value and reward models unquantized"),
        ),
        MethodProfile(
            "grpo", "GRPO", "G sampled completions per prompt, group-normalised reward as advantage; no value model.",
            (_POLICY, _REF_KL, _RM), sequences_per_example=1, phases=("generation", "scoring", *_STEP),
            scores_trainable_copies=True, default_beta=0.0, default_generations=8,
            fused_lm_head=True, trainer="TRL 1.16 GRPOTrainer", source="Shao et al. 2024 (DeepSeekMath); TRL GRPOConfig (beta 0.0, num_generations 8)",
        ),
        MethodProfile(
            "rloo", "RLOO", "REINFORCE with a leave-one-out baseline over G completions; no value model.",
            (_POLICY, _REF_KL, _RM), sequences_per_example=1, phases=("generation", "scoring", *_STEP),
            scores_trainable_copies=True, default_beta=0.05, default_generations=2,
            fused_lm_head=True, trainer="TRL 1.16 RLOOTrainer", source="Ahmadian et al. 2024; TRL RLOOConfig (beta 0.05, num_generations 2)",
        ),
        MethodProfile(
            "dpo", "DPO", "Classification loss on chosen vs rejected log-ratios against a frozen reference.",
            (_POLICY, _REF), sequences_per_example=2, phases=("scoring", *_STEP),
            fused_lm_head=True, trainer="TRL 1.16 DPOTrainer", source="Rafailov et al. 2023",
        ),
        MethodProfile(
            "ipo", "IPO", "DPO with a bounded squared objective (no over-optimisation to infinite margins).",
            (_POLICY, _REF), sequences_per_example=2, phases=("scoring", *_STEP),
            fused_lm_head=True, trainer="TRL 1.16 DPOTrainer (loss_type ipo)", source="Azar et al. 2024",
        ),
        MethodProfile(
            "kto", "KTO", "Unpaired desirable/undesirable examples against a reference (prospect-theory loss).",
            (_POLICY, _REF), sequences_per_example=1, phases=("scoring", *_STEP),
            scores_trainable_copies=True, fused_lm_head=True, trainer="TRL 1.16 KTOTrainer", source="Ethayarajh et al. 2024",
            notes=("KTO also scores a mismatched KL batch without gradients (counted in scoring)",),
        ),
        MethodProfile(
            "orpo", "ORPO", "SFT loss plus an odds-ratio preference term; no reference model.",
            (_POLICY,), sequences_per_example=2, trainer="TRL 1.16 ORPOTrainer (trl.experimental)", source="Hong et al. 2024",
        ),
        MethodProfile(
            "simpo", "SimPO", "Length-normalised log-likelihood margin with a target gap; no reference model.",
            (_POLICY,), sequences_per_example=2, trainer="TRL 1.16 CPOTrainer (trl.experimental, SimPO loss)", source="Meng et al. 2024",
        ),
        MethodProfile(
            "online-dpo", "Online DPO",
            "Policy samples two completions, a judge or reward model picks the better, DPO on the fresh pair.",
            (_POLICY, ModelCopy("reference", trainable=False, dropped_by=("lora",)),
             ModelCopy("judge", trainable=False, dropped_by=("api_judge",), scalar_head=True)),
            sequences_per_example=2, phases=("generation", "scoring", *_STEP), scores_trainable_copies=True,
            default_generations=2, trainer="TRL's OnlineDPOTrainer", source="Guo et al. 2024",
        ),
        MethodProfile(
            "rlaif", "RLAIF", "An AI judge labels response pairs, then DPO on those pairs: two stages.",
            (ModelCopy("judge", trainable=False, dropped_by=("api_judge",)), _POLICY, _REF),
            sequences_per_example=2, stages=("rlaif-label", "dpo"), source="Bai et al. 2022; Lee et al. 2023",
        ),
        MethodProfile(
            "cai", "Constitutional AI",
            "The policy critiques and revises its own responses against principles; SFT on revisions, then DPO.",
            (_POLICY, _REF), sequences_per_example=2, stages=("cai-generate", "sft", "dpo"),
            source="Bai et al. 2022 (Constitutional AI)",
        ),
    ]
}

# Inference-only stages of the multi-stage pipelines (not user-facing methods).
STAGES: dict[str, MethodProfile] = {
    "rlaif-label": MethodProfile(
        "rlaif-label", "RLAIF labelling",
        "The judge reads prompt + two responses, in both orders, and its verdict is the next token's "
        "probabilities of the two labels: one no-grad forward, no generation.",
        (ModelCopy("judge", trainable=False, dropped_by=("api_judge",)),), sequences_per_example=2,
        phases=("scoring",), generated_context_completions=1, scoring_keeps_kv_cache=True,            trainer="our local judge (runners/judges/local.py)",

        scoring_reads_raw_logits=True, source="Lee et al. 2023; runners/judges/local.py, runners/recipes/rlaif_label.py",
        notes=("each pair is judged in both orders (the recipe's judge batch is 2 x batch_size)",
               "traced on CPU: bench/results/stage_trace.md"),
    ),
    "cai-generate": MethodProfile(
        "cai-generate", "CAI critique and revision", "The policy generates a response, a critique and a revision.",
        (ModelCopy("policy", trainable=False),), phases=("generation",), default_generations=3,
        generated_context_completions=2, trainer="transformers generate (runners/recipes/cai_generate.py)", source="Bai et al. 2022 (Constitutional AI); runners/recipes/cai_generate.py",
        notes=("three generate calls one after the other, each of batch_size sequences; the revision's "
               "context (prompt + response + critique + revision) is the largest",
               "traced on CPU: bench/results/stage_trace.md"),
    ),
    "generate": MethodProfile(
        "generate", "Response generation", "The frozen policy samples K responses per prompt (RLAIF, RL-CAI).",
        (ModelCopy("policy", trainable=False),), phases=("generation",), default_generations=2,
        kv_cache_holds_all_generations=True, trainer="transformers generate", source="Bai et al. 2022; Lee et al. 2023",
    ),
}

METHOD_IDS = tuple(METHODS)


def can_precompute_reference(method: str) -> bool:
    """Whether the method's reference copy can be replaced by log-probs computed once before training
    (TRL's precompute_ref_log_probs for DPO, IPO and KTO; RLAIF and CAI through their DPO stage)."""
    profile = METHODS.get(method)
    return profile is not None and any("precompute_ref" in c.dropped_by for c in profile.copies)


def get_profile(method: str) -> MethodProfile:
    from planner.errors import PlannerError

    if method in METHODS:
        return METHODS[method]
    if method in STAGES:
        return STAGES[method]
    raise PlannerError("method", f"unknown method {method!r}; accepted: {', '.join(METHOD_IDS)}")
