"""estimate(request) -> Plan: per-GPU memory of an alignment method, per copy and per phase.

The peak is the largest phase, not the sum of everything. Phases (those the method has):
  generation        static + KV cache of the rollouts + the last token's logits
  scoring           static + the largest single no-grad forward (reference/reward/value log-probs;
                    the trainable copies' too where the profile says they score)
  forward_backward  static + activations + logits + gradients as they stand at the backward peak
  optimizer_step    static + all gradients (the optimizer reads them, then they are freed)
where static = every copy's weights + the optimizer states, which exist from the first step on
(step 2 is the real peak: step 1 has no Adam moments yet during its forward and backward).
Each phase is sized by one function (_PHASE_MEMORY) from the method profile's fields alone; a
stage walks its profile's phases in order, with no branch on the method's id.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from planner import terms
from planner.errors import PlannerError
from planner.hardware import GPUS, get_gpu
from planner.methods import METHOD_IDS, STAGES, MethodProfile, get_profile
from planner.models import ModelSpec, load_model

MAX_GPUS_PER_NODE = 64  # the largest `gpus` (per node) a request may ask for

COMPONENTS = ("weights", "gradients", "optimizer_states", "activations", "logits", "kv_cache", "overhead")
PHASES = ("generation", "scoring", "forward_backward", "optimizer_step")
MAX_GPUS = 4096
LOSSES = ("fused", "chunked", "materialised")


def resolved_loss(req: PlanRequest, profile: MethodProfile | None = None) -> str:
    """The loss the plan models: the request's, else "fused" for the older chunked_loss switch, else
    the method's runner default (methods.MethodProfile.default_loss)."""
    if req.loss is not None:
        return req.loss
    if req.chunked_loss:
        return "fused"
    return (profile or get_profile(req.method)).default_loss


# TRL 1.16's max_length and per_device_train_batch_size: what our runner uses when a run's hparams
# leave them out, so PlanRequest, `alignplan plan`, the app and the runner plan the same run.
DEFAULT_SEQ_LEN = 1024
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class PlanRequest:
    """What to plan. Defaults are the runners' defaults (TRL 1.16's, on a bf16 GPU)."""

    model: str | dict | ModelSpec
    method: str = "dpo"
    seq_len: int = DEFAULT_SEQ_LEN  # prompt + completion tokens per sequence (TRL max_length)
    batch_size: int = DEFAULT_BATCH_SIZE  # per-device micro-batch, as TRL's per_device_train_batch_size counts it
    precision: str = "bf16-kahan"
    lora_rank: int | None = None
    lora_targets: str = "all-linear"
    lora_dropout: float = 0.05
    quant: str | None = None  # nf4 | int8 (needs lora_rank)
    grad_ckpt: bool = True
    optimizer: str = "adamw"
    zero: int = 0  # 0 = DDP; 1/2/3 = ZeRO stages (3 = FSDP full shard)
    engine: str = "deepspeed"  # deepspeed | fsdp: which implements zero 1-3
    offload: str | None = None  # optimizer | params
    gpu: str | None = None
    gpus: int = 1  # per node
    nodes: int = 1
    # How the loss reads the LM head: "fused" (TRL 1.16's fused LM head: no T x V logits), "chunked"
    # (the logits formed one chunk of tokens at a time), "materialised" (full logits and their fp32
    # log-softmax, as transformers' Trainer keeps them). None: the method's runner default (its profile).
    loss: str | None = None
    chunked_loss: bool = False  # the older switch: True plans loss "fused" where loss is None
    precompute_ref: bool = False
    # Memory savers the runners do not use (docs/memory.md, "Memory savers"):
    activation_offload: bool = False  # torchtune's enable_activation_offloading: saved activations in host memory
    optimizer_in_backward: bool = False  # torchtune's optimizer_in_bwd: each gradient freed after its own step
    # peft's prepare_model_for_kbit_training upcasts the non-quantized parameters to fp32; None: what
    # our runner does (it calls it whenever quant is set)
    kbit_upcast: bool | None = None
    beta: float | None = None  # KL coefficient for grpo/rloo; None = the method's TRL default
    num_generations: int | None = None
    completion_len: int | None = None  # default seq_len // 2
    reward_model: str | None = None  # None: same as the policy; "rule": a function; or a model
    value_model: str | None = None  # None: same as the policy; "shared": head on the policy
    judge_model: str | None = None  # None: same as the policy; "api": a remote judge
    # Sequences generated at once per GPU when that is more than the training micro-batch (PPO:
    # per_device_train_batch_size prompts are rolled out, then scored and updated in micro-batches of
    # batch_size = per_device_train_batch_size / (num_mini_batches x gradient_accumulation_steps)).
    # None: batch_size.
    rollout_batch_size: int | None = None

    def replace(self, **changes: Any) -> PlanRequest:
        return replace(self, **changes)


