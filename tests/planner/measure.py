"""Measure what real PyTorch/transformers/peft keep in memory, to check the planner's terms.

Shared by tests/planner/test_model_states.py, tests/planner/test_activations.py and
bench/calibrate_cpu.py. Everything runs on CPU with tiny random-weight models built from configs.

Two measurements:

* model states after one real torch.optim.AdamW step: bytes of the parameters, their gradients and
  the optimizer's state tensors, each counted once per storage (tied weights share one);
* the bytes autograd saves for backward in one forward + loss, seen through
  torch.autograd.graph.saved_tensors_hooks: every saved tensor is counted once per storage (views
  and tensors saved by several ops share a storage), parameters and buffers are left out (they are
  weights, not activations), and the rest is split into logits (the loss's tensors over the
  vocabulary), indices (int64 token ids and labels) and activations (everything else).

Gradient checkpointing is measured with use_reentrant=True: the reentrant checkpoint saves its
inputs with ctx.save_for_backward, so the hooks see exactly what each checkpointed layer keeps. The
non-reentrant default keeps the same inputs by reference inside its frame, which the hooks cannot see.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from planner import terms
from planner.models import ModelSpec, spec_from_config

VOCAB = 1000  # no other dimension of the tiny configs equals it, so logits are told apart by shape
BATCH = 2
SEQ = 64
PAD = 10  # right padding on the second sequence in padded batches

# Small configs covering the layouts the planner distinguishes: GQA, qkv bias, q/k norm + tied
# embeddings. hidden 64, 2 layers, vocab 1000.
TINY_CONFIGS: dict[str, dict] = {
    "llama-gqa": dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=176, vocab_size=VOCAB,
                      tie_word_embeddings=False),
    "qwen2-bias": dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=160, vocab_size=VOCAB,
                       tie_word_embeddings=False),
    "qwen3-qknorm": dict(model_type="qwen3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=192, vocab_size=VOCAB,
                         tie_word_embeddings=True),
}

# torch's dropout on CPU is not the fused native_dropout of CUDA (bool mask, terms.DROPOUT_MASK_BYTES):
# it multiplies by a noise tensor in the input's dtype and saves that. LoRA's dropout input is fp32.
CPU_DROPOUT_MASK_BYTES = 4

# The other layouts the planner knows, per-layer checks only (test_activations.py). Dropout off,
# as the planner assumes. Their weight dimensions include 128 (Phi-3's fused qkv), so they are
# measured at OTHER_SEQ.
OTHER_LAYOUTS: dict[str, dict] = {
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=256,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0),
    "opt": dict(model_type="opt", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=176,
                vocab_size=VOCAB, max_position_embeddings=256, word_embed_proj_dim=64, dropout=0.0,
                attention_dropout=0.0, activation_dropout=0.0),
    "gemma2-eager": dict(model_type="gemma2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=176, vocab_size=VOCAB),
    "mixtral-moe": dict(model_type="mixtral", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=96, vocab_size=VOCAB, num_local_experts=4,
                        num_experts_per_tok=2),
    "phi3-fused": dict(model_type="phi3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=176, vocab_size=VOCAB, pad_token_id=0,
                       bos_token_id=0, eos_token_id=0),
}
OTHER_SEQ = 72

# A vocabulary large enough for the loss to dominate a whole training step (measure_step_peak).
STEP_CONFIGS: dict[str, dict] = {
    "llama-v32k": dict(TINY_CONFIGS["llama-gqa"], vocab_size=32000, num_hidden_layers=4),
}

# Real layouts at reduced depth (bench/calibrate_cpu.py only: heavier than the tests need).
CATALOGUE_AT_DEPTH: dict[str, tuple[str, int]] = {
    "SmolLM2-135M@2L": ("HuggingFaceTB/SmolLM2-135M", 2),
    "Qwen2.5-0.5B@2L": ("Qwen/Qwen2.5-0.5B", 2),
}

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "amp-bf16": torch.float32}


def hf_config(name: str, num_layers: int | None = None):
    from transformers import AutoConfig

    if name in CATALOGUE_AT_DEPTH:
        from planner import load_model

        model_id, depth = CATALOGUE_AT_DEPTH[name]
        kw = {k: v for k, v in load_model(model_id).config.items() if k not in ("architectures", "torch_dtype")}
        kw["num_hidden_layers"] = depth
        kw.pop("layer_types", None)  # per-layer lists follow the depth
    else:
        kw = dict({**TINY_CONFIGS, **OTHER_LAYOUTS, **STEP_CONFIGS}[name])
    if num_layers:
        kw["n_layer" if kw["model_type"] == "gpt2" else "num_hidden_layers"] = num_layers
    model_type = kw.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **kw)
    # Gemma-2's logit soft-capping needs eager attention (transformers refuses SDPA for it)
    cfg._attn_implementation = "eager" if cfg.model_type == "gemma2" else "sdpa"
    return cfg


def planner_spec(name: str, num_layers: int | None = None) -> ModelSpec:
    """The planner's ModelSpec from the very config transformers builds the model from."""
    return spec_from_config(hf_config(name, num_layers).to_dict(), name)


