"""The planner's composition: copies per method, phases, sharding, fit, invariants."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import planner
from planner import GIB, PlannerError, PlanRequest, compare, estimate, terms

L8B = "meta-llama/Llama-3.1-8B"


def _roles(plan):
    return [c["role"] for c in plan.copies]


def test_import_does_not_import_torch():
    code = "import sys, planner; planner.estimate(planner.PlanRequest('gpt2')); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "method, roles",
    [
        ("sft", ["policy"]),
        ("rm", ["reward"]),
        ("dpo", ["policy", "reference"]),
        ("ipo", ["policy", "reference"]),
        ("kto", ["policy", "reference"]),
        ("orpo", ["policy"]),
        ("simpo", ["policy"]),
        ("ppo", ["policy", "value", "reference", "reward"]),
        ("grpo", ["policy", "reward"]),  # TRL's GRPO default beta is 0: no reference
        ("rloo", ["policy", "reference", "reward"]),  # RLOO's default beta is 0.05
        ("online-dpo", ["policy", "reference", "judge"]),
    ],
)
def test_copies_per_method(method, roles):
    assert _roles(estimate(PlanRequest(L8B, method=method), with_min_gpus=False)) == roles


@pytest.mark.parametrize(
    "changes, method, dropped",
    [
        ({"lora_rank": 16}, "dpo", "reference"),
        ({"precompute_ref": True}, "dpo", "reference"),
        ({"reward_model": "rule"}, "grpo", "reward"),
        ({"beta": 0.04}, "grpo", None),
        ({"value_model": "shared"}, "ppo", "value"),
        ({"judge_model": "api"}, "online-dpo", "judge"),
    ],
)
def test_options_drop_copies(changes, method, dropped):
    base = _roles(estimate(PlanRequest(L8B, method=method), with_min_gpus=False))
    plan = estimate(PlanRequest(L8B, method=method, **changes), with_min_gpus=False)
    if dropped:
        assert dropped in base and dropped not in _roles(plan)
        assert any(dropped in n for n in plan.notes)
    else:  # grpo with beta > 0 gains its reference
        assert "reference" in _roles(plan) and "reference" not in base


def test_full_finetune_model_states_bf16():
    """bf16 policy: weights 2 + grads 2 + AdamW moments 4 bytes/param; the reference adds 2."""
    p = estimate(PlanRequest(L8B, method="dpo", precision="bf16"), with_min_gpus=False)
    n = 8_030_261_248
    pol, ref = p.copies
    assert (pol["weights_bytes"], pol["gradients_bytes"], pol["optimizer_states_bytes"]) == (2 * n, 2 * n, 4 * n)
    assert (ref["weights_bytes"], ref["gradients_bytes"], ref["optimizer_states_bytes"]) == (2 * n, 0, 0)


def test_amp_policy_is_16_bytes_per_param():
    p = estimate(PlanRequest(L8B, method="sft", precision="amp-bf16"), with_min_gpus=False)
    c = p.copies[0]
    assert c["weights_bytes"] + c["gradients_bytes"] + c["optimizer_states_bytes"] == 16 * 8_030_261_248


def test_deepspeed_bf16_keeps_fp32_master():
    p = estimate(PlanRequest(L8B, method="sft", zero=1, gpus=8), with_min_gpus=False)
    assert p.copies[0]["optimizer_states_bytes"] == math.ceil(12 * 8_030_261_248 / 8)


def test_zero_stages_shard_what_the_paper_says():
    n, w = 8_030_261_248, 8
    rows = {z: estimate(PlanRequest(L8B, method="dpo", zero=z, gpus=w), with_min_gpus=False).copies for z in (1, 2, 3)}
    assert rows[1][0]["gradients_bytes"] == 2 * n  # stage 1: gradients whole
    assert rows[2][0]["gradients_bytes"] == math.ceil(2 * n / w)
    assert rows[2][0]["weights_bytes"] == 2 * n
    assert rows[3][0]["weights_bytes"] == math.ceil(2 * n / w)
    assert rows[3][1]["weights_bytes"] == math.ceil(2 * n / w)  # the frozen reference is sharded too


def test_peak_is_largest_phase_not_sum():
    p = estimate(PlanRequest(L8B, method="ppo", batch_size=4, seq_len=2048), with_min_gpus=False)
    names = [ph["name"] for ph in p.phases]
    assert names == ["generation", "scoring", "forward_backward", "optimizer_step"]
    totals = [ph["total_bytes"] for ph in p.phases]
    assert p.peak_bytes_per_gpu == max(totals) < sum(totals)
    gen = p.phases[0]["components"]
    assert gen["kv_cache"] == terms.kv_cache_bytes(planner.load_model(L8B), 2048, 4, 2)
    assert gen["gradients"] == 0  # gradients are freed before rollouts
    assert all(ph["components"]["optimizer_states"] > 0 for ph in p.phases)  # states live from step 1 on


def test_kv_cache_formula_by_hand():
    m = planner.load_model(L8B)  # 32 layers, 8 kv heads, head_dim 128
    assert terms.kv_cache_bytes(m, 1000, 3, 2) == 2 * 32 * 8 * 128 * 2 * 1000 * 3


def test_multi_stage_peak_is_largest_stage():
    p = estimate(PlanRequest(L8B, method="rlaif"), with_min_gpus=False)
    assert [s["stage"] for s in p.stages] == ["rlaif-label", "dpo"]
    assert p.peak_bytes_per_gpu == max(s["peak_bytes_per_gpu"] for s in p.stages)
    cai = estimate(PlanRequest(L8B, method="cai"), with_min_gpus=False)
    assert [s["stage"] for s in cai.stages] == ["cai-generate", "sft", "dpo"]


def test_fit_and_min_gpus_on_h100():
    p = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", seq_len=2048, batch_size=1))
    assert p.fits is False and p.headroom_bytes < 0
    d = p.min_gpus_detail["H100-80GB"]
    assert d["zero"] == 3 and d["count"] == p.min_gpus["H100-80GB"] >= 2
    # the minimum fits, one fewer does not
    ok = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", seq_len=2048, batch_size=1, zero=3, gpus=d["count"]),
                  with_min_gpus=False)
    assert ok.fits
    if d["count"] > 2:
        less = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", seq_len=2048, batch_size=1, zero=3,
                                    gpus=d["count"] - 1), with_min_gpus=False)
        assert not less.fits


def test_lora_8b_dpo_fits_one_h100():
    p = estimate(PlanRequest(L8B, method="dpo", gpu="H100-80GB", lora_rank=16))
    assert p.fits and p.min_gpus["H100-80GB"] == 1
    assert p.trainable_params == terms.lora_params(planner.load_model(L8B), 16)


def test_qlora_weights_use_nf4_and_keep_embeddings_16bit():
    m = planner.load_model(L8B)
    kinds = m.params_by_kind()
    w = terms.weight_bytes(m, 2, "nf4")
    linear = kinds["linear"]
    expect = linear * terms.nf4_bytes_per_param() + (m.params_total - linear) * 2
    assert w == int(expect)
    assert terms.nf4_bytes_per_param() * 8 == pytest.approx(4.127, abs=1e-3)  # QLoRA paper: 4.127 bits


def test_offload_reports_host_ram():
    p = estimate(PlanRequest(L8B, method="sft", zero=3, gpus=8, offload="optimizer"), with_min_gpus=False)
    assert p.components["optimizer_states"] == 0
    assert p.host_bytes_per_node == 12 * 8_030_261_248  # fp32 master + 2 moments, all 8 GPUs' shares


def test_t4_has_no_bf16_note():
    p = estimate(PlanRequest("gpt2", method="sft", gpu="T4-16GB"), with_min_gpus=False)
    assert any("bf16" in n for n in p.notes)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"model": "no-such-model"}, "model"),
        ({"seq_len": -5}, "seq_len"),
        ({"seq_len": 0}, "seq_len"),
        ({"batch_size": 0}, "batch_size"),
        ({"lora_rank": 5000}, "lora_rank"),  # larger than the hidden size (4096)
        ({"zero": 4}, "zero"),
        ({"gpu": "V100"}, "gpu"),
        ({"method": "reinforce"}, "method"),
        ({"precision": "fp8"}, "precision"),
        ({"quant": "nf4"}, "quant"),  # without LoRA
        ({"offload": "params", "zero": 2}, "offload"),
        ({"gpus": 0}, "gpus"),
    ],
)
def test_invalid_request_names_the_field(changes, field):
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(**{"model": L8B, **changes}))
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}:")


def test_local_config_file_and_dir(tmp_path):
    import json

    cfg = planner.load_model("gpt2").config
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert planner.load_model(str(tmp_path)).params_total == 124_439_808
    assert planner.load_model(str(tmp_path / "config.json")).params_total == 124_439_808
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlannerError, match="bad.json"):
        planner.load_model(str(tmp_path / "bad.json"))


def test_hub_id_offline_names_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlannerError, match="config.json"):
        planner.load_model("some-org/some-model")


# --- invariants over random valid requests ---------------------------------------------------------

MODELS = ["Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1",
          "google/gemma-2-2b", "microsoft/phi-4", "facebook/opt-1.3b", "Qwen/Qwen3-8B"]

requests = st.builds(
    PlanRequest,
    model=st.sampled_from(MODELS),
    method=st.sampled_from(["sft", "dpo", "ipo", "kto", "orpo", "simpo", "ppo", "grpo", "rloo"]),
    seq_len=st.integers(64, 4096),
    batch_size=st.integers(1, 4),
    precision=st.sampled_from(["bf16", "amp-bf16", "fp32"]),
    lora_rank=st.one_of(st.none(), st.sampled_from([8, 16, 64])),
    grad_ckpt=st.booleans(),
    optimizer=st.sampled_from(["adamw", "adamw-8bit", "adafactor", "sgd"]),
    zero=st.sampled_from([0, 1, 2, 3]),
    gpus=st.integers(1, 8),
    chunked_loss=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(requests, st.integers(1, 7), st.integers(0, 64))
def test_more_gpus_under_zero3_never_raise_memory(req, more_gpus, more_nodes):
    """Across GPUs per node and across nodes: a bigger world never raises the per-GPU peak."""
    req = req.replace(zero=3)
    a = estimate(req, with_min_gpus=False).peak_bytes_per_gpu
    wider = req.replace(gpus=min(8, req.gpus + more_gpus), nodes=req.nodes + more_nodes)
    if wider.gpus * wider.nodes == req.gpus * req.nodes:  # 8 per node already: grow by a node
        wider = wider.replace(nodes=wider.nodes + 1)
    assert wider.gpus * wider.nodes > req.gpus * req.nodes
    assert estimate(wider, with_min_gpus=False).peak_bytes_per_gpu <= a


@settings(max_examples=150, deadline=None)
@given(requests)
def test_lora_never_exceeds_full_finetune(req):
    # On one GPU with AdamW (the runners' optimizer). With SGD, Adafactor or 8-bit Adam there are
    # few states to save, and sharded over many GPUs the full fine-tune's states shrink while LoRA's
    # fp32 input copies (activations, never sharded) do not: then LoRA can cost more (docs/memory.md).
    # Without checkpointing, LoRA's saved inputs (PEFT measured at +108% activations with dropout
    # 0.05 on a tiny Llama) can outgrow the states a small model saves.
    req = req.replace(optimizer="adamw", gpus=1, grad_ckpt=True)
    full = estimate(req.replace(lora_rank=None), with_min_gpus=False).peak_bytes_per_gpu
    lora = estimate(req.replace(lora_rank=req.lora_rank or 16), with_min_gpus=False).peak_bytes_per_gpu
    assert lora <= full


@settings(max_examples=150, deadline=None)
@given(requests)
def test_ppo_ge_dpo_ge_orpo(req):
    # Same setup includes the same loss implementation: with TRL's defaults DPO uses a fused LM
    # head and ORPO materialises logits, which can reverse dpo >= orpo (see docs/memory.md).
    # On one GPU: sharded over many, PPO's extra frozen copies shrink per GPU while DPO's doubled
    # sequences (chosen + rejected) keep their activations, and a small model's DPO can pass PPO.
    # Our PPO trainer switches every dropout off, LoRA's too: compare at the same (zero) LoRA dropout.
    # Without checkpointing, activations can decide: DPO puts chosen + rejected through the policy while our
    # PPO update takes the log-softmax over response tokens only, so a small LoRA model's DPO can pass PPO
    # (Qwen2.5-0.5B, LoRA 64, adafactor: PPO 25,800,257,076 B vs DPO 25,801,926,324 B). Compare with it on.
    req = req.replace(chunked_loss=True, gpus=1, lora_dropout=0.0, grad_ckpt=True)
    ppo, dpo, orpo = (estimate(req.replace(method=m), with_min_gpus=False).peak_bytes_per_gpu
                      for m in ("ppo", "dpo", "orpo"))
    assert ppo >= dpo >= orpo


@settings(max_examples=150, deadline=None)
@given(requests, st.integers(1, 4096), st.integers(0, 3))
def test_longer_or_bigger_never_lowers_peak(req, extra_len, extra_batch):
    a = estimate(req, with_min_gpus=False).peak_bytes_per_gpu
    longer = estimate(req.replace(seq_len=req.seq_len + extra_len), with_min_gpus=False).peak_bytes_per_gpu
    bigger = estimate(req.replace(batch_size=req.batch_size + extra_batch), with_min_gpus=False).peak_bytes_per_gpu
    assert longer >= a and bigger >= a


@settings(max_examples=100, deadline=None)
@given(requests, st.sampled_from([("seq_len", -1), ("batch_size", 0), ("zero", 5), ("lora_rank", 10**6),
                                  ("gpu", "K80"), ("nodes", 0), ("optimizer", "lion")]))
def test_invalid_field_always_named(req, bad):
    field, value = bad
    with pytest.raises(PlannerError) as exc:
        estimate(req.replace(**{field: value}), with_min_gpus=False)
    assert exc.value.field == field


def test_compare_keeps_order_and_numbers():
    plans = compare(PlanRequest(L8B, gpu="H100-80GB"), ["ppo", "dpo", "orpo"], with_min_gpus=False)
    assert list(plans) == ["ppo", "dpo", "orpo"]
    assert plans["dpo"].peak_bytes_per_gpu == estimate(PlanRequest(L8B, method="dpo"), with_min_gpus=False).peak_bytes_per_gpu


def test_to_frame_matches_phases():
    p = estimate(PlanRequest(L8B, method="ppo"), with_min_gpus=False)
    df = p.to_frame()
    peak = df[df.is_peak].bytes.sum()
    assert peak == p.peak_bytes_per_gpu
    assert set(df.component) == set(planner.COMPONENTS)
    assert df.groupby("phase").bytes.sum().max() == p.peak_bytes_per_gpu


@pytest.mark.parametrize("changes, field", [
    ({"beta": float("nan"), "method": "grpo"}, "beta"),
    ({"beta": float("inf"), "method": "grpo"}, "beta"),
    ({"engine": "fsdp", "zero": 1, "gpus": 2}, "zero"),
])
def test_more_invalid_requests(changes, field):
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(L8B, **changes), with_min_gpus=False)
    assert exc.value.field == field


def test_fsdp_stage3_scoring_gathers_the_whole_reference():
    """TRL shards the DPO reference with one fully_shard call on its root (trl/models/utils.py
    prepare_fsdp), so under FSDP2 its forward gathers every weight at once, and FSDP2's copy-out
    holds the flat all-gather buffer and the unsharded parameters together: twice the reference,
    beside its shard. DeepSpeed's ZeRO-3 and the trainable policy gather layer by layer."""
    common = dict(model="meta-llama/Llama-3.1-8B", method="dpo", batch_size=1, zero=3, gpus=4, gpu="A100-40GB")
    fsdp = estimate(PlanRequest(**common, engine="fsdp"), with_min_gpus=False)
    ds = estimate(PlanRequest(**common), with_min_gpus=False)
    ref = next(c for c in fsdp.copies if c["role"] == "reference")
    whole = ref["weights_bytes"] * 4  # weights_bytes is the per-GPU shard
    phases = {p["name"]: p["components"] for p in fsdp.phases}
    assert phases["scoring"]["weights"] - phases["forward_backward"]["weights"] == pytest.approx(2 * whole, abs=16)
    assert phases["scoring"]["activations"] == 0  # the copy-out moment: before the forward
    assert fsdp.peak_phase == "scoring" and any("one unit" in n for n in fsdp.notes)
    # the figures docs/memory.md §9 quotes
    # (bf16-kahan, the default: FSDP2 keeps the Kahan buffer; DeepSpeed's fp32 master copy replaces it)
    assert (round(fsdp.peak_bytes_per_gpu / GIB, 2), round(ds.peak_bytes_per_gpu / GIB, 2)) == (52.57, 37.30)
    ds_phases = {p["name"]: p["components"] for p in ds.phases}
    assert ds_phases["scoring"]["weights"] == ds_phases["forward_backward"]["weights"]
    # offloaded, the shard lives in host RAM, but the gathered copies still come to the GPU
    off = estimate(PlanRequest(**common, engine="fsdp", offload="params"), with_min_gpus=False)
    off_phases = {p["name"]: p["components"] for p in off.phases}
    assert off_phases["scoring"]["weights"] - off_phases["forward_backward"]["weights"] == pytest.approx(
        2 * whole, abs=16)
    # stage 2 keeps every frozen weight whole anyway: nothing more to gather
    s2 = estimate(PlanRequest(**{**common, "zero": 2}, engine="fsdp"), with_min_gpus=False)
    s2_phases = {p["name"]: p["components"] for p in s2.phases}
    assert s2_phases["scoring"]["weights"] == s2_phases["forward_backward"]["weights"]
    assert round(s2.peak_bytes_per_gpu / GIB, 2) == 48.05  # bf16-kahan: + the Kahan buffer, sharded
    # LoRA: the reference is the policy with its adapters off, no copy to gather
    lora = estimate(PlanRequest(**common, engine="fsdp", lora_rank=16), with_min_gpus=False)
    assert not any("one unit" in n for n in lora.notes)