@dataclass
class Plan:
    method: str
    model: dict[str, Any]
    request: dict[str, Any]
    world_size: int
    params_total: int
    trainable_params: int
    copies: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    peak_phase: str
    peak_bytes_per_gpu: int
    components: dict[str, int]
    host_bytes_per_node: int = 0
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    fits: bool | None = None
    headroom_bytes: int | None = None
    min_gpus: dict[str, int | None] = field(default_factory=dict)
    min_gpus_detail: dict[str, dict[str, int] | None] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loss: str = ""  # the loss modelled: the request's, else the method's runner default (resolved_loss)
    assumptions: str = ""  # one line: what the figure assumes (shown under it; _assumptions)
    assumed: dict[str, Any] = field(default_factory=dict)  # the same, field by field

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_frame(self):
        """One row per (phase, component), bytes and GiB; the peak phase flagged."""
        import pandas as pd

        rows = []
        for ph in self.phases:
            for comp, b in ph["components"].items():
                rows.append({"stage": ph.get("stage", self.method), "phase": ph["name"], "component": comp,
                             "bytes": b, "gib": b / terms.GIB, "is_peak": ph.get("is_peak", False)})
        return pd.DataFrame(rows)


# --- validation -----------------------------------------------------------------------------------


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PlannerError(name, f"must be an integer from {lo} to {hi:,}, got {value!r}")


def _choice(name: str, value: Any, accepted: tuple) -> None:
    if value not in accepted:
        shown = ", ".join("none" if a is None else str(a) for a in accepted)
        raise PlannerError(name, f"{value!r} is not accepted; accepted: {shown}")


def validate(req: PlanRequest) -> ModelSpec:
    model = load_model(req.model)
    _choice("method", req.method, METHOD_IDS + tuple(STAGES))
    _check_int("seq_len", req.seq_len, 1, 2_097_152)
    _check_int("batch_size", req.batch_size, 1, 65_536)
    if req.rollout_batch_size is not None:
        _check_int("rollout_batch_size", req.rollout_batch_size, 1, 65_536)
    _choice("precision", req.precision, tuple(terms.PRECISIONS))
    _choice("optimizer", req.optimizer, terms.OPTIMIZERS)
    _choice("zero", req.zero, (0, 1, 2, 3))
    _choice("engine", req.engine, ("deepspeed", "fsdp"))
    _choice("offload", req.offload, (None, "optimizer", "params"))
    _choice("quant", req.quant, (None, "nf4", "int8"))
    _choice("loss", req.loss, (None, *LOSSES))
    for name in ("activation_offload", "optimizer_in_backward", "chunked_loss", "grad_ckpt", "precompute_ref"):
        _choice(name, getattr(req, name), (False, True))
    _choice("kbit_upcast", req.kbit_upcast, (None, False, True))
    if req.kbit_upcast and not req.quant:
        raise PlannerError("kbit_upcast", "upcasts the parameters a quantized model keeps in 16 bits: needs quant nf4 or int8")
    if req.optimizer_in_backward and (req.zero or req.gpus * req.nodes > 1):
        raise PlannerError("optimizer_in_backward", "steps each parameter as soon as its gradient is formed: one GPU, "
                                                    "zero 0 and no gradient accumulation (torchtune's optimizer_in_bwd)")
    profile = get_profile(req.method)
    if req.loss not in (None, "materialised") and profile.completion_logprobs:
        raise PlannerError("loss", f"{profile.name}: our trainer takes log-probs from materialised logits; "
                                   "accepted: materialised")
    _choice("lora_targets", req.lora_targets, tuple(terms.LORA_TARGETS))
    _check_int("gpus", req.gpus, 1, MAX_GPUS_PER_NODE)
    _check_int("nodes", req.nodes, 1, 4096)
    if req.lora_rank is not None:
        _check_int("lora_rank", req.lora_rank, 1, model.hidden_size)
    if not 0.0 <= req.lora_dropout < 1.0:
        raise PlannerError("lora_dropout", f"must be in [0, 1), got {req.lora_dropout!r}")
    if req.quant and req.lora_rank is None:
        raise PlannerError("quant", "quantized weights cannot be trained: set lora_rank (QLoRA)")
    if req.offload == "params" and req.zero != 3:
        raise PlannerError("offload", "parameter offload needs zero=3")
    if req.offload and req.zero == 0:
        raise PlannerError("offload", "optimizer offload needs zero 1, 2 or 3 (DeepSpeed ZeRO-Offload)")
    if req.gpu is not None:
        get_gpu(req.gpu)
    if req.beta is not None and (not isinstance(req.beta, (int, float)) or not math.isfinite(req.beta) or req.beta < 0):
        raise PlannerError("beta", f"must be a finite number >= 0, got {req.beta!r}")
    if req.engine == "fsdp" and req.zero == 1:
        raise PlannerError("zero", "FSDP shards gradients and states together (zero 2: SHARD_GRAD_OP) or "
                                   "everything (zero 3: FULL_SHARD); accepted with engine fsdp: 0, 2, 3")
    if req.num_generations is not None:
        _check_int("num_generations", req.num_generations, 1, 1024)
    if req.completion_len is not None:
        _check_int("completion_len", req.completion_len, 1, req.seq_len)
    return model


# --- copies ---------------------------------------------------------------------------------------


def _active_options(req: PlanRequest, profile: MethodProfile) -> set[str]:
    opts = set()
    if req.lora_rank:
        opts.add("lora")
    if req.precompute_ref:
        opts.add("precompute_ref")
    beta = req.beta if req.beta is not None else profile.default_beta
    if beta is not None and beta == 0:
        opts.add("beta0")
    if req.reward_model == "rule":
        opts.add("rule_reward")
    if req.value_model == "shared":
        opts.add("shared_value")
    if req.judge_model == "api":
        opts.add("api_judge")
    return opts


