"""The planner's activation terms against what autograd really saves for backward.

tests/planner/measure.py runs one forward + loss of tiny random-weight models (SDPA attention,
batch 2 x 64 tokens, vocab 1000) under torch.autograd.graph.saved_tensors_hooks and counts every
saved storage once, leaving out parameters. Two comparisons:

* one decoder layer, exactly: the bytes a 3-layer model saves minus those of the 2-layer model
  equal terms.activation_bytes_per_layer (byte for byte: every tensor transformers and peft keep
  is in the formula);
* the whole activation term as planner/estimate.py composes it (layers or checkpointed layer
  inputs, final norm, autocast weight casts), within 10%. What it leaves out: RoPE's cos/sin
  (2 s d e, shared by all layers), the loss scalar and, for LoRA without checkpointing, the first
  norm of layer 0 (its input, the frozen embedding's output, needs no gradient).

Dropout masks: CUDA's fused dropout saves a 1-byte mask (the planner's default); CPU's unfused
dropout saves its noise in the input dtype, so the CPU checks use measure.CPU_DROPOUT_MASK_BYTES.
"""

from __future__ import annotations

from functools import cache

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import measure  # noqa: E402  (tests/planner/measure.py)

from planner import terms  # noqa: E402

CONFIGS = list(measure.TINY_CONFIGS)
LORAS = [(None, 0.0), (8, 0.05)]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@cache
def saved(name, precision, padded, grad_ckpt, lora_rank=None, lora_dropout=0.0, num_layers=None, fused_head=False,
          seq=measure.SEQ):
    return measure.measure_saved(name, precision, padded, grad_ckpt, lora_rank, lora_dropout, num_layers=num_layers,
                                 fused_head=fused_head, seq=seq)


def _layer_cases():
    for name in CONFIGS:
        for precision in ("bf16", "fp32", "amp-bf16"):
            for padded in (False, True):
                for lora in LORAS:
                    yield name, precision, padded, *lora
    for precision in ("bf16", "fp32", "amp-bf16"):
        yield "llama-gqa", precision, True, 8, 0.0  # LoRA without dropout: lora_A shares its input


@pytest.mark.parametrize("name,precision,padded,lora_rank,lora_dropout", list(_layer_cases()))
def test_one_layer_matches_activation_bytes_per_layer_exactly(name, precision, padded, lora_rank, lora_dropout):
    two = saved(name, precision, padded, False, lora_rank, lora_dropout, num_layers=2)
    three = saved(name, precision, padded, False, lora_rank, lora_dropout, num_layers=3)
    layer = three.activations - two.activations
    assert layer == measure.planner_layer_bytes(name, precision, padded, lora_rank, lora_dropout)
    casts = three.weight_casts - two.weight_casts
    if precision == "amp-bf16":
        # the bf16 casts of one layer's weights: autocast_weight_copy_bytes per layer (+ LoRA's own,
        # r x (in + out) per target, which the planner leaves out as negligible)
        spec = measure.planner_spec(name)
        per_layer = terms.autocast_weight_copy_bytes(spec, 2, checkpointed=True) - 2 * spec.vocab_size * spec.hidden_size
        lora = 2 * terms.lora_params(spec, lora_rank) // spec.num_layers if lora_rank else 0
        assert casts == per_layer + lora
    else:
        assert casts == 0


def _model_cases():
    for name in CONFIGS:
        for precision in ("bf16", "fp32"):
            for grad_ckpt in (False, True):
                for lora in LORAS:
                    yield name, precision, grad_ckpt, *lora
    for grad_ckpt in (False, True):
        for lora in LORAS:
            yield "llama-gqa", "amp-bf16", grad_ckpt, *lora


@pytest.mark.parametrize("name,precision,grad_ckpt,lora_rank,lora_dropout", list(_model_cases()))
def test_model_activations_match_planner_term(name, precision, grad_ckpt, lora_rank, lora_dropout):
    got = saved(name, precision, True, grad_ckpt, lora_rank, lora_dropout)
    measured = got.activations + got.weight_casts
    want = measure.planner_activations(name, precision, True, grad_ckpt, lora_rank, lora_dropout)
    assert want == pytest.approx(measured, rel=0.10)
    if not lora_rank or grad_ckpt:
        # nothing left out but RoPE's cos/sin and the loss scalar
        assert want == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_checkpointing_keeps_layer_inputs_and_final_norm(name, precision):
    """With checkpointing: L x r T h (each layer's input) + the final norm (+ the loss scalar)."""
    spec = measure.planner_spec(name)
    prec = terms.PRECISIONS[precision]
    tokens = measure.BATCH * measure.SEQ
    got = saved(name, precision, True, True)
    expected = (spec.num_layers * terms.checkpointed_layer_bytes(spec, tokens, prec.residual)
                + terms.final_norm_bytes(spec, tokens, prec.act, prec.residual))
    assert got.activations - 4 == expected  # 4: the fp32 loss scalar


