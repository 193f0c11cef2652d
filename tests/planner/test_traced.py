"""planner.traced: the method's real step under FakeTensorMode, traced with MemTracker.

The small config (hidden 256, 4 layers, vocabulary 8,192, 2 x 256 tokens) is traced twice: under
fake tensors and on real CPU tensors. The same step must hold the same bytes in both (that is what
makes a fake trace worth anything); then the trace is held against the analytic plan.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from planner import PlannerError, PlanRequest, estimate
from planner.models import spec_from_config
from planner.traced import trace_plan

SMALL = dict(model_type="llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=688, vocab_size=8192, tie_word_embeddings=False, max_position_embeddings=1024)
MIB = 2**20


def _request(method: str, lora_rank: int | None = None, **kw) -> PlanRequest:
    return PlanRequest(model=spec_from_config(SMALL, "small-llama"), method=method, seq_len=256, batch_size=2,
                       lora_rank=lora_rank, **kw)


def _analytic_without_overhead(req: PlanRequest) -> dict[str, int]:
    plan = estimate(req, with_min_gpus=False)
    return {p["name"]: p["total_bytes"] - p["components"]["overhead"] for p in plan.phases}


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_fake_trace_matches_real_tensors(method):
    req = _request(method)
    fake = trace_plan(req)
    real = trace_plan(req, fake=False)
    assert fake.fake and not real.fake
    assert [p["name"] for p in fake.phases] == [p["name"] for p in real.phases]
    for f, r in zip(fake.phases, real.phases, strict=True):
        assert f["total_bytes"] == pytest.approx(r["total_bytes"], rel=0.02), f["name"]
        for comp in ("weights", "gradients", "optimizer_states"):
            assert f["components"][comp] == r["components"][comp], (f["name"], comp)
    assert fake.peak_bytes_per_gpu == pytest.approx(real.peak_bytes_per_gpu, rel=0.02)


@pytest.mark.parametrize("method, lora_rank", [("sft", None), ("dpo", None), ("sft", 8), ("dpo", 8)])
def test_traced_peak_within_10_percent_of_analytic(method, lora_rank):
    req = _request(method, lora_rank, grad_ckpt=False)
    traced = trace_plan(req)
    analytic = _analytic_without_overhead(req)
    assert traced.peak_bytes_per_gpu == pytest.approx(max(analytic.values()), rel=0.10)
    # the model states are the same bytes, whatever the phase
    plan = estimate(req, with_min_gpus=False)
    ph = next(p for p in traced.phases if p["name"] == "optimizer_step")
    assert ph["components"]["weights"] == pytest.approx(plan.phases[-1]["components"]["weights"], rel=0.001)
    assert ph["components"]["gradients"] == pytest.approx(plan.phases[-1]["components"]["gradients"], rel=0.001)
    assert all(p["components"]["overhead"] == 0 for p in traced.phases)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ipo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo", "rm", "online-dpo"])
@pytest.mark.parametrize("lora_rank", [None, 8])
def test_every_method_traces_within_10_percent_of_analytic(method, lora_rank):
    # without checkpointing: with it, the analytic plan's fused-head moment is 14-22% high on this
    # head-heavy model (test_with_checkpointing_the_analytic_plan_overcounts_the_fused_heads_moment)
    req = _request(method, lora_rank, grad_ckpt=False)
    traced = trace_plan(req)
    analytic = _analytic_without_overhead(req)
    assert [p["name"] for p in traced.phases if p["name"] in analytic] == list(analytic)
    assert traced.peak_bytes_per_gpu == pytest.approx(max(analytic.values()), rel=0.10)
    for p in traced.phases:  # each phase the analytic plan has, within 15%
        if p["name"] not in analytic:
            # DPO/IPO with LoRA: the adapter-off reference forward is traced as a scoring phase; the
            # analytic plan drops the reference copy and has no such phase (it is below the peak)
            assert p["total_bytes"] < max(analytic.values())
        elif p["name"] == "scoring":
            # the analytic no-grad forward keeps one layer's activations beside the logits, which the
            # trace has freed by then: up to 40% high with LoRA on this head-heavy model, and at most
            # 3.1% low (online DPO: 143.8 against 148.3 MiB)
            assert analytic[p["name"]] >= 0.96 * p["total_bytes"]
        else:
            assert p["total_bytes"] == pytest.approx(analytic[p["name"]], rel=0.15), p["name"]


@pytest.mark.parametrize("method, lora_rank", [("sft", None), ("dpo", None), ("sft", 8), ("dpo", 8)])
def test_with_checkpointing_the_analytic_plan_overcounts_the_fused_heads_moment(method, lora_rank):
    """With gradient checkpointing the step peaks in the fused LM head's backward. The trace holds
    there what the analytic plan counts for the head (logits within 3%), but not the recomputed
    layer and the final norm it adds (the head's backward ends before any layer is recomputed), so
    on this head-heavy model (vocabulary 8,192 x hidden 256 against 4 small layers) the analytic
    peak is 14-17% above the trace (LoRA: 18-22%). Reported for planner/estimate.py; this test pins the gap."""
    req = _request(method, lora_rank)
    traced = trace_plan(req)
    plan = estimate(req, with_min_gpus=False)
    analytic = _analytic_without_overhead(req)
    # with LoRA the head is frozen and the peak moves past the head's backward: up to 22% here
    assert 1.0 < max(analytic.values()) / traced.peak_bytes_per_gpu < (1.25 if lora_rank else 1.20)
    if lora_rank:
        return
    fb = next(p for p in traced.phases if p["name"] == "forward_backward")
    planned = next(p for p in plan.phases if p["name"] == "forward_backward")
    assert fb["components"]["logits"] == pytest.approx(planned["components"]["logits"], rel=0.03)
    assert fb["components"]["activations"] < planned["components"]["activations"]


def test_dpo_scores_with_the_reference_and_lora_with_the_adapter_off():
    full = trace_plan(_request("dpo"))
    lora = trace_plan(_request("dpo", 8))
    assert [p["name"] for p in full.phases] == ["scoring", "forward_backward", "optimizer_step"]
    # the full fine-tune holds a second (frozen) copy; the LoRA one scores with its adapter off
    assert full.phases[0]["components"]["weights"] > 1.9 * lora.phases[0]["components"]["weights"]
    assert lora.phases[-1]["components"]["optimizer_states"] < full.phases[-1]["components"]["optimizer_states"] / 10


def test_materialised_loss_holds_the_logits_the_fused_head_does_not():
    """ORPO's trainer materialises the logits (its profile has no fused head); --chunked-loss makes
    the trace compute them tile by tile, which is what bounds the loss's memory."""
    materialised = trace_plan(_request("orpo"))
    chunked = trace_plan(_request("orpo", chunked_loss=True))
    assert materialised.loss == "materialised" and chunked.loss == "fused"
    tokens_x_vocab = 2 * 2 * 255 * SMALL["vocab_size"]  # 2 pairs, chosen + rejected, next-token positions
    fb = {t.loss: next(p for p in t.phases if p["name"] == "forward_backward") for t in (materialised, chunked)}
    assert fb["materialised"]["components"]["logits"] >= 8 * tokens_x_vocab  # fp32 log-softmax + its gradient
    # one bf16 projection tile (here all 1,020 x 8,192 fit in one) + the head's fp32 gradient + fold temporaries
    assert fb["fused"]["components"]["logits"] < fb["materialised"]["components"]["logits"] / 2


def test_generation_traces_the_kv_cache():
    req = _request("grpo")
    traced = trace_plan(req)
    gen = traced.phases[0]
    assert gen["name"] == "generation"
    analytic = estimate(req, with_min_gpus=False).phases[0]
    assert gen["total_bytes"] == pytest.approx(analytic["total_bytes"] - analytic["components"]["overhead"], rel=0.10)
    assert gen["components"]["kv_cache"] > 0
    # the cache is gone once the decode ends
    assert all(p["components"]["kv_cache"] == 0 for p in traced.phases[1:])


@pytest.mark.parametrize("changes, field", [
    (dict(zero=2, gpus=2), "gpus"),
    (dict(quant="nf4", lora_rank=8), "quant"),
    (dict(optimizer="adafactor"), "optimizer"),
    (dict(method="rlaif"), "method"),
    (dict(activation_offload=True), "activation_offload"),
])
def test_refuses_what_one_traced_device_cannot_do(changes, field):
    with pytest.raises(PlannerError) as e:
        trace_plan(_request("dpo").replace(**changes))
    assert e.value.field == field


def test_remote_code_config_needs_permission(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "newarch", "auto_map": {"AutoConfig": "x.Config"}}')
    with pytest.raises(PlannerError, match="trust-remote-code"):
        trace_plan(PlanRequest(model=str(tmp_path), method="sft"))


def test_planner_traced_imports_without_torch():
    code = "import sys, planner.traced; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_8b_traces_under_fake_tensors_without_real_memory():
    """Llama-3.1-8B, SFT at 2,048 tokens: 16 GB of bf16 weights that are never allocated."""
    req = PlanRequest(model="meta-llama/Llama-3.1-8B", method="sft", seq_len=2048, batch_size=1)
    lines: list[str] = []
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.time()
    traced = trace_plan(req, progress=lines.append)
    seconds = time.time() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024
    assert grown < 2**30, f"peak RSS grew by {grown / MIB:.0f} MiB"
    plan = estimate(req, with_min_gpus=False)
    opt = next(p for p in traced.phases if p["name"] == "optimizer_step")
    assert opt["components"]["weights"] == pytest.approx(plan.copies[0]["weights_bytes"], rel=0.001)
    analytic = _analytic_without_overhead(req)
    assert traced.peak_bytes_per_gpu == pytest.approx(max(analytic.values()), rel=0.10)
    assert lines[0].startswith("building model under fake tensors")
    assert any(line.startswith("tracing step 2/2") for line in lines)
    print(f"8B SFT 2048 tokens: traced in {seconds:.1f} s, RSS +{grown / MIB:.0f} MiB, "
          f"peak {traced.peak_bytes_per_gpu / 2**30:.2f} GiB vs analytic {max(analytic.values()) / 2**30:.2f} GiB")


# --- alignplan plan --traced ----------------------------------------------------------------------


def _config_file(tmp_path):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(SMALL))
    return str(path)


