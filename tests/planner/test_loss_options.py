"""The loss option (PlanRequest.loss, --loss): fused / chunked / materialised, the runner's default
when unset, the chunked_loss alias, validation, and the JSON's resolved value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from planner import PlannerError, PlanRequest, estimate, terms
from planner.models import load_model

QWEN = "Qwen/Qwen2.5-0.5B"  # vocabulary 151,936: the loss decides much of the figure


def _fb(plan) -> dict:
    return next(p for p in plan.phases if p["name"] == "forward_backward")["components"]


@pytest.mark.parametrize("method, default", [("sft", "fused"), ("dpo", "fused"), ("grpo", "fused"),
                                             ("orpo", "materialised"), ("simpo", "materialised"),
                                             ("ppo", "materialised")])
def test_unset_loss_is_the_runners_and_unchanged(method, default):
    unset = estimate(PlanRequest(QWEN, method=method), with_min_gpus=False)
    explicit = estimate(PlanRequest(QWEN, method=method, loss=default), with_min_gpus=False)
    assert unset.loss == default and unset.request["loss"] is None
    assert explicit.peak_bytes_per_gpu == unset.peak_bytes_per_gpu


def test_chunked_loss_alias_is_fused():
    alias = estimate(PlanRequest(QWEN, method="orpo", chunked_loss=True), with_min_gpus=False)
    fused = estimate(PlanRequest(QWEN, method="orpo", loss="fused"), with_min_gpus=False)
    assert alias.loss == "fused" and alias.peak_bytes_per_gpu == fused.peak_bytes_per_gpu
    # an explicit loss wins over the older switch
    assert estimate(PlanRequest(QWEN, method="orpo", chunked_loss=True, loss="materialised"),
                    with_min_gpus=False).loss == "materialised"


def test_materialised_logits_by_hand():
    """SFT full fine-tune, 2 x 512 tokens: the loss's backward holds 12 T V bytes."""
    req = PlanRequest(QWEN, method="sft", batch_size=2, seq_len=512, loss="materialised", grad_ckpt=False)
    assert _fb(estimate(req, with_min_gpus=False))["logits"] == 12 * 1024 * 151_936


def test_chunked_logits_by_hand():
    """T = 1024, V = 151,936, h = 896: ceil(V / h) = 170, T / 170 -> 7 -> chunk 8 tokens;
    2 e T h + 12 C V = 2*2*1024*896 + 12*8*151936."""
    assert terms.loss_chunk_tokens(1024, 151_936, 896) == 8
    assert terms.loss_chunk_tokens(4, 151_936, 896) == 1
    assert terms.loss_chunk_tokens(1000, 4096, 2048) == 512  # ceil(V / h) = 2: 500 -> 512
    assert terms.loss_chunk_tokens(100, 1_000, 4096) == 100  # V < h: the next power of two, capped at T
    # without checkpointing the backward's start (activations + loss) is the phase's peak
    req = PlanRequest(QWEN, method="sft", batch_size=2, seq_len=512, loss="chunked", grad_ckpt=False)
    assert _fb(estimate(req, with_min_gpus=False))["logits"] == 2 * 2 * 1024 * 896 + 12 * 8 * 151_936


def test_loss_order_for_a_large_vocabulary():
    """Materialised logits cost the most; the chunked loss's fp32 chunk is smaller than the fused
    head's fp32 head-gradient accumulator for a 151k vocabulary."""
    peaks = {loss: estimate(PlanRequest(QWEN, method="sft", loss=loss), with_min_gpus=False).peak_bytes_per_gpu
             for loss in ("fused", "chunked", "materialised")}
    assert peaks["materialised"] > 2 * peaks["fused"]
    assert peaks["chunked"] < peaks["fused"]


def test_chunked_scoring_holds_one_chunk():
    """DPO's reference scoring under a chunked loss: hidden states + one chunk's logits and log-softmax."""
    req = PlanRequest(QWEN, method="dpo", batch_size=1, seq_len=512, loss="chunked")
    plan = estimate(req, with_min_gpus=False)
    scoring = next(p for p in plan.phases if p["name"] == "scoring")["components"]
    t = 2 * 512  # chosen + rejected
    c = terms.loss_chunk_tokens(t, 151_936, 896)
    assert scoring["logits"] == 2 * t * 896 + c * 151_936 * (2 + 4)