def test_every_profile_phase_is_known_and_in_order():
    """The estimate walks a profile's phases in its order; each must be one it can size."""
    from planner.methods import STAGES

    for profile in [*planner.METHODS.values(), *STAGES.values()]:
        assert set(profile.phases) <= set(planner.PHASES), profile.id
        assert list(profile.phases) == sorted(profile.phases, key=planner.PHASES.index), profile.id
        assert all(s in planner.METHODS or s in STAGES for s in profile.stages), profile.id


def test_scoring_runs_the_trainable_copies_where_the_profile_says():
    """KTO's mismatched KL batch goes through the policy without gradients: with LoRA (no separate
    reference) KTO still has a scoring phase, DPO none."""
    q = "Qwen/Qwen2.5-0.5B"
    kto = estimate(PlanRequest(q, method="kto", lora_rank=16), with_min_gpus=False)
    dpo = estimate(PlanRequest(q, method="dpo", lora_rank=16), with_min_gpus=False)
    assert [p["name"] for p in kto.phases] == ["scoring", "forward_backward", "optimizer_step"]
    assert [p["name"] for p in dpo.phases] == ["forward_backward", "optimizer_step"]
    assert planner.METHODS["kto"].scores_trainable_copies and not planner.METHODS["dpo"].scores_trainable_copies