@pytest.mark.parametrize("precision", ["bf16", "fp32", "amp-bf16"])
def test_padding_mask_costs_repeated_kv_and_additive_mask(precision):
    """A padded batch makes transformers repeat k/v to all heads and torch save an additive mask."""
    name = "llama-gqa"
    spec = measure.planner_spec(name)
    act = terms.PRECISIONS[precision].act
    tokens = measure.BATCH * measure.SEQ
    delta = saved(name, precision, True, False).activations - saved(name, precision, False, False).activations
    per_layer = act * tokens * (2 * (spec.q_dim - spec.kv_dim) + measure.SEQ)
    assert delta == spec.num_layers * per_layer
    assert delta > 0


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("precision", ["bf16", "fp32", "amp-bf16"])
def test_loss_saves_fp32_log_softmax(name, precision):
    """Of logits_bytes' T V (e + 4 + 4), autograd saves the fp32 log-softmax output (4 T V); the
    logits (e T V) stay alive in the model output, and the fp32 gradient (4 T V) exists in backward."""
    got = saved(name, precision, True, False)
    assert got.logits == measure.planner_saved_logits(name)
    assert got.indices == 2 * 8 * measure.BATCH * measure.SEQ  # input ids (embedding) + shifted labels (loss)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("lora_rank", [None, 8])
def test_trl_fused_lm_head_saves_selected_hidden_states_not_logits(precision, lora_rank):
    """TRL 1.16's fused LM head saves the (selected) hidden states, T h e, and no T x V tensor; the
    final norm's output is then not saved by the head (final_norm_bytes(head_saves_input=False))."""
    pytest.importorskip("trl")
    got = saved("llama-gqa", precision, True, False, lora_rank, 0.0, fused_head=True)
    assert got.logits == 0
    want = measure.planner_activations("llama-gqa", precision, True, False, lora_rank, 0.0, fused_head=True)
    assert want == pytest.approx(got.activations, rel=0.10)
    if not lora_rank:
        assert want == pytest.approx(got.activations, rel=0.01)


def _other_cases():
    for name in measure.OTHER_LAYOUTS:
        for precision in ("bf16", "fp32"):
            for padded in (False, True):
                yield name, precision, padded, None, 0.0
            # peft refuses dropout on MoE expert parameters (ParamWrapper)
            yield name, precision, True, 8, 0.0 if name == "mixtral-moe" else 0.05


@pytest.mark.parametrize("name,precision,padded,lora_rank,lora_dropout", list(_other_cases()))
def test_other_layouts_one_layer(name, precision, padded, lora_rank, lora_dropout):
    """GPT-2, OPT, Gemma-2 (eager attention, soft-capping), Mixtral (routed experts; with LoRA the
    per-layer delta weights of peft's ParamWrapper), Phi-3 (fused qkv): one layer against
    activation_bytes_per_layer. Exact in fp32; in bf16 CPU's LayerNorm keeps
    its mean/rstd in bf16 where the planner counts CUDA's fp32 (GPT-2, OPT), and Gemma-2's norms save
    their (1 + weight) fp32 vectors (h per norm), which the planner leaves out."""
    seq = measure.OTHER_SEQ
    two = saved(name, precision, padded, False, lora_rank, lora_dropout, num_layers=2, seq=seq)
    three = saved(name, precision, padded, False, lora_rank, lora_dropout, num_layers=3, seq=seq)
    # LoRA on MoE experts: the delta weights peft builds have the experts' shapes (weight_casts)
    layer = three.activations - two.activations + three.weight_casts - two.weight_casts
    want = measure.planner_layer_bytes(name, precision, padded, lora_rank, lora_dropout, seq=seq)
    assert want == pytest.approx(layer, rel=0.01)
    if precision == "fp32" and name in ("gpt2", "opt", "mixtral-moe", "phi3-fused"):
        assert want == layer
