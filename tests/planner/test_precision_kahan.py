"""The planner models bf16-kahan exactly as the runner does: bf16 weights, gradients and AdamW moments
plus a bf16 Kahan compensation buffer per trainable parameter (10 bytes, against pure bf16's 8)."""

from planner import PlanRequest, estimate, load_model, terms

MODEL = "Qwen/Qwen2.5-0.5B"


def _states(**kw) -> int:
    return estimate(PlanRequest(MODEL, method="sft", **kw), with_min_gpus=False).components["optimizer_states"]


def test_bf16_kahan_is_the_default_and_adds_two_bytes_per_trainable_parameter() -> None:
    assert PlanRequest(MODEL).precision == "bf16-kahan"
    params = load_model(MODEL).params_total
    assert _states(precision="bf16-kahan") - _states(precision="bf16") == 2 * params
    assert terms.PRECISIONS["bf16-kahan"].compensation == 2 and terms.PRECISIONS["bf16"].compensation == 0


def test_no_compensation_where_the_runner_keeps_none() -> None:
    # another optimizer than AdamW, and DeepSpeed's fp32 master copy, run without Kahan's buffer
    assert _states(precision="bf16-kahan", optimizer="adamw-8bit") == _states(precision="bf16", optimizer="adamw-8bit")
    z = {"zero": 2, "gpus": 2, "engine": "deepspeed"}
    assert _states(precision="bf16-kahan", **z) == _states(precision="bf16", **z)


def test_docs_memory_figures_at_the_default_precision() -> None:
    from pathlib import Path

    from planner import GIB

    doc = (Path(__file__).parents[2] / "docs" / "memory.md").read_text()
    l8b = "meta-llama/Llama-3.1-8B"
    for method, label in (("sft", "SFT"), ("dpo", "DPO"), ("orpo", "ORPO")):
        plan = estimate(PlanRequest(l8b, method=method, gpu="H100-80GB"), with_min_gpus=False)
        assert f"{label} **{plan.peak_bytes_per_gpu / GIB:.1f} GiB**" in doc
    sft = estimate(PlanRequest(l8b, method="sft", gpu="H100-80GB"))
    assert not sft.fits and sft.min_gpus["H100-80GB"] == 2 and "2 × H100 with ZeRO-3),\nDPO **" in doc