_DROP_REASONS = {
    "lora": "the policy with its LoRA adapter switched off serves as the reference",
    "precompute_ref": "reference log-probs are computed once before training",
    "beta0": "beta = 0: no KL term, so no reference model",
    "rule_reward": "a rule-based reward function replaces the reward model",
    "shared_value": "the value head shares the policy backbone",
    "api_judge": "the judge is a remote API",
}


def _copy_model(role: str, req: PlanRequest, base: ModelSpec) -> ModelSpec:
    other = {"reward": req.reward_model, "value": req.value_model, "judge": req.judge_model}.get(role)
    if other and other not in ("rule", "shared", "api"):
        return load_model(other)
    return base


@dataclass
class _Copy:
    role: str
    model: ModelSpec
    trainable: bool
    scalar_head: bool
    params: int
    trainable_params: int
    weights: int
    gradients: int
    optimizer_states: int
    lora: bool = False  # LoRA adapters on a frozen base (the request's lora_rank applies to this copy)


def _build_copies(req: PlanRequest, profile: MethodProfile, base: ModelSpec, notes: list[str]) -> list[_Copy]:
    prec = terms.PRECISIONS[req.precision]
    opts = _active_options(req, profile)
    fp32_master = req.zero > 0 and req.engine == "deepspeed" and prec.weight == 2
    out = []
    for c in profile.copies:
        hit = [o for o in c.dropped_by if o in opts]
        if hit:
            notes.append(f"no separate {c.role} model: {_DROP_REASONS[hit[0]]}")
            continue
        m = _copy_model(c.role, req, base)
        quant = req.quant if c.peft else None
        if c.scalar_head:
            params = terms.scalar_head_params(m)
            weights = terms.scalar_head_weight_bytes(m, prec.weight, quant)
        else:
            params = m.params_total
            weights = terms.weight_bytes(m, prec.weight, quant)
        if quant and kbit_upcast(req):
            weights += terms.kbit_upcast_bytes(m, c.scalar_head)
        grads = states = trainable = 0
        lora = bool(req.lora_rank) and c.peft
        if c.trainable and req.lora_rank and not lora:
            notes.append(f"the {c.role} model trains in full: the runner puts LoRA on the policy only")
        if c.trainable:
            if lora:
                trainable = terms.lora_params(m, req.lora_rank, req.lora_targets)
                head = m.hidden_size if c.scalar_head else 0  # the score head trains in full
                weights += trainable * terms.LORA_ADAPTER_BYTES
                grads = trainable * terms.LORA_ADAPTER_BYTES + head * prec.grad
                ada = (terms.lora_adafactor_state_elems(m, req.lora_rank, req.lora_targets)
                       if req.optimizer == "adafactor" else None)
                states = terms.optimizer_state_bytes(trainable, req.optimizer, terms.LORA_ADAPTER_BYTES,
                                                     adafactor_elems=ada)
                states += terms.optimizer_state_bytes(head, req.optimizer, prec.state)
                states += head * _compensation(req, prec, fp32_master)
                trainable += head
            else:
                trainable = params
                grads = terms.gradient_bytes(trainable, prec.grad)
                ada = terms.adafactor_state_elems(m) if req.optimizer == "adafactor" else None
                states = terms.optimizer_state_bytes(trainable, req.optimizer, prec.state, fp32_master, ada)
                states += trainable * _compensation(req, prec, fp32_master)
        out.append(_Copy(c.role, m, c.trainable, c.scalar_head, params, trainable, weights, grads, states, lora))
    if fp32_master and not req.lora_rank:
        notes.append("DeepSpeed under bf16 keeps an fp32 master copy with fp32 Adam moments: 12 bytes per trainable parameter")
    return out


def kbit_upcast(req: PlanRequest) -> bool:
    """Whether the non-quantized parameters are fp32 (terms.kbit_upcast_bytes): the request's, else
    the runner's (it calls prepare_model_for_kbit_training on every quantized model)."""
    return bool(req.quant) if req.kbit_upcast is None else req.kbit_upcast


def _compensation(req: PlanRequest, prec: terms.PrecisionPolicy, fp32_master: bool) -> int:
    """Bytes per trainable parameter of a Kahan compensation buffer: bf16-kahan's AdamW keeps one;
    DeepSpeed's fp32 master copy replaces it, and another optimizer runs without it (as the runner does)."""
    return prec.compensation if req.optimizer == "adamw" and not fp32_master else 0


# --- one stage ------------------------------------------------------------------------------------


def _per_gpu(total: int, world: int, sharded: bool) -> int:
    """Per-GPU share of a model state (ZeRO paper, Rajbhandari et al. 2020, §5: stage 1 shards
    optimizer states, 2 also gradients, 3 also parameters; frozen copies are sharded by ZeRO-3 too)."""
    return math.ceil(total / world) if sharded else total


