"""FLOPs of one training example, phase by phase, from the planner's copies and phases (issue 14).

Small functions named after what they count, each with its formula and its source. Conventions:
  * one multiply-add is 2 FLOPs; only matrix products are counted (norms, activations, softmax and
    the optimizer's elementwise work are a few per cent of a transformer's FLOPs and are not
    tensor-core work; torch.utils.flop_counter.FlopCounterMode counts the same set);
  * N_mm is the parameters a token is multiplied by: every linear of the layers (an MoE's active
    experts and its router) plus the output head (the LM head, or the tied embedding used as one;
    a 1-wide score head for reward and value models). The input embedding is a lookup, not a product.
  * attention's own products (Q K^T and A V) are counted over the whole T x T score matrix, as the
    eager and SDPA kernels compute them and FlopCounterMode counts them; a causal flash kernel skips
    the masked half of the blocks, so on such a kernel this term is about twice what is executed.

Sources: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", §2.1 and Table 1 (forward
2 N per token plus the attention term 2 n_layer n_ctx d_attn; backward twice the forward, so 6 N per
trained token); Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", §5 (full recomputation repeats the forward of every layer: 8 N per token); Hu et al. 2021,
"LoRA" (a frozen W computes no weight gradient: its backward is the input gradient alone).

Verified against FlopCounterMode on real steps of small Llama-like models (tests/planner/test_flops.py,
bench/flops_check.py). Pure Python, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.models import ModelSpec


@dataclass(frozen=True)
class CopyFlops:
    """What the FLOPs of one model copy depend on (from the planner's copies: estimate._build_copies).

    lora_rank: LoRA adapters on a frozen base (None: the copy's own weights train, or it is frozen).
    """

    role: str
    model: ModelSpec
    trainable: bool
    scalar_head: bool = False
    lora_rank: int | None = None
    lora_targets: str = "all-linear"


# --- per token ------------------------------------------------------------------------------------


def layer_matmul_params(m: ModelSpec) -> int:
    """Weights one token is multiplied by inside the model body: every linear (OPT's project_in/out
    included), the router, and experts_per_token of num_experts experts (MoE: Fedus et al. 2021)."""
    kinds = m.params_by_kind()
    expert = kinds.get("expert", 0)
    active_expert = expert * m.experts_per_token // m.num_experts if m.num_experts else 0
    return kinds.get("linear", 0) + kinds.get("router", 0) + active_expert


def head_matmul_params(m: ModelSpec, scalar_head: bool = False) -> int:
    """The output head's weights: vocab x d (the LM head, or the tied embedding used as it);
    d for a 1-wide score head (reward, value)."""
    if scalar_head:
        return m.hidden_size
    kinds = m.params_by_kind()
    return kinds.get("lm_head", 0) or kinds.get("embedding", 0)


def attention_flops_per_token(m: ModelSpec, context: int) -> int:
    """Q K^T and A V of one query token against `context` keys, all layers: 2 products x 2 FLOPs x
    context x (heads x head_dim) x layers = 4 L n_ctx d_attn. Kaplan et al. 2020 Table 1 writes
    2 n_layer n_ctx d_attn, the causal average (half the keys); the kernels compute the full row."""
    return 4 * m.num_layers * context * m.q_dim


def forward_flops_per_token(m: ModelSpec, context: int, scalar_head: bool = False) -> int:
    """One forward of one token: 2 N_mm + the attention term (Kaplan et al. 2020, C_forward)."""
    return 2 * (layer_matmul_params(m) + head_matmul_params(m, scalar_head)) + attention_flops_per_token(m, context)


def forward_flops(m: ModelSpec, seq_len: int, scalar_head: bool = False) -> int:
    """One forward of one seq_len-token sequence (teacher forcing: every query sees seq_len keys)."""
    return seq_len * forward_flops_per_token(m, seq_len, scalar_head)


def lora_adapter_params_per_token(m: ModelSpec, rank: int, targets: str = "all-linear") -> int:
    """Adapter weights a token passes through: r (in + out) per adapted matrix (A: r x in, B: out x r;
    Hu et al. 2021), an MoE's experts at experts_per_token / num_experts."""
    from planner import terms

    total = 0
    for t in terms.lora_target_tensors(m, targets):
        per = rank * (2 if t.name == "expert_gate_up" else 1) * (t.in_features + t.out_features) * t.count
        if t.kind == "expert" and m.num_experts:
            per = per * m.experts_per_token // m.num_experts
        total += per
    return total


def backward_flops(m: ModelSpec, seq_len: int, scalar_head: bool = False, frozen_base: bool = False,
                   inputs_require_grad: bool = False) -> int:
    """The backward of one sequence. Trained weights: input and weight gradients, 2 x the products'
    forward (Kaplan et al. 2020: backward = 2 x forward, so 6 N per token with the forward). A frozen
    base under LoRA computes input gradients only: 1 x (2 N_mm per token), so forward + backward is
    about 4 N. Attention's products have no weights: their backward is 2 x their forward either way."""
    weights = 2 * seq_len * (layer_matmul_params(m) + head_matmul_params(m, scalar_head))
    attn = seq_len * attention_flops_per_token(m, seq_len)
    if not frozen_base:
        return 2 * weights + 2 * attn
    # Under LoRA the embedding is frozen, so the first layer's input projections (those reading the
    # embedded tokens: q, k, v) need no input gradient and autograd skips it, unless the embedding's
    # output is made to require one (inputs_require_grad: transformers does so for a PEFT model under
    # gradient checkpointing, enable_input_require_grads).
    skipped = 0 if inputs_require_grad else 2 * seq_len * first_layer_input_params(m)
    return weights - skipped + 2 * attn


def first_layer_input_params(m: ModelSpec) -> int:
    """Weights of one layer's projections that read the layer's input directly: q, k, v (fused qkv
    or c_attn where the architecture fuses them)."""
    names = ("q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn")
    return sum(t.numel for t in m.tensors() if t.name in names)


# Each layer's last matrix product: its output is saved by nothing the backward needs.
_LAYER_OUTPUT_PROJECTIONS = ("down_proj", "fc2", "mlp_c_proj", "expert_down")


def layer_output_projection_params(m: ModelSpec) -> int:
    """Weights of each layer's MLP output projection (down_proj, fc2, c_proj), an MoE's active experts'."""
    total = 0
    for t in m.tensors():
        if t.name in _LAYER_OUTPUT_PROJECTIONS:
            n = t.total
            if t.kind == "expert" and m.num_experts:
                n = n * m.experts_per_token // m.num_experts
            total += n
    return total


def recompute_flops(m: ModelSpec, seq_len: int, early_stop: bool = True) -> int:
    """Activation recomputation (gradient checkpointing per decoder layer, as transformers does with
    torch's non-reentrant checkpoint): the backward reruns each layer's forward (Korthikanti et al.
    2022 §5: full recomputation, 8 N instead of 6 N per trained token), the head excepted, and, with
    torch's early stop (torch.utils.checkpoint, on by default since 2.1), only up to the last tensor
    the backward needs: the MLP's output projection is not rerun. Per token: 2 (N_layers - N_down) +
    attention. early_stop=False: the whole layer reruns (under LoRA peft adds the adapter's output
    after the base product, and the adapter's saved tensors come last, so the base down_proj reruns)."""
    down = layer_output_projection_params(m) if early_stop else 0
    return seq_len * (2 * (layer_matmul_params(m) - down) + attention_flops_per_token(m, seq_len))


def lora_train_flops(m: ModelSpec, seq_len: int, rank: int, targets: str = "all-linear", grad_ckpt: bool = False) -> int:
    """The adapters themselves, forward + backward (+ their recomputed forward): 6 (8) x P_adapter per
    token, P_adapter = lora_adapter_params_per_token (the 6 N rule applied to the trained adapters)."""
    return (8 if grad_ckpt else 6) * seq_len * lora_adapter_params_per_token(m, rank, targets)


def train_flops(c: CopyFlops, seq_len: int, grad_ckpt: bool) -> int:
    """Forward + backward (+ recomputation) of one sequence through a trainable copy: about 6 N per
    token in full, 8 N with gradient checkpointing; under LoRA about 4 N (6 N with recomputation)
    plus the adapters' 6 P_adapter (8 P_adapter)."""
    m, frozen_base = c.model, c.lora_rank is not None
    total = forward_flops(m, seq_len, c.scalar_head) + backward_flops(m, seq_len, c.scalar_head, frozen_base,
                                                                      inputs_require_grad=grad_ckpt)
    if grad_ckpt:
        total += recompute_flops(m, seq_len, early_stop=not frozen_base)
    if frozen_base:
        total += lora_train_flops(m, seq_len, c.lora_rank, c.lora_targets, grad_ckpt)
    return total


def score_flops(c: CopyFlops, seq_len: int) -> int:
    """A no-grad forward of one sequence (reference, reward, value or judge scoring; RL's old
    log-probs): 2 N per token + attention, the adapters' 2 P_adapter where the copy has them."""
    total = forward_flops(c.model, seq_len, c.scalar_head)
    if c.lora_rank is not None:
        total += 2 * seq_len * lora_adapter_params_per_token(c.model, c.lora_rank, c.lora_targets)
    return total


# --- generation -----------------------------------------------------------------------------------


def prefill_flops(m: ModelSpec, prompt_len: int) -> int:
    """The prompt's forward before decoding (compute bound), logits of the last position only
    (transformers' generate and vLLM keep the last one): 2 N_layers per token + attention + one head."""
    return prompt_len * (2 * layer_matmul_params(m) + attention_flops_per_token(m, prompt_len)) + 2 * head_matmul_params(m)


def decode_flops(m: ModelSpec, prompt_len: int, new_tokens: int) -> int:
    """Decoding new_tokens one at a time with a KV cache: each step is one token's forward against the
    keys so far (prompt_len + i): n x 2 N_mm + 4 L d_attn (n prompt_len + n(n-1)/2)."""
    n = new_tokens
    return n * 2 * (layer_matmul_params(m) + head_matmul_params(m)) + 4 * m.num_layers * m.q_dim * (
        n * prompt_len + n * (n - 1) // 2)


# --- the phases of one example ----------------------------------------------------------------------


def scoring_phase_flops(copies: list[CopyFlops], sequences: int, seq_len: int, scores_trainable: bool) -> int:
    """The scoring phase of one example: each frozen copy (reference, reward, judge) and, where the
    profile says so (scores_trainable_copies: RL's old log-probs and values, KTO's KL batch), each
    trainable copy runs a no-grad forward over the example's sequences."""
    return sum(sequences * score_flops(c, seq_len) for c in copies if scores_trainable or not c.trainable)


def forward_backward_phase_flops(copies: list[CopyFlops], sequences: int, seq_len: int, grad_ckpt: bool) -> int:
    """The forward_backward phase of one example: every trainable copy (PPO: policy and value)."""
    return sum(sequences * train_flops(c, seq_len, grad_ckpt) for c in copies if c.trainable)


def generation_phase_flops(m: ModelSpec, contexts: int, prompt_len: int, new_tokens: int) -> tuple[int, int]:
    """(prefill, decode) FLOPs of one example's generation: `contexts` sequences, each a prompt of
    prompt_len then new_tokens decoded."""
    return contexts * prefill_flops(m, prompt_len), contexts * decode_flops(m, prompt_len, new_tokens)


__all__ = [
    "CopyFlops", "attention_flops_per_token", "backward_flops", "decode_flops", "forward_backward_phase_flops",
    "first_layer_input_params", "forward_flops", "forward_flops_per_token", "generation_phase_flops", "head_matmul_params", "layer_output_projection_params",
    "layer_matmul_params", "lora_adapter_params_per_token", "lora_train_flops", "prefill_flops",
    "recompute_flops", "score_flops", "scoring_phase_flops", "train_flops",
]