def build_model(name: str, precision: str, lora_rank: int | None = None, lora_dropout: float = 0.0,
                grad_ckpt: bool = False, seed: int = 0, num_layers: int | None = None, fused_head: bool = False,
                device: str = "cpu"):
    """A randomly initialised CausalLM in train mode, loaded the way the runners load it:
    bf16 -> weights in bf16; fp32 and amp-bf16 -> weights in fp32. LoRA via peft (all-linear)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(name, num_layers), dtype=DTYPES[precision]).to(device)
    if fused_head:  # TRL 1.16's fused LM head (SFT/DPO/KTO/GRPO/RLOO trainers), added before PEFT as TRL does
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
    if grad_ckpt:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules="all-linear",
                         lora_dropout=lora_dropout, task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
    model.train()
    return model


def make_batch(padded: bool, batch: int = BATCH, seq: int = SEQ, seed: int = 1,
               vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    labels = ids.clone()
    out = {"input_ids": ids, "labels": labels}
    if padded:
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[-1, seq - PAD:] = 0
        labels[mask == 0] = -100
        out["attention_mask"] = mask
    return out


def autocast_for(precision: str, device: str = "cpu"):
    if precision == "amp-bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- model states ---------------------------------------------------------------------------------


def _storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


@dataclass
class StateBytes:
    weights: int
    gradients: int
    optimizer_states: int
    step_counters: int  # AdamW's per-parameter 'step' scalars, included in optimizer_states
    adapter_dtypes: tuple[str, ...]  # dtypes of the trainable parameters


def measure_model_states(name: str, precision: str, lora_rank: int | None = None) -> StateBytes:
    """One real AdamW step on a random batch, then the bytes of params, grads and optimizer state."""
    model = build_model(name, precision, lora_rank)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    batch = make_batch(padded=False)
    with autocast_for(precision):
        loss = model(**batch, use_cache=False).loss
    loss.backward()
    opt.step()
    grads = [p.grad for p in trainable if p.grad is not None]
    states = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    steps = [s["step"] for s in opt.state.values() if torch.is_tensor(s.get("step"))]
    return StateBytes(
        weights=_storage_bytes(model.parameters()),
        gradients=_storage_bytes(grads),
        optimizer_states=_storage_bytes(states),
        step_counters=_storage_bytes(steps),
        adapter_dtypes=tuple(sorted({str(p.dtype).removeprefix("torch.") for p in trainable})),
    )


def planner_model_states(name: str, precision: str, lora_rank: int | None = None) -> dict[str, int]:
    """The policy copy's weights, gradients and optimizer states as planner.estimate composes them."""
    from planner import PlanRequest, estimate

    req = PlanRequest(model=planner_spec(name), method="sft", precision=precision, lora_rank=lora_rank,
                      seq_len=SEQ, batch_size=BATCH, gpu=None)
    row = estimate(req, with_min_gpus=False).copies[0]
    return {"weights": row["weights_bytes"], "gradients": row["gradients_bytes"],
            "optimizer_states": row["optimizer_states_bytes"]}