@dataclass
class _Stage:
    """What every phase of one stage reads: the request, the copies held and the per-GPU memory
    that is there in every phase."""

    req: PlanRequest
    profile: MethodProfile
    base: ModelSpec
    copies: list[_Copy]
    notes: list[str]
    static: dict[str, int]  # weights + optimizer states per GPU: held in every phase
    gradients: int  # every gradient per GPU, DDP's bucket copy included
    tokens: int  # tokens one training micro-batch puts through each trainable copy

    @property
    def completion_tokens(self) -> int:
        """Generated tokens in one training micro-batch (completion_len per sequence)."""
        completion = self.req.completion_len or self.req.seq_len // 2
        return self.req.batch_size * self.profile.sequences_per_example * completion

    @property
    def prec(self) -> terms.PrecisionPolicy:
        return terms.PRECISIONS[self.req.precision]

    @property
    def trainables(self) -> list[_Copy]:
        return [c for c in self.copies if c.trainable]

    @property
    def frozen(self) -> list[_Copy]:
        return [c for c in self.copies if not c.trainable]

    @property
    def loss(self) -> str:
        """fused | chunked | materialised (resolved_loss)."""
        return resolved_loss(self.req, self.profile)

    @property
    def fused(self) -> bool:
        """The loss runs through a fused LM head (TRL 1.16's, or --loss fused)."""
        return self.loss == "fused"

    @property
    def unmaterialised(self) -> bool:
        """No full T x V logits (fused or chunked): the loss keeps the head's input hidden states itself."""
        return self.loss != "materialised"

    def share(self, total: int, sharded: bool) -> int:
        return _per_gpu(total, self.req.gpus * self.req.nodes, sharded)

    def layer_activations(self, m: ModelSpec, tokens: int, lora: bool = True) -> int:
        """One layer's saved activations; lora=False: a copy trained in full under a LoRA request."""
        req = self.req
        dropout = 0.0 if self.profile.disables_dropout else req.lora_dropout
        return terms.activation_bytes_per_layer(
            m, tokens, self.prec.act, self.prec.residual, req.seq_len if m.model_type == "gemma2" else None,
            seq_len=req.seq_len, lora_rank=req.lora_rank if lora else None, lora_dropout=dropout,
            lora_targets=req.lora_targets)

    def whole_reference(self, c: _Copy) -> bool:
        """FSDP2 stage 3: TRL's prepare_fsdp shards the reference model as one unit (one fully_shard
        on its root, no per-layer wrap), so its forward gathers all of it at once."""
        return self.req.engine == "fsdp" and self.req.zero == 3 and c.role == "reference"


def _context_len(req: PlanRequest, profile: MethodProfile) -> int:
    """One sequence's context, from the profile: seq_len-long texts plus completion_len-long generations."""
    completion = req.completion_len or req.seq_len // 2
    return profile.generated_context_seq_lens * req.seq_len + profile.generated_context_completions * completion


def _generation_memory(st: _Stage) -> dict[str, int]:
    """The larger of the prefill (the KV cache of the prompts, one layer's no-grad forward over all
    their tokens at once) and the last step (the KV cache of the sequences generated at once + the
    last token's logits and one layer's activations)."""
    req, profile = st.req, st.profile
    model = st.copies[0].model if st.copies else st.base
    completion = req.completion_len or req.seq_len // 2
    tokens = _context_len(req, profile)
    per_example = (req.num_generations or profile.default_generations) if profile.kv_cache_holds_all_generations else 1
    seqs = (req.rollout_batch_size or req.batch_size) * per_example
    kv = terms.kv_cache_bytes(model, tokens, seqs, st.prec.act)
    transient = seqs * model.vocab_size * 4 + st.layer_activations(model, seqs)
    prompt = max(tokens - completion, 0)  # what the prefill reads: the context before the new tokens
    prefill = {"kv_cache": terms.kv_cache_bytes(model, prompt, seqs, st.prec.act),
               "activations": terms.inference_layer_bytes(model, seqs * prompt, st.prec.act)}
    st.notes.append(f"generation: KV cache for {seqs} sequences x {tokens} tokens (prompt + {completion} new tokens)")
    last = {"kv_cache": kv, "activations": transient}
    return {**st.static, **max((last, prefill), key=lambda m: sum(m.values()))}


