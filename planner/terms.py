"""Memory terms. Each function computes one quantity in bytes, with its formula and source.

Notation: P parameters, T tokens in a micro-batch (sequences x sequence length), h hidden size,
I MLP width, V vocabulary, L layers, e bytes per activation element (2 for bf16), r bytes per
element of the residual stream (2 under pure bf16, 4 when fp32 weights run under bf16 autocast).
docs/memory.md works these through by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.models import ModelSpec

GIB = 2**30

# --- precision policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionPolicy:
    """What the runner actually does with dtypes; the planner models exactly that.

    weight: bytes per parameter as loaded; grad: bytes per gradient element (same dtype as the
    parameter in PyTorch); state: bytes per Adam moment (torch's AdamW keeps moments in the
    parameter's dtype); act: bytes per activation element (the autocast or parameter dtype);
    residual: bytes per element of the residual stream between layers. compensation: bytes per
    trainable parameter of the optimizer's Kahan compensation buffer (torch-optimi's AdamW keeps one
    in the parameter's dtype for bf16 parameters; counted with the optimizer states, AdamW only).
    """

    id: str
    weight: int
    grad: int
    state: int
    act: int
    residual: int
    description: str
    compensation: int = 0


PRECISIONS: dict[str, PrecisionPolicy] = {
    p.id: p
    for p in [
        PrecisionPolicy(
            "bf16-kahan", 2, 2, 2, 2, 2,
            "weights loaded in bf16 and trained without autocast; torch-optimi's AdamW with Kahan "
            "summation: moments and a compensation buffer in bf16 (2 + 2 + 4 + 2 = 10 bytes per trainable "
            "parameter); keeps updates that pure bf16 rounds away. The runners' default on a GPU.",
            compensation=2,
        ),
        PrecisionPolicy(
            "bf16", 2, 2, 2, 2, 2,
            "pure bf16: weights loaded in bf16 and trained without autocast; torch's AdamW with moments "
            "in bf16 (2 + 2 + 4 = 8 bytes per trainable parameter); loses most updates below lr ~1e-4.",
        ),
        PrecisionPolicy(
            "amp-bf16", 4, 4, 4, 2, 4,
            "fp32 weights with bf16 autocast; fp32 gradients and AdamW moments (4 + 4 + 8 = 16 bytes "
            "per trainable parameter); matmul inputs are cast to bf16.",
        ),
        PrecisionPolicy(
            "fp32", 4, 4, 4, 4, 4,
            "everything in fp32 (16 bytes per trainable parameter); the runners' default on CPU.",
        ),
    ]
}

# --- weights --------------------------------------------------------------------------------------

NF4_BLOCK = 64  # QLoRA: one absmax constant per 64 weights
NF4_DQ_BLOCK = 256  # double quantization: one fp32 constant per 256 first-level constants


def nf4_bytes_per_param(double_quant: bool = True) -> float:
    """NF4 storage per weight: 4 bits + quantization constants (Dettmers et al. 2023, QLoRA §3).

    Without double quantization each block of 64 weights has one fp32 absmax: 0.5 + 4/64 bytes
    (4.5 bits). With it the absmax values are stored in 8 bits plus one fp32 constant per 256 of
    them: 0.5 + 1/64 + 4/(64*256) bytes (4.127 bits).
    """
    if double_quant:
        return 0.5 + 1 / NF4_BLOCK + 4 / (NF4_BLOCK * NF4_DQ_BLOCK)
    return 0.5 + 4 / NF4_BLOCK


def int8_weight_bytes(in_features: int, out_features: int) -> float:
    """LLM.int8 storage of one linear weight: 1 byte per weight + one fp32 scale per output row
    (Dettmers et al. 2022)."""
    return in_features * out_features + 4 * out_features


QUANTIZED_KINDS = ("linear", "expert")  # bitsandbytes replaces nn.Linear; embeddings, lm_head, norms stay 16-bit


def weight_bytes(model: ModelSpec, dtype_bytes: int, quant: str | None = None) -> int:
    """Bytes of one copy's parameters: sum over tensors of numel x bytes per element.

    quant nf4/int8 applies to linear layers only; embeddings, the LM head, norms and biases stay
    in 16-bit (QLoRA paper §3; bitsandbytes skips lm_head by default).
    """
    total = 0.0
    for t in model.tensors():
        if quant and t.kind in QUANTIZED_KINDS:
            if quant == "nf4":
                total += t.total * nf4_bytes_per_param()
            else:
                total += int8_weight_bytes(t.in_features, t.out_features) * t.count
        else:
            total += t.total * (2 if quant else dtype_bytes)
    return int(total)


def scalar_head_params(model: ModelSpec) -> int:
    """A reward/value model: the LM head (V x h) replaced by a score head (h x 1)."""
    return model.params_total - model.lm_head_params + model.hidden_size


def scalar_head_weight_bytes(model: ModelSpec, dtype_bytes: int, quant: str | None = None) -> int:
    lm_head = model.lm_head_params * (2 if quant else dtype_bytes)
    return weight_bytes(model, dtype_bytes, quant) - lm_head + model.hidden_size * dtype_bytes


def kbit_upcast_bytes(model: ModelSpec, scalar_head: bool = False) -> int:
    """peft's prepare_model_for_kbit_training (which our runner calls on every quantized model,
    runners/recipes/common.py load_model) casts every 16-bit parameter that is not quantized to fp32:
    the norms, the embeddings, the LM head, biases (peft/utils/other.py: bf16/fp16 parameters that
    are not Params4bit; LLM.int8 weights are int8, so untouched). Extra bytes over weight_bytes'
    16-bit count, (4 - 2) per such parameter:
        2 x (P - P_quantized)          (a score head: the LM head replaced by h)"""
    kept = sum(t.total for t in model.tensors() if t.kind not in QUANTIZED_KINDS)
    if scalar_head:
        kept += model.hidden_size - model.lm_head_params
    return 2 * kept


# --- LoRA -----------------------------------------------------------------------------------------

LORA_TARGETS = {
    # PEFT's "all-linear": every linear layer except the output head.
    "all-linear": None,
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn", "attn_c_proj", "out_proj"),
}


def lora_target_tensors(model: ModelSpec, targets: str = "all-linear"):
    """The tensors PEFT puts adapters on. "all-linear" (peft 0.21 with transformers 5): every
    nn.Linear but the output head, including an MoE router, and the fused MoE expert parameters
    (E x out x in), which peft wraps with ParamWrapper."""
    wanted = LORA_TARGETS.get(targets)
    for t in model.tensors():
        if t.kind not in ("linear", "router", "expert"):
            continue
        if wanted is None or t.name in wanted:
            yield t


def _lora_rank_multiplier(t) -> int:
    # peft's ParamWrapper gives the fused gate/up expert parameter rank 2 r per expert (gate and up)
    return 2 if t.name == "expert_gate_up" else 1


def lora_params(model: ModelSpec, rank: int, targets: str = "all-linear") -> int:
    """LoRA adapter parameters: r x (in + out) per targeted matrix (Hu et al. 2021): A is r x in,
    B is out x r. MoE experts (ParamWrapper): r E (in + out) per expert parameter, 2 r E (in + out)
    for the fused gate/up one (measured: tests/planner/test_model_states.py)."""
    return sum(rank * _lora_rank_multiplier(t) * (t.in_features + t.out_features) * t.count
               for t in lora_target_tensors(model, targets))


def lora_adafactor_state_elems(model: ModelSpec, rank: int, targets: str = "all-linear") -> int:
    """Adafactor's factored second moment over the LoRA adapters: A (R x in) keeps R + in values,
    B (out x R) keeps out + R, with R = r for a linear. peft's ParamWrapper gives the experts of a
    layer one A (r E x in, 2 r E for the fused gate/up) and one B (out x that), so per layer
    R = r x multiplier x E. Measured in tests/planner/test_model_states.py."""
    total = 0
    for t in lora_target_tensors(model, targets):
        experts = model.num_experts if t.kind == "expert" else 1
        matrices = t.count // experts  # one adapter pair per layer, whatever the number of experts
        inner = rank * _lora_rank_multiplier(t) * experts
        total += (2 * inner + t.in_features + t.out_features) * matrices
    return total


LORA_ADAPTER_BYTES = 4  # PEFT upcasts bf16/fp16 adapters to fp32 (autocast_adapter_dtype=True)


DROPOUT_MASK_BYTES = 1  # CUDA's fused native_dropout saves a bool mask; CPU's keeps a float noise tensor


def linear_input_bytes(tokens: int, width: int, readers: int, act: int, residual: int, input_bytes: int,
                       saved_already: bool = False, lora_targeted: int | None = None,
                       lora_dropout: float = 0.0, mask_bytes: int = DROPOUT_MASK_BYTES) -> int:
    """What the linears reading one tensor X (T x width, input_bytes per element) save of it.

    Full fine-tune (lora_targeted None): each linear saves its input for its weight gradient. They
    share X when it already has the compute dtype; under autocast each linear reading an fp32 X
    saves its own bf16 cast (autocast caches casts of weights only): readers x e.
    LoRA: the frozen base linear saves nothing of X; lora_A saves its input (peft LoraLayer.forward):
      without autocast PEFT casts X to the adapter dtype (a = LORA_ADAPTER_BYTES); with dropout the
      dropout's output (a) and mask (mask_bytes: 1 on CUDA; on CPU torch's unfused dropout keeps
      its noise in the input dtype, 4) are saved, one per targeted linear; without dropout the
      cast (a), or X itself, shared, when X already has the adapter dtype;
      under autocast each lora_A saves its bf16 cast (e) (+ the dropout mask).
    saved_already: X is saved by another op anyway (SDPA's output), so sharing it costs nothing.
    """
    x = tokens * width
    if lora_targeted is None:
        if input_bytes == act:
            return 0 if saved_already else x * act
        return readers * x * act
    if lora_targeted == 0:
        return 0
    drop = mask_bytes if lora_dropout > 0 else 0
    if residual != act:
        return lora_targeted * x * (act + drop)
    if input_bytes == LORA_ADAPTER_BYTES and not drop:
        return 0 if saved_already else x * input_bytes
    return lora_targeted * x * (LORA_ADAPTER_BYTES + drop)


def lora_activation_bytes_per_layer(model: ModelSpec, tokens: int, rank: int, dropout: float, act: int,
                                    targets: str = "all-linear", residual: int | None = None) -> int:
    """What the LoRA branches themselves save per decoder layer: lora_B saves lora_A's output,
    T x r per targeted matrix, in the adapter dtype (fp32), or bf16 under autocast. The inputs lora_A
    saves are counted where the layer reads them (linear_input_bytes), since with a frozen base
    they replace what the base linears would save."""
    a = act if residual is not None and residual != act else LORA_ADAPTER_BYTES
    matrices = sum(t.count for t in lora_target_tensors(model, targets) if t.kind == "linear")
    return matrices // max(model.num_layers, 1) * tokens * rank * a


def lora_expert_delta_bytes(model: ModelSpec, rank: int, act: int, targets: str = "all-linear") -> int:
    """peft's ParamWrapper cannot apply LoRA to an expert parameter as x -> B(A(x)): it builds the
    weight plus delta B A (E x out x in) in the compute dtype on every forward, and the expert
    matmuls save it for backward, with the e-byte casts of A and B (when e is not the adapters'
    fp32). Per layer a full copy of the expert weights:
        e x (expert params [+ their LoRA params]) / L
    transformers 5's MoE router is a parameter module too, wrapped the same way (E x h). peft also
    refuses lora_dropout > 0 there. Measured on CPU (tests/planner/test_activations.py)."""
    experts = [t for t in lora_target_tensors(model, targets) if t.kind != "linear"]
    cast_ab = act != LORA_ADAPTER_BYTES  # A and B are cast to the compute dtype (and saved) only when it differs
    total = sum(t.total + (rank * _lora_rank_multiplier(t) * (t.in_features + t.out_features) * t.count
                           if t.kind == "expert" and cast_ab else 0) for t in experts)
    return act * total // max(model.num_layers, 1)


# --- gradients and optimizer states ---------------------------------------------------------------


def largest_gradient_bytes(model: ModelSpec, grad_bytes: int, lora_rank: int | None = None,
                           targets: str = "all-linear", scalar_head: bool = False) -> int:
    """Optimizer in backward (torchtune's optimizer_in_bwd, torchtune/training/memory.py
    register_optim_in_bwd_hooks): each parameter's optimizer steps in a post-accumulate-grad hook as
    soon as its gradient is complete, and the gradient is freed, so at most one parameter's gradient
    is alive: the largest one,  max_tensor numel x grad_bytes. LoRA: the largest adapter matrix in
    fp32 (r x max(in, out), r E for an expert's; a score head's h x grad_bytes)."""
    if lora_rank:
        big = max((lora_rank * _lora_rank_multiplier(t) * (model.num_experts if t.kind == "expert" else 1)
                   * max(t.in_features, t.out_features) for t in lora_target_tensors(model, targets)), default=0)
        return max(big * LORA_ADAPTER_BYTES, model.hidden_size * grad_bytes if scalar_head else 0)
    sizes = [t.numel for t in model.tensors() if not (scalar_head and t.kind == "lm_head")]
    return max(max(sizes, default=0), model.hidden_size if scalar_head else 0) * grad_bytes


def gradient_bytes(trainable_params: int, grad_bytes: int) -> int:
    """One gradient per trainable parameter, in the parameter's dtype (PyTorch autograd)."""
    return trainable_params * grad_bytes


OPTIMIZERS = ("adamw", "adamw-8bit", "adafactor", "sgd")


def adafactor_state_elems(model: ModelSpec) -> int:
    """Adafactor (Shazeer & Stern 2018) with beta1=None, as transformers.optimization.Adafactor keeps
    it: a row and a column second-moment vector for every 2-D (or 3-D expert) parameter, embeddings
    included, the full second moment for vectors; fp32 whatever the parameter dtype (measured in
    tests/planner/test_model_states.py)."""
    total = 0
    for t in model.tensors():
        if t.in_features and t.out_features:
            total += (t.in_features + t.out_features) * t.count
        elif t.kind in ("embedding", "position"):
            width = model.hidden_size
            if t.name == "embed_tokens" and model.family == "opt":
                width = model.config.get("word_embed_proj_dim") or model.hidden_size
            total += (t.numel // width + width) * t.count
        else:
            total += t.total
    return total


def optimizer_state_bytes(trainable_params: int, optimizer: str, state_bytes: int,
                          fp32_master: bool = False, adafactor_elems: int | None = None) -> int:
    """Optimizer memory per trainable parameter.

    adamw: 2 moments (exp_avg, exp_avg_sq) in the parameter dtype (torch.optim.AdamW); with
      fp32_master (DeepSpeed ZeRO under bf16) an fp32 master copy + 2 fp32 moments = 12 bytes,
      the K=12 of the ZeRO paper (Rajbhandari et al. 2020, §3.1).
    adamw-8bit: 2 moments of 1 byte (bitsandbytes; Dettmers et al. 2022, block-wise quantization,
      one fp32 constant per 2048 values per moment).
    adafactor: factored second moment in fp32 (see adafactor_state_elems).
    sgd: no state (momentum 0).
    """
    if optimizer == "adamw":
        return trainable_params * (12 if fp32_master else 2 * state_bytes)
    if optimizer == "adamw-8bit":
        return int(trainable_params * (2 + 2 * 4 / 2048)) + (trainable_params * 4 if fp32_master else 0)
    if optimizer == "adafactor":
        elems = adafactor_elems if adafactor_elems is not None else trainable_params
        return elems * 4 + (trainable_params * 4 if fp32_master else 0)
    if optimizer == "sgd":
        return trainable_params * 4 if fp32_master else 0
    raise ValueError(optimizer)


# --- activations ----------------------------------------------------------------------------------


def korthikanti_layer_bytes(seq: int, batch: int, hidden: int, heads: int) -> int:
    """Korthikanti et al. 2022 (Reducing Activation Recomputation, eq. 1): activations of one GPT
    layer in 16-bit with dropout and eager attention: s*b*h*(34 + 5*a*s/h) bytes. Kept as the
    reference formula; activation_bytes_per_layer adapts it to the models planned here."""
    return seq * batch * hidden * 34 + 5 * heads * seq * seq * batch


def rmsnorm_bytes(tokens: int, hidden: int, residual: int, weight_trainable: bool = True,
                  gemma: bool = False) -> int:
    """What one RMSNorm saves itself (its output is counted by its readers, linear_input_bytes).

    transformers' LlamaRMSNorm: x = input.to(fp32) (pow and mul save it: 4 bytes; under fp32 it is
    the input itself), rsqrt(mean(x^2)) (4 bytes per token), y = (x * rsqrt).to(input dtype), saved
    by `weight * y` for the weight's gradient only (r bytes; nothing when the norm is frozen, LoRA):
        (4 + r) T h + 4 T    trainable,    4 T h + 4 T    frozen
    Gemma2RMSNorm multiplies in fp32 (`normed * (1 + weight.float())`) before casting back: the
    normalised tensor it saves is fp32 (4 instead of r).
    """
    y = (4 if gemma else residual) if weight_trainable else 0
    return (4 + y) * tokens * hidden + 4 * tokens


LAYERNORM_STATS_BYTES = 8  # per token: fp32 mean and rstd (CUDA keeps them in fp32; CPU in the input dtype)


def layernorm_bytes(tokens: int, hidden: int, act: int) -> int:
    """What one LayerNorm saves itself (GPT-2, OPT): its input (e T h; the residual stream) and the
    per-token mean and rstd (LAYERNORM_STATS_BYTES T), with a trainable or frozen weight alike."""
    return act * tokens * hidden + LAYERNORM_STATS_BYTES * tokens


def sdpa_attention_bytes(model: ModelSpec, tokens: int, act: int, seq_len: int = 0, padded: bool = True) -> int:
    """What SDPA attention saves per layer (flash / memory-efficient / CPU flash kernels: no s^2 scores).

    q, k, v after RoPE (RoPE's multiplications save cos/sin, shared by all layers, not q or k);
    the output, e T q (laid out (b, s, heads, d): transformers' transpose().contiguous() is a no-op
    and o_proj reads the same storage); the fp32 log-sum-exp, 4 T a.
    With a padding mask (padded=True, what padded training batches do) transformers' sdpa_attention
    repeats k and v to all heads (repeat_kv: GQA is undone, k and v cost e T q each) and torch
    converts the boolean mask to an additive one in the compute dtype on every call, which the
    kernel saves: b x s x s x e = e T s per layer. Without a mask k and v keep kv_dim (enable_gqa).
        e T (q + 2 q) + e T q + 4 T a + e T s     padded
        e T (q + 2 kv) + e T q + 4 T a            unpadded
    GPT-2 and OPT (multi-head: kv = q) use the same kernel: q, k, v, output, log-sum-exp, mask.
    """
    q = model.q_dim
    kv = q if padded and model.num_kv_heads != model.num_heads else model.kv_dim
    total = act * tokens * (q + 2 * kv) + act * tokens * q + 4 * tokens * model.num_heads
    if padded and seq_len:
        total += act * tokens * seq_len
    return total


def eager_attention_bytes(model: ModelSpec, tokens: int, act: int, seq_len: int, softcap: bool = True) -> int:
    """What transformers' eager attention saves per layer (Gemma-2 needs it for logit soft-capping).

    k and v are always repeated to all heads; the two matmuls save q, k, v (e T q each); per
    token, head and key (T x a x s): the tanh output of the soft-cap (e), softmax's fp32 output (4)
    and its cast back to e (saved by the second matmul; the same tensor under fp32). The output is
    made contiguous for o_proj, a copy that only o_proj's input saving keeps (linear_input_bytes).
        3 e T q + T a s (e [soft-cap] + 4 + e [e < 4])
    """
    per_score = (act if softcap else 0) + 4 + (act if act < 4 else 0)
    return 3 * act * tokens * model.q_dim + tokens * model.num_heads * seq_len * per_score


def moe_mlp_bytes(model: ModelSpec, tokens: int, act: int) -> int:
    """What a routed MoE block saves per layer (transformers 5's Mixtral / Qwen3-MoE experts).

    Router: fp32 softmax over E experts (4 T E), the top-k weights and their sum for
    normalisation (4 T k + 4 T), the weight of each routed copy (4 T k). Each token goes to k
    experts: its gathered input (e T k h, for the expert weights' gradient), the fused gate/up
    output (2 e T k I_e), the activation and the product (2 e T k I_e), and the expert output
    before weighting (e T k h, for the routing weights' gradient):
        e T k (2 h + 4 I_e) + 4 T (E + 2 k + 1)
    """
    k, ei, h = model.experts_per_token, model.expert_intermediate_size, model.hidden_size
    return act * tokens * k * (2 * h + 4 * ei) + 4 * tokens * (model.num_experts + 2 * k + 1)


def _lora_readers(model: ModelSpec, targets: str, names: tuple[str, ...]) -> int:
    return sum(1 for t in lora_target_tensors(model, targets) if t.name in names)


def activation_bytes_per_layer(model: ModelSpec, tokens: int, act: int, residual: int,
                               eager_seq: int | None = None, seq_len: int = 0, padded: bool = True,
                               lora_rank: int | None = None, lora_dropout: float = 0.0,
                               lora_targets: str = "all-linear", dropout_mask_bytes: int = DROPOUT_MASK_BYTES) -> int:
    """Bytes one decoder layer saves for backward, counted from the tensors transformers' (and
    peft's) implementations keep; checked byte for byte on CPU (tests/planner/test_activations.py,
    bench/results/cpu_checks.md). Dropout off in the model (TRL's trainers pass use_cache=False and
    DPO disables dropout); lora_dropout applies to the LoRA branches.

    Llama family (RMSNorm, SwiGLU; Mistral, Qwen2/3, Phi-3, Gemma-2, Mixtral), T tokens (b
    sequences of s), e compute bytes, r residual bytes, full fine-tune without autocast:
      2 x [(4 + r) T h + 4 T]      the two RMSNorms (rmsnorm_bytes; Gemma-2: four, fp32-normalised)
      2 x e T h                    their outputs, saved by q/k/v and by gate/up (linear_input_bytes)
      sdpa_attention_bytes         q, k, v, output (= o_proj's input), log-sum-exp; the repeated
                                   k, v and the additive mask when the batch is padded
                                   (eager_attention_bytes with eager_seq: Gemma-2)
      (4 + e) T (q + kv) + 4 T (a + a_kv)   Qwen3's per-head q/k RMSNorm
      3 e T I + e T I              gate output, SiLU output, up output; their product (down's input)
                                   (moe_mlp_bytes for MoE layers)
    GPT-2: 2 LayerNorms, their outputs, q/k/v as views of c_attn's output (3 e T h), output,
      log-sum-exp, mask; gelu_new is composed of elementwise ops that save 4 e T I, plus c_proj's
      input e T I:  8 e T h + 5 e T I + ...
    OPT: 2 LayerNorms, their outputs, q, k, v, output, log-sum-exp, mask; ReLU's output (= fc2's
      input):  8 e T h + e T I + ...
    Under autocast every linear keeps its own bf16 cast of an fp32 input; under LoRA the frozen
    base saves no inputs and no norm outputs, lora_A saves its (fp32) input instead, and lora_B
    lora_A's output (lora_activation_bytes_per_layer). Korthikanti et al. 2022 (eq. 1) is the
    reference: korthikanti_layer_bytes.
    """
    h, T, e, r = model.hidden_size, tokens, act, residual
    lora = lora_rank is not None and lora_rank > 0

    def reads(width: int, names: tuple[str, ...], readers: int, input_bytes: int, saved: bool = False) -> int:
        targeted = _lora_readers(model, lora_targets, names) if lora else None
        return linear_input_bytes(T, width, readers, e, r, input_bytes, saved, targeted, lora_dropout,
                                  dropout_mask_bytes)

    if model.family in ("gpt2", "opt"):
        gpt2 = model.family == "gpt2"
        I = model.intermediate_size  # noqa: E741
        total = 2 * layernorm_bytes(T, h, r)
        total += sdpa_attention_bytes(model, T, e, seq_len, padded)
        if gpt2:
            total += reads(h, ("c_attn",), 1, r) + reads(h, ("attn_c_proj",), 1, e, saved=True)
            total += reads(h, ("c_fc",), 1, r) + 4 * e * T * I + reads(I, ("mlp_c_proj",), 1, e)
        else:
            total += reads(h, ("q_proj", "k_proj", "v_proj"), 3, r) + reads(h, ("out_proj",), 1, e, saved=True)
            total += reads(h, ("fc1",), 1, r) + e * T * I + reads(I, ("fc2",), 1, e, saved=True)
    else:
        fused = model.model_type == "phi3"  # one qkv_proj and one gate_up_proj read each norm
        gemma = model.model_type == "gemma2"
        total = (4 if gemma else 2) * rmsnorm_bytes(T, h, r, weight_trainable=not lora, gemma=gemma)
        total += reads(h, ("q_proj", "k_proj", "v_proj", "qkv_proj"), 1 if fused else 3, r)
        if eager_seq:
            total += eager_attention_bytes(model, T, e, eager_seq, softcap=gemma)
            total += reads(model.q_dim, ("o_proj",), 1, e)
        else:
            total += sdpa_attention_bytes(model, T, e, seq_len, padded)
            if fused:
                # Phi-3's RoPE concatenates, so q is laid out (b, heads, s, d), SDPA's output follows
                # it and o_proj's input is a copy; unpadded, v is a view that keeps the whole qkv
                # output alive (q + 2 kv wide instead of kv).
                total += 0 if padded else e * T * (model.q_dim + model.kv_dim)
            total += reads(model.q_dim, ("o_proj",), 1, e, saved=not fused)
        if model.model_type in ("qwen3", "qwen3_moe"):
            total += (4 + (0 if lora else e)) * T * (model.q_dim + model.kv_dim)
            total += 4 * T * (model.num_heads + model.num_kv_heads)
        if model.is_moe:
            # the router saves its input also under LoRA: peft's wrapped router weight needs a gradient
            total += moe_mlp_bytes(model, T, e) + linear_input_bytes(T, h, 1, e, r, r)
            if lora:
                total += lora_expert_delta_bytes(model, lora_rank, e, lora_targets)
        else:
            total += reads(h, ("gate_proj", "up_proj", "gate_up_proj"), 1 if fused else 2, r)
            total += 3 * e * T * model.intermediate_size
            total += reads(model.intermediate_size, ("down_proj",), 1, e)
    if lora:
        total += lora_activation_bytes_per_layer(model, T, lora_rank, lora_dropout, e, lora_targets, r)
    return total


def final_norm_bytes(model: ModelSpec, tokens: int, act: int, residual: int, frozen: bool = False,
                     head_saves_input: bool | None = None) -> int:
    """The final norm before the LM head, outside any checkpointed layer: rmsnorm_bytes plus its
    output when the head saves it as its input (e; under autocast the head's bf16 cast, also e):
        (4 + r + e) T h + 4 T    full fine-tune,    4 T h + 4 T    LoRA (frozen norm and head).
    head_saves_input (default: not frozen): a linear head saves its input only when its weight
    trains (a reward model's score head always does). TRL's fused LM head saves the selected hidden
    states itself (counted in fused_logits_bytes), not the norm output: pass False."""
    h = model.hidden_size
    if head_saves_input is None:
        head_saves_input = not frozen
    return rmsnorm_bytes(tokens, h, residual, weight_trainable=not frozen) + (act * tokens * h if head_saves_input else 0)


def autocast_weight_copy_bytes(model: ModelSpec, act: int, checkpointed: bool = False, include_head: bool = True) -> int:
    """Under autocast (amp-bf16) every matmul weight is cast to bf16 and the linear saves the cast
    for its backward: a bf16 copy of all linear weights and the LM head (or the tied embedding it
    reads), e bytes each, alive from the forward until each layer's backward. Measured on CPU
    autocast (bench/results/cpu_checks.md); CUDA autocast caches and saves the same casts.
    Under gradient checkpointing (checkpointed=True) the checkpointed forward saves nothing: the LM
    head's cast and the casts of the one layer being recomputed remain. include_head=False: TRL's
    fused LM head casts its weight tile by tile and saves none of it (a score head is negligible)."""
    kinds = model.params_by_kind()
    head = (kinds.get("lm_head", 0) or kinds.get("embedding", 0)) if include_head else 0
    layers = kinds.get("linear", 0) + kinds.get("expert", 0) + kinds.get("router", 0)
    if checkpointed:
        layers //= max(model.num_layers, 1)
    return act * (layers + head)


OFFLOAD_GPU_LAYERS = 2  # activation offloading: the layer whose backward runs and the next, prefetched


def offloaded_activation_bytes(per_layer: int, layers: int) -> tuple[int, int]:
    """Activation offloading (torchtune's enable_activation_offloading: training/_activation_offloading.py
    OffloadActivations, saved-tensor hooks): every tensor a layer saves for backward (with gradient
    checkpointing, each layer's input) is copied to pinned host memory during the forward; the
    backward brings them back one layer ahead on a side stream. On the GPU at the backward's start:
    the layer being worked on and the one prefetched,  min(L, 2) x per_layer  (the forward's stash of
    the last few tensors still being copied out is the same size or smaller); in host memory all of
    them,  L x per_layer. Returns (GPU bytes, host bytes). The LM head and the loss are not offloaded
    (torchtune keeps the output layer's activations on the GPU: they are used at once)."""
    return min(layers, OFFLOAD_GPU_LAYERS) * per_layer, layers * per_layer


def checkpointed_layer_bytes(model: ModelSpec, tokens: int, residual: int) -> int:
    """Full gradient checkpointing keeps only each layer's input: r T h per layer (Chen et al. 2016;
    HF gradient_checkpointing_enable)."""
    return residual * tokens * model.hidden_size


# --- logits and loss ------------------------------------------------------------------------------

LOSS_CHUNK_TOKENS = 4096  # TRL's fused LM head: tokens per projection tile (trl/kernels/chunked_logprob.py)
LOSS_CHUNK_VOCAB = 32768  # TRL's fused LM head: vocabulary columns per tile (trl/trainer/utils.py)


def logits_bytes(tokens: int, vocab: int) -> int:
    """Materialised logits and loss for training, at their peak in the loss's backward: 12 T V bytes.

    The loss upcasts the logits to fp32 and keeps the fp32 log-softmax output for backward (4);
    backward then holds that, its fp32 gradient (4) and the gradient of the fp32 upcast (4), while
    the e-byte logits themselves are already gone (measured by MemTracker over a whole step on CPU,
    bench/results/cpu_checks.md). This is what a plain HF causal-LM loss, TRL's experimental
    ORPO/CPO trainers and our PPO keep, whatever the activation dtype.
    """
    return tokens * vocab * 12


def fused_logits_bytes(tokens: int, vocab: int, hidden: int, act: int, head_trainable: bool,
                       hidden_bytes: int | None = None) -> int:
    """TRL 1.16's fused LM head (SFT, DPO, KTO, GRPO, RLOO trainers) never materialises T x V logits.

    It projects tiles of LOSS_CHUNK_TOKENS x LOSS_CHUNK_VOCAB in the compute dtype and keeps
    running log-sum-exp statistics. Backward recomputes the tiles and accumulates in fp32: the
    hidden-state gradient (T x h x 4), and the LM-head weight gradient (V x h x 4) when the head
    trains. The selected hidden states are kept for backward in the residual dtype (hidden_bytes:
    e under pure bf16, 4 under autocast).
        T h (r + 4) + [head trains] V h 4 + min(T, 4096) min(V, 32768) e
    """
    saved = act if hidden_bytes is None else hidden_bytes
    tile = min(tokens, LOSS_CHUNK_TOKENS) * min(vocab, LOSS_CHUNK_VOCAB) * act
    return tokens * hidden * (saved + 4) + (vocab * hidden * 4 if head_trainable else 0) + tile


def loss_chunk_tokens(tokens: int, vocab: int, hidden: int) -> int:
    """Tokens per chunk of a chunked cross-entropy: the next power of two above T / ceil(V / h), so
    one chunk's logits (C x V) are about as large as the hidden states (T x h); at most T. The rule
    of Liger-Kernel's fused linear cross-entropy (liger_kernel/ops/fused_linear_cross_entropy.py),
    which LLaMA-Factory, Axolotl and TRL switch on with their Liger options."""
    per = -(-tokens // max(-(-vocab // hidden), 1))
    return min(tokens, 1 << max(per - 1, 0).bit_length())


def chunked_logits_bytes(tokens: int, vocab: int, hidden: int, act: int, chunk: int | None = None) -> int:
    """A chunked cross-entropy: the LM head and the loss run over C tokens at a time (C =
    loss_chunk_tokens), each chunk's logits formed, upcast to fp32, log-softmaxed and turned into
    gradients, then freed before the next chunk. Held at the backward's start: the head's input
    hidden states, kept to recompute the chunks (e T h), their gradient accumulated chunk by chunk
    (e T h), and one chunk at the materialised loss's 12 bytes per logit (logits_bytes):
        2 e T h + 12 C V
    The LM head's weight gradient (when it trains) is formed during the loss, before the layers'
    backward, and is counted with the gradients (as for the fused head)."""
    c = loss_chunk_tokens(tokens, vocab, hidden) if chunk is None else min(chunk, tokens)
    return 2 * act * tokens * hidden + 12 * c * vocab


def chunked_inference_logits_bytes(tokens: int, vocab: int, hidden: int, act: int, log_softmax: bool = True) -> int:
    """A chunked loss scoring without gradients: the hidden states (e T h) and one chunk's logits
    (e, + 4 for the fp32 log-softmax) at a time."""
    c = loss_chunk_tokens(tokens, vocab, hidden)
    return act * tokens * hidden + c * vocab * (act + (4 if log_softmax else 0))


def inference_layer_bytes(model: ModelSpec, tokens: int, act: int) -> int:
    """One decoder layer's no-grad forward at its peak, the MLP: act(gate), up and their product
    (3 T i) beside the residual stream, the normed input, the attention output and the layer's
    output (4 T h). A generation's prefill (the prompt read at once) and a judge's forward.
    Traced on CPU at 12.4 kB a token for hidden 256 / intermediate 688 fp32, where this gives
    12.35 kB (bench/results/stage_trace.md)."""
    i = model.expert_intermediate_size * max(model.experts_per_token, 1) if model.is_moe else model.intermediate_size
    return tokens * (3 * i + 4 * model.hidden_size) * act


def inference_logits_bytes(tokens: int, vocab: int, hidden: int, act: int, fused: bool,
                           log_softmax: bool = True) -> int:
    """Scoring without gradients (reference or old-policy log-probs).

    Materialised: logits (e) + fp32 log-softmax (4) per token and vocabulary entry; without the
    log-softmax (log_softmax=False: a judge reading label logits) the logits alone.
    Fused (TRL 1.16): one tile plus the selected hidden states, T x h x e.
    """
    if fused:
        return tokens * hidden * act + min(tokens, LOSS_CHUNK_TOKENS) * min(vocab, LOSS_CHUNK_VOCAB) * act
    return tokens * vocab * (act + (4 if log_softmax else 0))


def completion_logprob_scoring_bytes(tokens: int, completion_tokens: int, vocab: int, act: int,
                                     entropy: bool) -> int:
    """Our PPO's no-grad log-probs (runners/rl/rollout.py response_logprobs): the model's logits at
    every position (e bytes), then at the T_c completion positions only the fp32 temperature-scaled
    logits and their log-softmax (4 + 4; under bf16 the fp32 cast is freed once divided); with the
    entropy (the sampling policy's scoring, losses.entropy_from_logits) also the softmax and its
    product with the logits (4 + 4):
        e T V + 8 T_c V        (+ 8 T_c V with the entropy)
    Traced on CPU: bench/results/ppo_trace.md."""
    return tokens * vocab * act + (16 if entropy else 8) * completion_tokens * vocab


@dataclass(frozen=True)
class CompletionLogprobBytes:
    """The three moments of our PPO's training log-probs (see completion_logprob_training_bytes)."""

    saved: int  # kept from the forward to the backward
    forward: int  # at the end of the forward that computes them
    backward: int  # the largest moment of their backward, down to the LM head's


def completion_logprob_training_bytes(tokens: int, completion_tokens: int, vocab: int, hidden: int, act: int,
                                      head_grad_bytes: int) -> CompletionLogprobBytes:
    """Our PPO update's log-probs with gradients (response_logprobs): the logits at every position
    (e T V) are not saved (the slice and the division by the temperature save nothing); the fp32
    log-softmax over the T_c completion positions is (4 T_c V).
      forward:  e T V + 8 T_c V       logits, scaled fp32 completion logits, their log-softmax
      backward: 12 T_c V              log-softmax backward: its saved output, incoming and outgoing gradients
                e T V + max(4 T_c V,  the slice's backward fills a zero e T V gradient, which the LM
                  head_grad + e T h)  head's backward reads while it writes its weight gradient
                                      (head_grad_bytes; 0 when the head is frozen) and h-wide input gradient
    Traced on CPU: bench/results/ppo_trace.md."""
    tv, cv = tokens * vocab, completion_tokens * vocab
    return CompletionLogprobBytes(
        saved=4 * cv,
        forward=act * tv + 8 * cv,
        backward=max(12 * cv, act * tv + max(4 * cv, head_grad_bytes + act * tokens * hidden)),
    )


def kv_cache_bytes(model: ModelSpec, tokens_per_sequence: int, sequences: int, act: int) -> int:
    """KV cache for generation: 2 (K and V) x layers x kv_heads x head_dim x bytes x tokens x sequences."""
    return 2 * model.num_layers * model.num_kv_heads * model.head_dim * act * tokens_per_sequence * sequences


# --- runtime overhead -----------------------------------------------------------------------------

CUDA_CONTEXT_BYTES = 512 * 2**20  # CUDA context + cuBLAS/cuDNN workspaces, outside PyTorch's allocator
ALLOCATOR_RESERVE = 0.05  # caching-allocator fragmentation: reserved exceeds allocated by a few %


def overhead_bytes(dynamic_bytes: int) -> int:
    """CUDA context (measured as ~0.5 GiB on A100/H100 with torch 2.x) plus the caching allocator's
    fragmentation reserve, taken as 5% of what PyTorch allocates."""
    return CUDA_CONTEXT_BYTES + int(ALLOCATOR_RESERVE * dynamic_bytes)