def test_cli_traced_json_carries_both_plans_and_ratios(tmp_path, capsys):
    from tests.runners.launch_helpers import run_cli

    code, out, err = run_cli(capsys, "plan", "--model", _config_file(tmp_path), "--method", "sft", "--seq-len", "256",
                             "--batch-size", "2", "--no-grad-ckpt", "--traced", "--json")
    assert code == 0, err
    import json

    d = json.loads(out)
    assert d["peak_bytes_per_gpu"] > 0  # the analytic plan, as --json prints it
    t = d["traced"]
    assert [p["name"] for p in t["phases"]] == ["forward_backward", "optimizer_step"]
    for p in t["phases"]:
        assert p["ratio"] == pytest.approx(p["analytic_bytes"] / p["total_bytes"], abs=1e-4)
    assert t["peak_ratio"] == pytest.approx(1.0, abs=0.10)
    # progress goes to stderr, in order
    lines = [line for line in err.splitlines() if line.startswith(("building model", "tracing step"))]
    assert lines == ["building model under fake tensors…", "tracing step 1/2 (forward_backward, optimizer_step)…",
                     "tracing step 2/2 (forward_backward, optimizer_step)…"]


def test_cli_traced_text_side_by_side(tmp_path, capsys):
    from tests.runners.launch_helpers import run_cli

    code, out, err = run_cli(capsys, "plan", "--model", _config_file(tmp_path), "--method", "dpo", "--seq-len", "256",
                             "--batch-size", "2", "--lora-rank", "8", "--traced")
    assert code == 0, err
    assert "traced (fake tensors, torch MemTracker, step 2 of 2, loss fused)" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["forward_backward", "total"])
    analytic, traced, ratio = map(float, row[2:5])
    assert ratio == pytest.approx(analytic / traced, abs=0.02)
    assert "peak: analytic" in out