def _scoring_memory(st: _Stage) -> dict[str, int] | None:
    """The largest single no-grad forward: reference/reward/value log-probs, and, where the profile
    says so, the trainable copies' (RL's old log-probs, KTO's KL batch). Each forward frees its
    layer activations as it goes; the logits remain. None when nothing scores.
    completion_logprobs (our PPO): the logits moment comes after the layers' transients are gone
    (terms.completion_logprob_scoring_bytes; the trainable policy's adds its entropy)."""
    scorers = st.frozen + (st.trainables if st.profile.scores_trainable_copies else [])
    if not scorers:
        return None
    e, weights = st.prec.act, st.static["weights"]
    worst = {"weights": weights, "activations": 0, "logits": 0, "kv_cache": 0}
    for c in scorers:
        act = st.layer_activations(c.model, st.tokens, c.lora)
        if st.profile.completion_logprobs:
            lg = 0 if c.scalar_head else terms.completion_logprob_scoring_bytes(
                st.tokens, st.completion_tokens, c.model.vocab_size, e, entropy=c.trainable)
            candidates = [{"weights": weights, "activations": act, "logits": 0},
                          {"weights": weights, "activations": 0, "logits": lg}]
        else:
            raw = st.profile.scoring_reads_raw_logits
            if c.scalar_head:
                lg = 0
            elif st.loss == "chunked":
                lg = terms.chunked_inference_logits_bytes(st.tokens, c.model.vocab_size, c.model.hidden_size, e,
                                                          log_softmax=not raw)
            else:
                lg = terms.inference_logits_bytes(st.tokens, c.model.vocab_size, c.model.hidden_size, e, st.fused,
                                                  log_softmax=not raw)
            if raw:  # the layers' transients are gone when the logits form beside the final norm's output
                candidates = [{"weights": weights, "activations": terms.inference_layer_bytes(c.model, st.tokens, e),
                               "logits": 0},
                              {"weights": weights, "activations": st.tokens * c.model.hidden_size * e, "logits": lg}]
            else:
                candidates = [{"weights": weights, "activations": act, "logits": lg}]
            if st.profile.scoring_keeps_kv_cache:  # the forward's own use_cache: every token's keys and values
                kv = terms.kv_cache_bytes(c.model, st.tokens, 1, e)
                candidates = [{**cand, "kv_cache": kv} for cand in candidates]
        if st.whole_reference(c):
            # FSDP2's all-gather fills one flat buffer with every rank's shard, then copies it out
            # into the unsharded parameters (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py,
            # foreach_all_gather_copy_out): for that moment the whole reference is there twice,
            # beside its own shard (or, offloaded, instead of it). The forward then runs on one copy.
            # Modelled from the code; not yet measured on a GPU.
            candidates = [{"weights": weights + 2 * c.weights, "activations": 0, "logits": 0},
                          {"weights": weights + c.weights, "activations": act, "logits": lg}]
        for cand in candidates:
            if sum(cand.values()) > sum(worst.values()):
                worst = cand
    return {**st.static, **worst}


def _layer_saved_bytes(st: _Stage, c: _Copy) -> int:
    """What one decoder layer of a trainable copy keeps from its forward to its backward: its input
    under gradient checkpointing, else all it saves."""
    if st.req.grad_ckpt:
        return terms.checkpointed_layer_bytes(c.model, st.tokens, st.prec.residual)
    return st.layer_activations(c.model, st.tokens, c.lora)


def _saved_activations(st: _Stage, c: _Copy) -> tuple[int, int]:
    """(what a trainable copy's forward saves for backward, one recomputed layer under checkpointing)."""
    req, prec = st.req, st.prec
    e, r = prec.act, prec.residual
    m = c.model
    recompute = st.layer_activations(m, st.tokens, c.lora) if req.grad_ckpt else 0
    per_layer = _layer_saved_bytes(st, c)
    if req.activation_offload:
        acts, _ = terms.offloaded_activation_bytes(per_layer, m.num_layers)
    else:
        acts = m.num_layers * per_layer
    acts += terms.final_norm_bytes(m, st.tokens, e, r, frozen=c.lora,
                                   head_saves_input=c.scalar_head or not (c.lora or st.unmaterialised))
    if r != e:  # autocast: the linears save bf16 casts of their weights
        acts += terms.autocast_weight_copy_bytes(m, e, req.grad_ckpt, include_head=not (st.unmaterialised or c.scalar_head))
    return acts, recompute


def _head_grad_bytes(st: _Stage, c: _Copy) -> int:
    """The LM head's (or tied embedding's) gradient, per GPU; 0 when the head is frozen (LoRA)."""
    if c.lora:
        return 0
    head = c.model.lm_head_params or c.model.params_by_kind().get("embedding", 0)
    if st.req.optimizer_in_backward:  # stepped and freed at once: never more than the largest gradient
        return min(head * st.prec.grad, st.gradients)
    return st.share(head * st.prec.grad, st.req.zero >= 2)


def _forward_backward_memory(st: _Stage) -> dict[str, int]:
    """The larger of backward's start (every saved activation, the logits and the LM head's early
    gradient) and its end (all gradients); the trainable copies' activations coexist (PPO's policy
    and value share one backward)."""
    if st.profile.completion_logprobs:
        return _completion_forward_backward_memory(st)
    e, r = st.prec.act, st.prec.residual
    acts = logits = head_grads = recompute = 0
    for c in st.trainables:
        m = c.model
        saved, again = _saved_activations(st, c)
        acts += saved
        recompute = max(recompute, again)
        if c.scalar_head:
            continue
        if st.loss == "fused":
            logits += terms.fused_logits_bytes(st.tokens, m.vocab_size, m.hidden_size, e, not c.lora, r)
        elif st.loss == "chunked":
            logits += terms.chunked_logits_bytes(st.tokens, m.vocab_size, m.hidden_size, e)
        else:
            logits += terms.logits_bytes(st.tokens, m.vocab_size)
        if st.unmaterialised:
            # The fused (or chunked) loss hands the LM head (or tied embedding) its gradient
            # first, while every activation is still held. (A materialised loss frees its
            # 12 T V bytes before the head's gradient is formed.)
            head_grads += _head_grad_bytes(st, c)
    end = st.gradients + recompute  # backward ends: activations freed, all gradients written
    if st.loss == "materialised" and recompute:
        # A materialised loss's 12 T V bytes are freed with the loss's backward, before checkpointing
        # recomputes the last layer (the MemTracker traces of bench/calibrate.py: ORPO LoRA 1.10 -> 1.00),
        # so the logits and the recomputed layer are two moments, not one.
        loss_moment = {"activations": acts, "logits": logits, "gradients": head_grads}
        layer_moment = {"activations": acts + recompute, "logits": 0, "gradients": head_grads}
        start_comps = max(loss_moment, layer_moment, key=lambda c: sum(c.values()))
    else:  # the fused/chunked head's backward: traced with the recomputed layer's moment (bench/calibrate.py)
        start_comps = {"activations": acts + recompute, "logits": logits, "gradients": head_grads}
    if sum(start_comps.values()) >= end:
        comps = start_comps
    else:
        comps = {"activations": recompute, "logits": 0, "gradients": st.gradients}
    return {**st.static, **comps}


