"""The hardware check: figures come from the planner (compared with planner.estimate directly here), and every
suggested change, fed back to the planner, fits."""

from __future__ import annotations

import pytest

import advisor
from advisor import memory as advisor_memory

planner = pytest.importorskip("planner")  # skips only where the planner package is absent

LLAMA = "meta-llama/Llama-3.1-8B"
DPO_ANSWERS = {"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 2000}


def _plan(method: str, model: str = LLAMA, gpu: str = "A100-80GB", gpus: int = 1):
    return planner.estimate(planner.PlanRequest(model=model, method=method, gpu=gpu, gpus=gpus))


def test_llama_8b_on_one_a100_reports_planner_figures_for_dpo_and_ppo():
    rec = advisor.advise({**DPO_ANSWERS, "model": LLAMA, "gpu": "A100-80GB", "gpus": 1})
    mem = rec.memory
    assert mem["available"] and mem["gpu"] == "A100-80GB" and mem["gpus"] == 1
    by_method = {e["method"]: e for e in mem["methods"]}
    assert set(by_method) == {"dpo", "ppo"}
    assert by_method["dpo"]["role"] == "recommended" and by_method["ppo"]["role"] == "runner_up"
    for method in ("dpo", "ppo"):
        plan = _plan(method)
        assert by_method[method]["peak_bytes_per_gpu"] == plan.peak_bytes_per_gpu
        assert by_method[method]["fits"] == plan.fits
        assert by_method[method]["peak_phase"] == plan.peak_phase
    # RLHF keeps four model copies: its per-GPU peak is well above DPO's
    assert by_method["ppo"]["peak_bytes_per_gpu"] > by_method["dpo"]["peak_bytes_per_gpu"]
    assert by_method["ppo"]["fits"] is False
    assert mem["recommended_fits"] == by_method["dpo"]["fits"]


def test_a_recommendation_that_does_not_fit_comes_with_changes_that_fit_when_fed_back():
    rec = advisor.advise({"reward_signal": "episode", "model": LLAMA, "gpu": "A100-80GB", "gpus": 1})
    assert rec.method == "ppo"
    mem = rec.memory
    assert mem["recommended_fits"] is False and _plan("ppo").fits is False
    assert mem["suggestions"], "a PPO run on one A100 must come with ways to make it fit"
    changes = " | ".join(s["change"] for s in mem["suggestions"])
    assert "ZeRO-3" in changes
    # LoRA alone is offered only when it fits: our PPO trains the value model in full (planner fc0f3bb),
    # so PPO with LoRA r16 on Llama-3.1-8B is 101.0 GiB, over one A100-80GB
    lora = planner.estimate(planner.PlanRequest(**{**_plan("ppo").request, "lora_rank": 16}))
    assert ("LoRA" in changes) == bool(lora.fits)
    for s in mem["suggestions"]:
        plan = planner.estimate(planner.PlanRequest(**s["request"]))
        assert plan.fits is True, s["change"]
        assert plan.peak_bytes_per_gpu == s["peak_bytes_per_gpu"]
    zero = next(s for s in mem["suggestions"] if "ZeRO-3" in s["change"])
    assert zero["gpus_total"] > 1 and zero["request"]["zero"] == 3
    # the smallest such count: one GPU fewer does not fit
    fewer = zero["gpus_total"] - 1
    if fewer > 1:
        nodes = -(-fewer // 8)  # the planner's own layout: 8 per node beyond 8
        req = planner.PlanRequest(**{**zero["request"], "gpus": min(fewer, 8), "nodes": nodes})
        if nodes == 1 or fewer % 8 == 0:
            assert planner.estimate(req).fits is False


def test_reference_free_fallbacks_are_offered_for_dpo_when_they_fit():
    rec = advisor.advise({**DPO_ANSWERS, "model": LLAMA, "gpu": "A100-80GB"})
    if rec.memory["recommended_fits"]:
        pytest.skip("DPO fits here; nothing to suggest")
    methods = {s["method"] for s in rec.memory["suggestions"]}
    for m in ("orpo", "simpo"):
        if _plan(m).fits:
            assert m in methods


def test_a_recommendation_that_fits_needs_no_suggestion():
    rec = advisor.advise({**DPO_ANSWERS, "model": "Qwen/Qwen2.5-0.5B", "gpu": "H100-80GB"})
    dpo = next(e for e in rec.memory["methods"] if e["role"] == "recommended")
    assert dpo["fits"] is True == _plan("dpo", "Qwen/Qwen2.5-0.5B", "H100-80GB").fits
    assert rec.memory["suggestions"] == []


def test_model_without_gpu_assumes_the_texts_single_a100():
    rec = advisor.advise({**DPO_ANSWERS, "model": "llama-3.1-8b"})
    assert rec.memory["gpu"] == "A100-80GB" and rec.memory["gpus"] == 1
    assert any("assumed A100-80GB" in n for n in rec.memory["notes"])


def test_rlaif_and_cai_use_the_planners_own_profiles():
    rec = advisor.advise({"reward_signal": "none", "task": "factual", "annotators": "none",
                          "model": "Qwen/Qwen2.5-0.5B", "gpu": "H100-80GB"})
    assert rec.method == "rlaif"
    entry = next(e for e in rec.memory["methods"] if e["role"] == "recommended")
    assert entry["method"] == "rlaif"
    assert entry["peak_bytes_per_gpu"] == _plan("rlaif", "Qwen/Qwen2.5-0.5B", "H100-80GB").peak_bytes_per_gpu


def test_unknown_model_or_gpu_is_an_error_naming_the_field():
    with pytest.raises(advisor.AdvisorError, match="^model: .*not in the catalogue"):
        advisor.advise({**DPO_ANSWERS, "model": "no-such-model"})
    with pytest.raises(advisor.AdvisorError, match="^gpu: 'Z80' is not accepted; accepted: .*A100-80GB"):
        advisor.advise({**DPO_ANSWERS, "model": LLAMA, "gpu": "Z80"})
    with pytest.raises(advisor.AdvisorError, match="^gpus: "):
        advisor.advise({**DPO_ANSWERS, "model": LLAMA, "gpus": 0})


def test_without_the_planner_the_section_says_so(monkeypatch):
    monkeypatch.setattr(advisor_memory, "planner_available", lambda: False)
    rec = advisor.advise({**DPO_ANSWERS, "model": LLAMA})
    assert rec.memory == {"available": False, "reason": "the planner package is not installed; no memory check"}
    assert "not installed" in advisor.render_text(rec)


def test_no_model_no_memory_section():
    assert advisor.advise(DPO_ANSWERS).memory is None


def test_qlora_is_suggested_only_when_lora_alone_does_not_fit():
    rec = advisor.advise({**DPO_ANSWERS, "model": "meta-llama/Llama-3.1-70B", "gpu": "A100-80GB"})
    changes = [s["change"] for s in rec.memory["suggestions"]]
    lora = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-70B", method="dpo", gpu="A100-80GB",
                                                lora_rank=16))
    assert lora.fits is False
    assert not any(c.startswith("train LoRA") for c in changes)
    qlora = next(s for s in rec.memory["suggestions"] if s["change"].startswith("QLoRA"))
    assert qlora["request"]["quant"] == "nf4" and qlora["request"]["lora_rank"] == 16
    assert planner.estimate(planner.PlanRequest(**qlora["request"])).fits is True