# --- saved activations ----------------------------------------------------------------------------


@dataclass
class SavedBytes:
    activations: int  # floating-point tensors saved for backward, not over the vocabulary
    logits: int  # saved tensors whose last dimension is the vocabulary (the loss's)
    indices: int  # integer tensors (token ids for the embedding's backward, labels for the loss)
    weight_casts: int  # autocast's bf16 copies of weights, saved by the linears (amp-bf16 only)
    by_shape: list[tuple[tuple[int, ...], str, int]]  # (shape, dtype, storage bytes), for reports


def measure_saved(name: str, precision: str, padded: bool, grad_ckpt: bool, lora_rank: int | None = None,
                  lora_dropout: float = 0.0, batch: int = BATCH, seq: int = SEQ,
                  num_layers: int | None = None, fused_head: bool = False, device: str = "cpu") -> SavedBytes:
    """Bytes saved for backward by one forward + loss of a tiny model (see the module docstring)."""
    model = build_model(name, precision, lora_rank, lora_dropout, grad_ckpt, num_layers=num_layers,
                        fused_head=fused_head, device=device)
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)  # holding a reference keeps storages alive, so data_ptrs stay unique
        return t

    vocab = model.config.vocab_size
    data = {k: v.to(device) for k, v in make_batch(padded, batch, seq, vocab=vocab).items()}
    extra = {"fused_lm_head": True} if fused_head else {}
    extra["use_cache"] = False  # TRL's trainers pass it (GPT-2 would otherwise build a KV cache)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast_for(precision, device):
        out = model(**data, **extra)
    out.loss.backward()  # proves the graph is complete; the hooks already saw every saved tensor
    seen: dict[int, torch.Tensor] = {}
    for t in saved:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights and ptr not in seen:
            seen[ptr] = t
    # A saved 2-D tensor shaped like a weight (or its transpose) but not a weight storage is
    # autocast's cast of it: no activation of the tiny configs has a weight's shape (T = 128).
    weight_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() >= 2}
    weight_shapes |= {s[::-1] for s in weight_shapes} | {s[:-2] + s[-2:][::-1] for s in weight_shapes}
    if batch * seq in {d for shape in weight_shapes for d in shape}:
        raise ValueError(f"batch x seq = {batch * seq} equals a weight dimension of {name}: pick another seq")
    parts = {"activations": 0, "logits": 0, "indices": 0, "weight_casts": 0}
    rows = []
    for t in seen.values():
        nbytes = t.untyped_storage().nbytes()
        if not t.is_floating_point():
            kind = "indices"
        elif tuple(t.shape) in weight_shapes:
            kind = "weight_casts"
        elif t.dim() and t.shape[-1] == vocab:
            kind = "logits"
        else:
            kind = "activations"
        parts[kind] += nbytes
        rows.append((tuple(t.shape), str(t.dtype).removeprefix("torch."), nbytes))
    return SavedBytes(by_shape=rows, **parts)


def planner_activations(name: str, precision: str, padded: bool, grad_ckpt: bool, lora_rank: int | None = None,
                        lora_dropout: float = 0.0, batch: int = BATCH, seq: int = SEQ, fused_head: bool = False) -> int:
    """The planner's activation term for one trainable copy, composed as planner/estimate.py does:
    L x per-layer bytes (or L x checkpointed layer input) + the final norm (+ LoRA per layer).
    fused_head: TRL's fused LM head, which saves the selected hidden states (T h e, the saved part of
    terms.fused_logits_bytes) instead of the LM head's input."""
    m = planner_spec(name)
    prec = terms.PRECISIONS[precision]
    tokens = batch * seq
    if grad_ckpt:
        layers = m.num_layers * terms.checkpointed_layer_bytes(m, tokens, prec.residual)
    else:
        per_layer = terms.activation_bytes_per_layer(m, tokens, prec.act, prec.residual, seq_len=seq,
                                                     padded=padded, lora_rank=lora_rank, lora_dropout=lora_dropout,
                                                     dropout_mask_bytes=CPU_DROPOUT_MASK_BYTES)
        layers = m.num_layers * per_layer
    head_saves_input = not (lora_rank or fused_head)
    total = layers + terms.final_norm_bytes(m, tokens, prec.act, prec.residual, frozen=bool(lora_rank),
                                            head_saves_input=head_saves_input)
    if fused_head:
        total += tokens * m.hidden_size * prec.act
    if prec.residual != prec.act:
        total += planner_weight_casts(name, precision, grad_ckpt, fused_head)
    return total