def _completion_forward_backward_memory(st: _Stage) -> dict[str, int]:
    """Our PPO update (profile.completion_logprobs): the policy, then the value model, run forward on
    one micro-batch, and one backward goes through both. The largest of these moments:
      the end of copy i's forward:  the saved activations of copies 0..i + its log-probs' forward
      backward starts:              every saved activation + the saved log-softmax
      copy i's loss backward:       autograd runs the later forward's nodes first, so the copies
                                    after i have finished theirs: their gradients are written and
                                    their activations freed; copy i's log-probs' backward
      backward ends:                every gradient
    (+ one recomputed layer under gradient checkpointing). terms.completion_logprob_training_bytes."""
    e = st.prec.act
    copies = st.trainables
    saved = [_saved_activations(st, c) for c in copies]
    recompute = max((again for _, again in saved), default=0)
    acts = [a for a, _ in saved]
    lp = [None if c.scalar_head else terms.completion_logprob_training_bytes(
        st.tokens, st.completion_tokens, c.model.vocab_size, c.model.hidden_size, e, _head_grad_bytes(st, c))
        for c in copies]
    kept = [x.saved if x else 0 for x in lp]
    moments = [{"activations": sum(acts) + recompute, "logits": sum(kept), "gradients": 0},
               {"activations": recompute, "logits": 0, "gradients": st.gradients}]
    for i, x in enumerate(lp):
        if x is None:
            continue
        moments.append({"activations": sum(acts[:i + 1]), "logits": sum(kept[:i]) + x.forward, "gradients": 0})
        later_grads = sum(st.share(c.gradients, st.req.zero >= 2) for c in copies[i + 1:])
        moments.append({"activations": sum(acts[:i + 1]) + recompute, "logits": sum(kept[:i]) + x.backward,
                        "gradients": later_grads})
    return {**st.static, **max(moments, key=lambda m: sum(m.values()))}


def _optimizer_step_memory(st: _Stage) -> dict[str, int]:
    """Every gradient, read by the optimizer and then freed."""
    return {**st.static, "gradients": st.gradients}


# What each phase holds beyond the static memory; a profile's phases are walked in its order.
_PHASE_MEMORY = {
    "generation": _generation_memory,
    "scoring": _scoring_memory,
    "forward_backward": _forward_backward_memory,
    "optimizer_step": _optimizer_step_memory,
}


def _stage_phases(req: PlanRequest, profile: MethodProfile, base: ModelSpec, notes: list[str]):
    prec = terms.PRECISIONS[req.precision]
    world = req.gpus * req.nodes
    copies = _build_copies(req, profile, base, notes)
    z = req.zero
    offload_opt = req.offload in ("optimizer", "params")
    offload_params = req.offload == "params"

    weights = sum(_per_gpu(c.weights, world, z == 3) for c in copies)
    states = sum(_per_gpu(c.optimizer_states, world, z >= 1) for c in copies)
    grads_all = sum(_per_gpu(c.gradients, world, z >= 2) for c in copies)
    host_total = 0
    if offload_opt:
        host_total += sum(c.optimizer_states for c in copies)
        states = 0
    if offload_params:
        host_total += sum(c.weights for c in copies)
        weights = 0
    if z == 3:
        # ZeRO-3 gathers each layer's full parameters before using it (and prefetches the next);
        # the embedding and LM head are gathered whole.
        biggest = max((c.model for c in copies), key=lambda m: m.params_total) if copies else base
        layer = (biggest.params_total - biggest.params_by_kind().get("embedding", 0) - biggest.lm_head_params) // max(
            biggest.num_layers, 1)
        weights += max(2 * layer, biggest.params_by_kind().get("embedding", 0)) * prec.weight
    if world > 1 and z == 0:
        # DDP's gradient buckets are a second copy of the gradients (gradient_as_bucket_view=False,
        # PyTorch's and accelerate's default).
        grads_all += sum(c.gradients for c in copies)
        notes.append("DDP keeps its gradient buckets beside the gradients (a second gradient copy)")

    if req.optimizer_in_backward:
        grads_all = max((terms.largest_gradient_bytes(c.model, prec.grad, req.lora_rank if c.lora else None,
                                                      req.lora_targets, c.scalar_head)
                         for c in copies if c.trainable), default=0)
    st = _Stage(req, profile, base, copies, notes, static={"weights": weights, "optimizer_states": states},
                gradients=grads_all, tokens=req.batch_size * profile.sequences_per_example * _context_len(req, profile))
    if any(st.whole_reference(c) for c in copies):
        notes.append("FSDP2 stage 3: the reference is sharded as one unit (TRL's prepare_fsdp), so scoring "
                     "gathers its whole weights at once, and for a moment holds them twice")

    if req.activation_offload:
        host_total += sum(_layer_saved_bytes(st, c) * c.model.num_layers for c in st.trainables) * world
        notes.append("activation offloading: each layer's saved activations wait in pinned host memory; two "
                     "layers' are on the GPU at a time")
    phases = []
    for name in profile.phases:
        if name == "optimizer_step" and req.optimizer_in_backward:
            continue  # each parameter stepped during the backward (counted there)
        held = _PHASE_MEMORY[name](st)
        if held is not None:
            phases.append({"name": name, "components": held})
    for ph in phases:
        comps = {k: ph["components"].get(k, 0) for k in COMPONENTS if k != "overhead"}
        comps["overhead"] = terms.overhead_bytes(sum(comps.values()))
        ph["components"] = comps
        ph["total_bytes"] = sum(comps.values())
    host_per_node = math.ceil(host_total * req.gpus / world) if host_total else 0
    return copies, phases, st.tokens, host_per_node