def test_public_fixes_for_returns_only_changes_that_fit():
    import advisor
    import planner

    req = planner.PlanRequest("meta-llama/Llama-3.1-8B", method="dpo", gpu="A100-40GB")
    assert not planner.estimate(req, with_min_gpus=False).fits
    fixes = advisor.fixes_for(req)
    assert fixes and all(f["fits"] for f in fixes)
    assert all(f["peak_gib"] * planner.GIB <= planner.GPUS["A100-40GB"].memory_bytes or f.get("gpu") for f in fixes)


def test_precomputing_the_reference_is_offered_where_it_can_make_the_run_fit():
    import advisor
    import planner

    # Llama-3.1-8B DPO on one H100 in pure bf16: 82.5 GiB with the reference, 66.8 GiB with it precomputed
    req = planner.PlanRequest("meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB", precision="bf16")
    fix = next(f for f in advisor.fixes_for(req) if f["change"].startswith("precompute the reference"))
    assert fix["fits"] and fix["request"]["precompute_ref"] is True and round(fix["peak_gib"], 1) == 66.8
    # not where there is nothing to drop: LoRA's reference is the adapter-off policy; GRPO cannot
    for other in (req.replace(lora_rank=16, gpu="A10G-24GB"), req.replace(method="grpo", gpu="A10G-24GB")):
        assert not any(f["change"].startswith("precompute") for f in advisor.fixes_for(other))
    assert planner.can_precompute_reference("kto") and not planner.can_precompute_reference("grpo")


def test_fixes_to_fit_gives_one_line_per_planner_checked_fix():
    req = planner.PlanRequest(LLAMA, method="dpo", gpu="A100-40GB")
    request = {**advisor_memory.request_dict(req), "model_id": LLAMA}  # as a run's plan.json records it
    lines = advisor.fixes_to_fit(request, on_gpu=True)
    fixes = advisor.fixes_for(req)
    assert lines and lines == [advisor.fix_line(f) for f in fixes]
    first = fixes[0]
    assert lines[0] == f"{first['change']}: {first['peak_bytes_per_gpu'] / 2**30:.1f} GiB per GPU"


def test_fixes_to_fit_on_a_cpu_or_without_a_request():
    assert advisor.fixes_to_fit({}, on_gpu=True) == [] and advisor.fixes_to_fit({}, on_gpu=False) == []
    cpu = advisor.fixes_to_fit({"model": LLAMA, "method": "dpo"}, on_gpu=False)
    assert len(cpu) == 3 and cpu[0].startswith("turn on LoRA") and "GPU" in cpu[2]
    # a request the planner cannot take gives no fixes (the list is a help, never an error)
    assert advisor.fixes_to_fit({"model": LLAMA, "method": "no-such-method"}, on_gpu=True) == []


def test_fix_line_is_the_one_format_of_a_fix():
    assert advisor.fix_line({"change": "use LoRA", "peak_bytes_per_gpu": 3 * 2**29}) == "use LoRA: 1.5 GiB per GPU"
    assert advisor.fix_line({"change": "x"}) == "x: ? per GPU"
