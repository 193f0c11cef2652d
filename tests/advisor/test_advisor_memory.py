"""The hardware check: figures come from the planner (compared with planner.estimate directly here), and every
suggested change, fed back to the planner, fits."""

from __future__ import annotations

import pytest

import advisor
from advisor import memory as advisor_memory

planner = pytest.importorskip("planner")  # skips only where the planner package is absent

LLAMA = "meta-llama/Llama-3.1-8B"
GIB = 2**30
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


def test_fixes_to_fit_on_a_cpu_are_planned_against_the_ram():
    assert advisor.fixes_to_fit({}, on_gpu=True) == [] and advisor.fixes_to_fit({}, on_gpu=False) == []
    # Qwen2.5-0.5B DPO in fp32 on a CPU with 8 GiB of RAM (13.3 GiB planned): each fix is the planner's
    # figure for the changed request, and it fits in the 8 GiB (or, for "a machine with a GPU", in that GPU)
    request = {"model": "Qwen/Qwen2.5-0.5B", "method": "dpo", "precision": "fp32", "gpu": None}
    base = planner.estimate(planner.PlanRequest(**request), with_min_gpus=False).peak_bytes_per_gpu
    assert base > 8 * GIB
    req = planner.PlanRequest(**request)
    fixes = advisor.fixes_for(req, capacity_bytes=8 * GIB)
    assert fixes and all(f["fits"] and not f["partial"] for f in fixes)
    for f in fixes:
        plan = planner.estimate(planner.PlanRequest(**f["request"]), with_min_gpus=False)
        assert plan.peak_bytes_per_gpu == f["peak_bytes_per_gpu"]
        capacity = planner.GPUS[f["gpu"]].usable_bytes if f["gpu"] else 8 * GIB
        assert plan.peak_bytes_per_gpu <= capacity, f["change"]
    lines = advisor.fixes_to_fit(request, on_gpu=False, capacity_bytes=8 * GIB)
    assert lines == [advisor.fix_line(f) for f in fixes]
    changes = [f["change"] for f in fixes]
    assert any(c.startswith("train LoRA") for c in changes) and not any(c.startswith("QLoRA") for c in changes)
    # with 4 GiB nothing on this machine fits: the smallest GPU it fits on is the fix
    tiny = advisor.fixes_for(req, capacity_bytes=4 * GIB)
    assert [f["change"] for f in tiny] == ["a machine with a GPU: 1 x T4-16GB"]
    assert tiny[0]["request"]["precision"] == "fp32"  # the T4 has no bf16
    # a request the planner cannot take gives no fixes (the list is a help, never an error)
    assert advisor.fixes_to_fit({"model": LLAMA, "method": "no-such-method"}, on_gpu=True) == []


def test_a_larger_gpu_is_a_larger_size_not_the_same_size_under_another_name():
    # Llama-3.1-8B SFT at sequence 384: 79.67 GiB, over the H100-80GB's 79.65 GiB and under the
    # A100-80GB's 80.0 GiB. The A100 "fits" by 0.33 GiB, inside the estimate's error: no fix.
    req = planner.PlanRequest(LLAMA, method="sft", gpu="H100-80GB", seq_len=384)
    peak = planner.estimate(req, with_min_gpus=False).peak_bytes_per_gpu
    assert planner.GPUS["H100-80GB"].usable_bytes < peak <= planner.GPUS["A100-80GB"].usable_bytes
    fixes = advisor.fixes_for(req)
    larger = [f for f in fixes if f["change"].startswith("a larger GPU")]
    assert [f["gpu"] for f in larger] == ["H200-141GB"]
    for f in fixes:  # every fix changes the verdict, checked on its own GPU
        assert f["fits"] and f["peak_bytes_per_gpu"] <= planner.GPUS[f["gpu"]].usable_bytes


def test_fixes_that_only_shrink_the_shortfall_say_so():
    # DPO at 262,144 tokens: 620 GiB per H100, and no single change brings it under 79.6 GiB
    req = planner.PlanRequest(LLAMA, method="dpo", gpu="H100-80GB", seq_len=262_144, batch_size=1)
    base = planner.estimate(req, with_min_gpus=False).peak_bytes_per_gpu
    fixes = advisor.fixes_for(req)
    assert fixes and all(f["partial"] and not f["fits"] and f["peak_bytes_per_gpu"] < base for f in fixes)
    assert [f["peak_bytes_per_gpu"] for f in fixes] == sorted(f["peak_bytes_per_gpu"] for f in fixes)
    line = advisor.fix_line(fixes[0])
    short = (fixes[0]["peak_bytes_per_gpu"] - planner.GPUS["H100-80GB"].usable_bytes) / GIB
    assert line.endswith(f"(not enough alone: still {short:,.1f} GiB over the 79.6 GiB)")


def test_ppos_sharded_fix_is_for_the_export_our_runner_trains_it_unsharded():
    from runners.rundir.decide import UNSHARDED_METHODS

    # one fact, in the method profile: the runner refuses what the advisor sends to the export
    assert UNSHARDED_METHODS == advisor.runner_unsharded_methods() == {"ppo": planner.get_profile("ppo").runner_unsharded}
    ppo = next(f for f in advisor.fixes_for(planner.PlanRequest(LLAMA, method="ppo", gpu="H100-80GB"))
               if "ZeRO-3" in f["change"])
    assert "verl/OpenRLHF export" in ppo["change"] and ppo["gpus_total"] == 4
    dpo = next(f for f in advisor.fixes_for(planner.PlanRequest(LLAMA, method="dpo", gpu="H100-80GB"))
               if "ZeRO-3" in f["change"])
    assert "export" not in dpo["change"]


def test_fix_line_is_the_one_format_of_a_fix():
    assert advisor.fix_line({"change": "use LoRA", "peak_bytes_per_gpu": 3 * 2**29}) == "use LoRA: 1.5 GiB per GPU"
    assert advisor.fix_line({"change": "x"}) == "x: ? per GPU"