def _copy_rows(copies: list[_Copy], req: PlanRequest) -> list[dict[str, Any]]:
    world = req.gpus * req.nodes
    rows = []
    for c in copies:
        rows.append({
            "role": c.role,
            "model": c.model.id,
            "params": c.params,
            "trainable": c.trainable,
            "trainable_params": c.trainable_params,
            "weights_bytes": _per_gpu(c.weights, world, req.zero == 3) if req.offload != "params" else 0,
            "gradients_bytes": _per_gpu(c.gradients, world, req.zero >= 2),
            "optimizer_states_bytes": 0 if req.offload else _per_gpu(c.optimizer_states, world, req.zero >= 1),
        })
    return rows


# --- public API -----------------------------------------------------------------------------------


def _plan_stage(req: PlanRequest, base: ModelSpec) -> Plan:
    profile = get_profile(req.method)
    notes: list[str] = []
    copies, phases, tokens, host = _stage_phases(req, profile, base, notes)
    peak = max(phases, key=lambda p: p["total_bytes"])
    for ph in phases:
        ph["is_peak"] = ph is peak
        ph["stage"] = req.method
    return Plan(
        method=req.method,
        model=base.summary(),
        request=_request_dict(req),
        world_size=req.gpus * req.nodes,
        params_total=base.params_total,
        trainable_params=sum(c.trainable_params for c in copies),
        copies=_copy_rows(copies, req),
        phases=phases,
        peak_phase=peak["name"],
        peak_bytes_per_gpu=peak["total_bytes"],
        components=dict(peak["components"]),
        host_bytes_per_node=host,
        notes=notes,
        loss=resolved_loss(req, profile),
    )


def _request_dict(req: PlanRequest) -> dict[str, Any]:
    d = asdict(req) if not isinstance(req.model, (dict, ModelSpec)) else {**asdict(replace(req, model="custom"))}
    if isinstance(req.model, ModelSpec):
        d["model"] = req.model.id
    return d


def _estimate_peak(req: PlanRequest, base: ModelSpec) -> Plan:
    profile = get_profile(req.method)
    if not profile.stages:
        return _plan_stage(req, base)
    stage_plans = [_plan_stage(req.replace(method=s), base) for s in profile.stages]
    peak = max(stage_plans, key=lambda p: p.peak_bytes_per_gpu)
    plan = Plan(
        method=req.method, model=base.summary(), request=_request_dict(req), world_size=peak.world_size,
        params_total=base.params_total, trainable_params=max(p.trainable_params for p in stage_plans),
        copies=peak.copies, phases=[ph for p in stage_plans for ph in p.phases], peak_phase=f"{peak.method}:{peak.peak_phase}",
        peak_bytes_per_gpu=peak.peak_bytes_per_gpu, components=peak.components,
        host_bytes_per_node=max(p.host_bytes_per_node for p in stage_plans),
        stages=[{"stage": p.method, "peak_bytes_per_gpu": p.peak_bytes_per_gpu, "peak_phase": p.peak_phase,
                 "copies": p.copies} for p in stage_plans],
        notes=[f"{profile.name} runs in stages ({' -> '.join(profile.stages)}); the peak is the largest stage"]
        + [n for p in stage_plans for n in p.notes],
        loss=peak.loss,
    )
    for ph in plan.phases:
        ph["is_peak"] = ph["stage"] == peak.method and ph["name"] == peak.peak_phase
    return plan