@pytest.mark.parametrize("loss, msg", [("liger", "accepted: none, fused, chunked, materialised"),
                                       ("Fused", "accepted")])
def test_bad_loss_named(loss, msg):
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(QWEN, loss=loss), with_min_gpus=False)
    assert exc.value.field == "loss" and msg in str(exc.value)


def test_ppo_accepts_materialised_only():
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(QWEN, method="ppo", loss="chunked"), with_min_gpus=False)
    assert exc.value.field == "loss" and "accepted: materialised" in str(exc.value)


def test_a_comparison_plans_ppo_with_its_own_loss_and_says_so():
    from planner.estimate import compare

    plans = compare(PlanRequest(QWEN, loss="chunked"), ["dpo", "ppo"], with_min_gpus=False)
    assert plans["dpo"].loss == "chunked" and plans["ppo"].loss == "materialised"
    assert plans["ppo"].peak_bytes_per_gpu == estimate(PlanRequest(QWEN, method="ppo"), with_min_gpus=False).peak_bytes_per_gpu
    assert any("loss: chunked is not available" in n for n in plans["ppo"].notes)
    assert not any("not available" in n for n in plans["dpo"].notes)


def test_cli_loss_flag_and_json():
    base = [sys.executable, "-m", "alignplan", "plan", "--model", QWEN, "--method", "orpo", "--json"]
    out = subprocess.run(base + ["--loss", "chunked"], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    assert d["request"]["loss"] == "chunked" and d["loss"] == "chunked"
    out = subprocess.run(base, capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    assert d["request"]["loss"] is None and d["loss"] == "materialised"
    bad = subprocess.run(base + ["--loss", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["alignplan plan: error: loss: 'nope' is not accepted; "
                                               "accepted: none, fused, chunked, materialised"]


def test_model_figures_used_above():
    m = load_model(QWEN)
    assert (m.vocab_size, m.hidden_size) == (151_936, 896)


# --- the materialised loss against a real step ---------------------------------------------------

BIG_VOCAB = "llama-v152k"  # hidden 64, 2 layers, Qwen2's 151,936 vocabulary: the loss is nearly everything


@pytest.fixture
def big_vocab_config(monkeypatch):
    pytest.importorskip("transformers")
    import measure  # tests/planner/measure.py (rootdir-relative import, as test_activations does)

    cfg = dict(measure.TINY_CONFIGS["llama-gqa"], vocab_size=151_936)
    monkeypatch.setitem(measure.STEP_CONFIGS, BIG_VOCAB, cfg)
    return measure


@pytest.mark.parametrize("grad_ckpt", [False, True])
def test_materialised_logits_match_a_real_step(big_vocab_config, grad_ckpt):
    """A real fp32 training step (forward, transformers' own causal-LM loss, backward, AdamW; the
    second of two) tracked by MemTracker on CPU. At the step's peak, what autograd saved and the
    backward's temporaries (ACT + TEMP) less the layers' planned activations is the loss's memory:
    the planner's --loss materialised figure (12 T V) is within 5% of it, and the whole
    forward_backward phase within 5% of the measured peak."""
    measure = big_vocab_config
    got = measure.measure_step_peak(BIG_VOCAB, "fp32", grad_ckpt, batch=2, seq=64)
    req = PlanRequest(measure.planner_spec(BIG_VOCAB), method="sft", loss="materialised", seq_len=64,
                      batch_size=2, precision="fp32", grad_ckpt=grad_ckpt)
    fb = {k: v for k, v in _fb(estimate(req, with_min_gpus=False)).items() if k != "overhead"}
    assert fb["logits"] == 12 * 128 * 151_936
    measured_logits = got["ACT"] + got["TEMP"] - fb["activations"]
    assert measured_logits == pytest.approx(fb["logits"], rel=0.05)
    assert got["Total"] == pytest.approx(sum(fb.values()), rel=0.05)