@pytest.mark.parametrize("argv, field", [
    (["--zero", "2", "--gpus", "2"], "gpus"),
    (["--compare", "dpo,sft"], "traced"),
    (["--method", "cai"], "method"),
    (["--quant", "nf4", "--lora-rank", "8"], "quant"),
])
def test_cli_traced_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, field):
    from tests.runners.launch_helpers import run_cli

    code, out, err = run_cli(capsys, "plan", "--model", _config_file(tmp_path), "--traced", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"alignplan plan: error: {field}: ")


def test_cli_traced_unknown_architecture_names_it(tmp_path, capsys):
    from tests.runners.launch_helpers import run_cli

    (tmp_path / "config.json").write_text('{"model_type": "brandnewarch", "hidden_size": 64}')
    code, out, err = run_cli(capsys, "plan", "--model", str(tmp_path), "--traced")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "brandnewarch" in err and err.startswith("alignplan plan: error: model: ")


_REMOTE_CONFIG = '''
from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "tiny-remote"
'''

_REMOTE_MODEL = '''
from transformers import LlamaForCausalLM

from .configuration_tiny import TinyRemoteConfig


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig
'''


def test_remote_code_model_traces_when_trusted(tmp_path, capsys):
    """A model whose code ships beside its config (auto_map): refused without --trust-remote-code,
    traced with it, though the analytic planner does not know its model_type."""
    import json

    from tests.runners.launch_helpers import run_cli

    (tmp_path / "configuration_tiny.py").write_text(_REMOTE_CONFIG)
    (tmp_path / "modeling_tiny.py").write_text(_REMOTE_MODEL)
    cfg = {**SMALL, "model_type": "tiny-remote", "num_hidden_layers": 2,
           "auto_map": {"AutoConfig": "configuration_tiny.TinyRemoteConfig",
                        "AutoModelForCausalLM": "modeling_tiny.TinyRemoteForCausalLM"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    argv = ["plan", "--model", str(tmp_path), "--method", "sft", "--seq-len", "128", "--batch-size", "1", "--traced"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--trust-remote-code" in err
    code, out, err = run_cli(capsys, *argv, "--trust-remote-code", "--json")
    assert code == 0, err
    t = json.loads(out)["traced"]
    assert "peak_ratio" not in t and t["phases"][0]["analytic_bytes"] is None
    from planner.models import spec_from_config

    weights = spec_from_config({**cfg, "model_type": "llama"}).params_total * 2  # bf16
    assert t["phases"][-1]["components"]["weights"] == pytest.approx(weights, rel=0.001)