def min_gpus_for(req: PlanRequest, gpu: str, base: ModelSpec | None = None) -> dict[str, int] | None:
    """The fewest GPUs of this type that fit: 1 with the requested setup, else ZeRO-3 (or the
    requested stage if higher) over N GPUs. Per-GPU memory never grows with N under ZeRO-3, so a
    binary search finds N. None when even MAX_GPUS do not fit (activations alone are too big)."""
    base = base or load_model(req.model)
    cap = get_gpu(gpu).usable_bytes

    def fits(n: int, zero: int) -> bool:
        r = req.replace(gpu=None, gpus=min(n, 8), nodes=math.ceil(n / 8) if n > 8 else 1, zero=zero,
                        offload=req.offload if zero == 3 or req.offload != "params" else None)
        if n > 8 and n % 8:
            return False
        return _estimate_peak(r, base).peak_bytes_per_gpu <= cap

    if fits(1, req.zero):
        return {"count": 1, "zero": req.zero}
    if req.optimizer_in_backward:  # one GPU only (validate)
        return None
    zero = max(req.zero, 3)
    candidates = list(range(2, 9)) + [8 * k for k in range(2, MAX_GPUS // 8 + 1)]
    if not fits(candidates[-1], zero):
        return None
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid], zero):
            hi = mid
        else:
            lo = mid + 1
    return {"count": candidates[lo], "zero": zero}


_LOSS_WORDS = {"fused": "fused LM head, no T x V logits", "chunked": "chunked cross-entropy",
               "materialised": "materialised fp32 logits"}


def _assumptions(req: PlanRequest, plan: Plan) -> tuple[str, dict[str, Any]]:
    """What a figure is never read without: the trainer modelled, the loss, precision and optimizer,
    checkpointing, sharding, offloads and savers, and micro-batch x sequence length."""
    profile = get_profile(req.method)
    stages = [get_profile(s) for s in profile.stages] or [profile]
    trainer = " -> ".join(dict.fromkeys(p.trainer for p in stages if p.trainer))
    default = all(resolved_loss(req.replace(method=p.id), p) == p.default_loss for p in stages)
    sharding = "none" if not req.zero else f"ZeRO-{req.zero} ({req.engine})"
    offloads = [req.offload] if req.offload else []
    offloads += ["activations"] * req.activation_offload
    d = {"trainer": trainer, "loss": plan.loss, "loss_is_trainer_default": default, "precision": req.precision,
         "optimizer": req.optimizer, "gradient_checkpointing": req.grad_ckpt, "sharding": sharding,
         "gpus": plan.world_size, "offloads": offloads, "optimizer_in_backward": req.optimizer_in_backward, "micro_batch": req.batch_size, "seq_len": req.seq_len,
         "lora_rank": req.lora_rank, "quant": req.quant, "kbit_upcast": kbit_upcast(req) if req.quant else None}
    parts = [f"Assumes {trainer}" if trainer else "Assumes",
             f"loss {plan.loss} ({_LOSS_WORDS[plan.loss]}{'' if default else ', not the trainer default'})",
             f"{req.precision}, {req.optimizer}"
             + (f", LoRA r={req.lora_rank}" if req.lora_rank else "")
             + (f", {req.quant}" + (" + fp32 non-quantized params" if kbit_upcast(req) else "") if req.quant else ""),
             f"grad ckpt {'on' if req.grad_ckpt else 'off'}",
             f"sharding {sharding} over {plan.world_size} GPU(s)",
             "offload: " + (", ".join(offloads) if offloads else "none")
             + (" + optimizer in backward" if req.optimizer_in_backward else ""),
             f"micro-batch {req.batch_size} x {req.seq_len} tokens"]
    return "; ".join(parts), d


def estimate(req: PlanRequest, with_min_gpus: bool = True) -> Plan:
    """Plan one method for one setup: per-GPU peak, its breakdown, fit and the minimum GPU counts."""
    base = validate(req)
    plan = _estimate_peak(req, base)
    plan.assumptions, plan.assumed = _assumptions(req, plan)
    if req.gpu is not None:
        g = get_gpu(req.gpu)
        plan.gpu = g.id
        plan.gpu_memory_bytes = g.usable_bytes
        plan.fits = plan.peak_bytes_per_gpu <= g.usable_bytes
        plan.headroom_bytes = g.usable_bytes - plan.peak_bytes_per_gpu
        if not g.bf16 and "bf16" in req.precision:
            plan.notes.append(f"{g.id} has no bf16 support: train in fp16 with loss scaling or fp32 (precision fp32)")
    if with_min_gpus:
        for gid in GPUS:
            detail = min_gpus_for(req, gid, base)
            plan.min_gpus[gid] = detail["count"] if detail else None
            plan.min_gpus_detail[gid] = detail
    return plan


def compare(req: PlanRequest, methods: list[str] | tuple[str, ...], with_min_gpus: bool = True) -> dict[str, Plan]:
    """The same setup planned for several methods, in the order given. A method whose trainer cannot
    take the requested loss (PPO's materialises its logits) is planned with its own, and says so."""
    if not methods:
        raise PlannerError("compare", f"give at least one method; accepted: {', '.join(METHOD_IDS)}")
    plans = {}
    for m in methods:
        profile = get_profile(m)
        if req.loss not in (None, "materialised") and profile.completion_logprobs:
            plan = estimate(req.replace(method=m, loss=None), with_min_gpus=with_min_gpus)
            plan.notes.append(f"loss: {req.loss} is not available for {profile.name} (our trainer takes "
                              f"log-probs from materialised logits); planned with {plan.loss}")
            plans[m] = plan
        else:
            plans[m] = estimate(req.replace(method=m), with_min_gpus=with_min_gpus)
    return plans