def test_generated_context_comes_from_the_profile(monkeypatch):
    """The KV cache of a generation phase is sized from the profile's fields alone: a new stage is
    a profile, not a branch in the estimate. CAI's revision call reads prompt + response + critique
    and writes the revision (seq_len + 2 completions), one sequence per prompt (its three generate
    calls run one after the other); the generate stage holds K responses per prompt at once. The
    phase is the larger of the prefill (the prompts' KV cache and one layer's no-grad forward over
    all their tokens) and the last step (the whole KV cache). RLAIF's judge is a scoring forward
    (tests/planner/test_stage_trace.py). Traced on CPU: bench/results/stage_trace.md."""
    from dataclasses import replace

    from planner.methods import STAGES

    q = "Qwen/Qwen2.5-0.5B"
    spec = planner.load_model(q)
    req = PlanRequest(q, seq_len=1000, batch_size=4, completion_len=300)

    def kv(method, r=req):
        plan = estimate(r.replace(method=method), with_min_gpus=False)
        return next(p for p in plan.phases if p["name"] == "generation")["components"]["kv_cache"]

    def expected(context, completion, seqs):
        prompt = context - completion
        prefill = terms.kv_cache_bytes(spec, prompt, seqs, 2) + terms.inference_layer_bytes(spec, seqs * prompt, 2)
        full = terms.kv_cache_bytes(spec, context, seqs, 2)
        return terms.kv_cache_bytes(spec, prompt, seqs, 2) if prefill >= full else full

    assert kv("cai-generate") == expected(1600, 300, 4) == terms.kv_cache_bytes(spec, 1300, 4, 2)
    assert kv("generate", req.replace(num_generations=3)) == expected(1000, 300, 4 * 3)
    monkeypatch.setitem(STAGES, "gen-three", replace(STAGES["generate"], id="gen-three",
                                                      generated_context_seq_lens=3))
    assert kv("gen-three", req.replace(num_generations=1)) == expected(3000, 300, 4)

