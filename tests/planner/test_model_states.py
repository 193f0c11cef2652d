"""Weights, gradients and AdamW states after one real optimizer step equal the planner's terms.

Tiny random-weight models (GQA Llama, Qwen2 with qkv bias, Qwen3 with q/k norm and tied
embeddings) are loaded as each precision policy loads them, one torch.optim.AdamW step is taken,
and the bytes of the parameters, their .grad tensors and optimizer.state tensors (once per storage)
are compared with the policy copy of planner.estimate(method="sft"). LoRA uses peft (r=8,
all-linear), whose adapters peft upcasts to fp32 (autocast_adapter_dtype=True).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import measure  # noqa: E402  (tests/planner/measure.py)

from planner import terms  # noqa: E402

CASES = [(name, prec, lora) for name in measure.TINY_CONFIGS for prec in ("bf16", "fp32", "amp-bf16")
         for lora in (None, 8)]
# MoE: peft 0.21's all-linear also wraps the router and the fused expert parameters
CASES += [("mixtral-moe", prec, lora) for prec in ("bf16", "fp32") for lora in (None, 8)]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name,precision,lora_rank", CASES)
def test_model_states_match_planner(name, precision, lora_rank):
    got = measure.measure_model_states(name, precision, lora_rank)
    want = measure.planner_model_states(name, precision, lora_rank)
    assert got.weights == want["weights"]
    assert got.gradients == want["gradients"]
    # torch's AdamW keeps a float32 'step' scalar per parameter tensor beside the two moments;
    # the planner leaves those few bytes out.
    assert got.optimizer_states - got.step_counters == want["optimizer_states"]
    assert got.optimizer_states == pytest.approx(want["optimizer_states"], rel=0.01)


@pytest.mark.parametrize("precision,expected", [("bf16", "float32"), ("fp32", "float32")])
def test_peft_adapters_are_fp32(precision, expected):
    """The planner's LORA_ADAPTER_BYTES = 4: peft upcasts bf16 adapters to fp32."""
    got = measure.measure_model_states("llama-gqa", precision, lora_rank=8)
    assert got.adapter_dtypes == (expected,)
    assert terms.LORA_ADAPTER_BYTES == 4


def test_bf16_full_finetune_keeps_bf16_adam_moments():
    """'bf16' policy: 2 + 2 + 4 = 8 bytes per parameter (weights, grads, two bf16 moments)."""
    got = measure.measure_model_states("llama-gqa", "bf16")
    params = measure.planner_spec("llama-gqa").params_total
    assert got.adapter_dtypes == ("bfloat16",)
    assert got.weights == 2 * params
    assert got.gradients == 2 * params
    assert got.optimizer_states - got.step_counters == 4 * params


@pytest.mark.parametrize("name", ["llama-gqa", "qwen3-qknorm", "gpt2", "opt", "mixtral-moe"])
def test_adafactor_states_match_planner(name):
    """transformers' Adafactor (beta1=None) factors every matrix, embeddings included, in fp32."""
    from transformers.optimization import Adafactor

    torch.set_num_threads(1)
    model = measure.build_model(name, "bf16")
    opt = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
    model(**measure.make_batch(False, seq=measure.OTHER_SEQ), use_cache=False).loss.backward()
    opt.step()
    states = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    factored = sum(t.untyped_storage().nbytes() for t in states if t.dim())  # 0-dim: the per-tensor RMS scalars
    spec = measure.planner_spec(name)
    want = terms.optimizer_state_bytes(spec.params_total, "adafactor", 4, adafactor_elems=terms.adafactor_state_elems(spec))
    assert factored == want
    assert {t.dtype for t in states} == {torch.float32}


@pytest.mark.parametrize("name", ["llama-gqa", "qwen3-qknorm", "mixtral-moe"])
def test_adafactor_states_over_lora_adapters_match_planner(name):
    """Adafactor factors each LoRA matrix too: (r + in) + (out + r) per adapter pair, far below the
    r (in + out) unfactored values; peft's expert adapters are one pair per layer."""
    from transformers.optimization import Adafactor

    torch.set_num_threads(1)
    model = measure.build_model(name, "bf16", lora_rank=8)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = Adafactor(trainable, lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
    model(**measure.make_batch(False, seq=measure.OTHER_SEQ), use_cache=False).loss.backward()
    opt.step()
    states = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim()]
    spec = measure.planner_spec(name)
    elems = terms.lora_adafactor_state_elems(spec, 8)
    assert sum(t.numel() for t in states) == elems
    assert elems < terms.lora_params(spec, 8) / 2
    import planner

    plan = planner.estimate(planner.PlanRequest(model=spec, method="sft", lora_rank=8, optimizer="adafactor",
                                                precision="bf16"), with_min_gpus=False)
    policy = plan.copies[0]
    assert policy["optimizer_states_bytes"] == elems * 4