def planner_weight_casts(name: str, precision: str, grad_ckpt: bool, fused_head: bool = False) -> int:
    """terms.autocast_weight_copy_bytes as the forward leaves it: with checkpointing only the LM
    head's cast is saved by the end of the forward (recomputed layers cast theirs during backward)."""
    m = planner_spec(name)
    prec = terms.PRECISIONS[precision]
    if prec.residual == prec.act:
        return 0
    full = terms.autocast_weight_copy_bytes(m, prec.act, include_head=not fused_head)
    if grad_ckpt:  # the head's cast only
        return full - terms.autocast_weight_copy_bytes(m, prec.act, include_head=False)
    return full


def planner_saved_logits(name: str, batch: int = BATCH, seq: int = SEQ) -> int:
    """The part of terms.logits_bytes that autograd saves: the loss's fp32 log-softmax output, 4 T V."""
    return batch * seq * planner_spec(name).vocab_size * 4


def planner_layer_bytes(name: str, precision: str, padded: bool, lora_rank: int | None = None,
                        lora_dropout: float = 0.0, batch: int = BATCH, seq: int = SEQ,
                        mask_bytes: int = CPU_DROPOUT_MASK_BYTES) -> int:
    """terms.activation_bytes_per_layer for one decoder layer (CPU dropout masks unless told)."""
    prec = terms.PRECISIONS[precision]
    spec = planner_spec(name)
    eager = seq if spec.model_type == "gemma2" else None  # as planner/estimate.py passes it
    return terms.activation_bytes_per_layer(spec, batch * seq, prec.act, prec.residual, eager, seq_len=seq,
                                            padded=padded, lora_rank=lora_rank, lora_dropout=lora_dropout,
                                            dropout_mask_bytes=mask_bytes)


def measure_step_peak(name: str, precision: str, grad_ckpt: bool, batch: int = BATCH, seq: int = SEQ) -> dict[str, int]:
    """Peak memory of a whole training step (forward, plain HF loss, backward, AdamW), the second
    of two (Adam moments exist), tracked by torch.distributed._tools.mem_tracker.MemTracker, which
    follows every storage's lifetime on CPU. Categories: PARAM, GRAD, ACT (saved for backward),
    TEMP (backward temporaries), OPT, Total. Full fine-tune only (MemTracker hooks every parameter)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = build_model(name, precision, grad_ckpt=grad_ckpt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    data = make_batch(True, batch, seq, vocab=model.config.vocab_size)
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker, autocast_for(precision):
        for step in range(2):
            loss = model(**data, use_cache=False).loss  # the outputs (and their logits) are dropped, as trainers do
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step == 0:
                tracker.reset_mod_stats()
    snap = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    return {str(k).rsplit(".", 1)[-1]: int(v) for k, v in snap.items()}


def planner_step_phases(name: str, precision: str, grad_ckpt: bool, batch: int = BATCH, seq: int = SEQ,
                        method: str = "simpo") -> dict[str, dict[str, int]]:
    """planner.estimate's phases without the overhead term, for `batch` sequences through the policy
    with a materialised-logits loss (method simpo: policy only, 2 sequences per example, no fused head)."""
    from planner import PlanRequest, estimate

    per_example = 2 if method == "simpo" else 1
    req = PlanRequest(model=planner_spec(name), method=method, seq_len=seq, batch_size=batch // per_example,
                      precision=precision, grad_ckpt=grad_ckpt)
    return {ph["name"]: {k: v for k, v in ph["components"].items() if k != "overhead"}
            for ph in estimate(req, with_min_gpus=False).phases}
