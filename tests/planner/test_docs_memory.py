"""docs/memory.md's worked example and article comparison must be what the planner computes."""

from pathlib import Path

import pytest

from planner import GIB, PlanRequest, estimate, load_model, terms

DOC = (Path(__file__).parents[2] / "docs" / "memory.md").read_text()
L8B = "meta-llama/Llama-3.1-8B"


def _peak(method, **kw):  # the worked example is in pure bf16 (its bf16-kahan figures: test_precision_kahan)
    return estimate(PlanRequest(L8B, method=method, gpu="H100-80GB", **{"precision": "bf16", **kw}),
                    with_min_gpus=False)


@pytest.mark.parametrize("method, lora, figure", [
    ("sft", None, "**65.0 GiB**"), ("dpo", None, "**82.5 GiB"), ("ppo", None, "**154.1 GiB**"),
    ("sft", 16, "SFT **22.2 GiB**"), ("dpo", 16, "DPO **27.4 GiB**"), ("ppo", 16, "PPO **101.0 GiB**"),
])
def test_worked_example_figures(method, lora, figure):
    gib = _peak(method, lora_rank=lora).peak_bytes_per_gpu / GIB
    assert f"{gib:.1f}" in figure
    assert figure in DOC


def test_worked_example_fit_verdicts():
    assert _peak("sft").fits and not _peak("dpo").fits and not _peak("ppo").fits
    assert estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB")).min_gpus["H100-80GB"] == 4
    assert "4 × H100 with ZeRO-3" in DOC
    assert estimate(PlanRequest(L8B, method="dpo", gpu="H100-80GB")).min_gpus["H100-80GB"] == 2
    assert "2 × H100 with ZeRO-3" in DOC


def test_orpo_vs_dpo_figures():
    orpo = estimate(PlanRequest(L8B, method="orpo", precision="bf16"), with_min_gpus=False)
    assert f"ORPO {orpo.peak_bytes_per_gpu / GIB:.1f} GiB" in DOC
    assert f"{orpo.components['logits'] / GIB:.1f} GiB for the loss" in DOC


def test_lora_param_count_in_doc():
    n = terms.lora_params(load_model(L8B), 16)
    assert f"{n:,}" in DOC


@pytest.mark.parametrize("method, precision, figure", [
    ("dpo", "bf16", "**74.5 GB**"), ("ppo", "bf16", "**142.3 GB**"), ("ppo", "amp-bf16", "**282.8 GB**"),
])
def test_article_comparison_figures(method, precision, figure):
    p = estimate(PlanRequest("meta-llama/Llama-2-7b-hf", method=method, precision=precision), with_min_gpus=False)
    assert f"**{p.peak_bytes_per_gpu / 1e9:.1f} GB**" == figure
    assert figure in DOC


def test_ppo_over_three_and_four_h100_figures():
    four = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", zero=3, gpus=4), with_min_gpus=False)
    three = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", zero=3, gpus=3), with_min_gpus=False)
    assert four.fits and not three.fits
    assert f"over 4 GPUs each holds {four.peak_bytes_per_gpu / GIB:.1f} GiB" in DOC
    assert f"over 3, {three.peak_bytes_per_gpu / GIB:.1f} GiB" in DOC


def test_ppo_lora_min_gpus_figure():
    p = estimate(PlanRequest(L8B, method="ppo", gpu="H100-80GB", lora_rank=16))
    assert not p.fits and p.min_gpus["H100-80GB"] == 3
    assert "PPO with LoRA needs 3 × H100 with ZeRO-3" in DOC
