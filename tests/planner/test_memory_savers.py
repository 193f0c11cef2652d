"""The memory savers the runners do not use, each counted by hand on a small Llama layout:
activation offloading, optimizer in backward, peft's k-bit preparation upcast; and the plan's
assumptions line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from planner import PlannerError, PlanRequest, estimate, terms
from planner.models import load_model

# h 64, I 128, 2 layers, 4 heads of 16 (2 kv heads), vocabulary 1000, untied head
SMALL = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": False}
NORMS = 2 * 2 * 64 + 64  # two per layer + the final one
EMBED = HEAD = 1000 * 64
LINEAR = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128)  # q, k, v, o, gate, up, down per layer


def _phase(plan, name):
    return next((p["components"] for p in plan.phases if p["name"] == name), None)


def test_small_layout_is_what_the_hand_counts_assume():
    m = load_model(SMALL)
    assert m.params_total == NORMS + EMBED + HEAD + LINEAR


def test_kbit_upcast_is_two_bytes_per_non_quantized_param():
    assert terms.kbit_upcast_bytes(load_model(SMALL)) == (NORMS + EMBED + HEAD) * (4 - 2)
    assert terms.kbit_upcast_bytes(load_model(SMALL), scalar_head=True) == (NORMS + EMBED + 64) * 2
    req = PlanRequest(SMALL, method="sft", lora_rank=8, quant="nf4")
    default, off = (estimate(r, with_min_gpus=False) for r in (req, req.replace(kbit_upcast=False)))
    assert default.copies[0]["weights_bytes"] - off.copies[0]["weights_bytes"] == (NORMS + EMBED + HEAD) * 2
    assert default.assumed["kbit_upcast"] is True and off.assumed["kbit_upcast"] is False
    assert estimate(req.replace(kbit_upcast=True), with_min_gpus=False).peak_bytes_per_gpu == default.peak_bytes_per_gpu


def test_kbit_upcast_needs_quant():
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(SMALL, method="sft", kbit_upcast=True), with_min_gpus=False)
    assert exc.value.field == "kbit_upcast" and "nf4 or int8" in str(exc.value)


def test_optimizer_in_backward_keeps_one_gradient():
    """Full fine-tune in pure bf16: the largest tensor is the embedding (or head), 64,000 x 2 bytes;
    no optimizer_step phase; at the backward's end that one gradient instead of all of them."""
    base = PlanRequest(SMALL, method="sft", precision="bf16", batch_size=1, seq_len=8)  # gradients dominate
    plain, oib = (estimate(r, with_min_gpus=False) for r in (base, base.replace(optimizer_in_backward=True)))
    assert terms.largest_gradient_bytes(load_model(SMALL), 2) == 64_000 * 2
    assert _phase(plain, "optimizer_step")["gradients"] == load_model(SMALL).params_total * 2
    assert _phase(oib, "optimizer_step") is None
    assert _phase(oib, "forward_backward")["gradients"] <= 64_000 * 2
    assert oib.peak_bytes_per_gpu <= plain.peak_bytes_per_gpu
    # LoRA r=8: the largest adapter matrix is gate/up/down's B or A, 8 x 128, fp32
    assert terms.largest_gradient_bytes(load_model(SMALL), 2, lora_rank=8) == 8 * 128 * 4


@pytest.mark.parametrize("change", [{"zero": 2}, {"gpus": 2}])
def test_optimizer_in_backward_refuses_sharding_and_ddp(change):
    with pytest.raises(PlannerError) as exc:
        estimate(PlanRequest(SMALL, optimizer_in_backward=True, **change), with_min_gpus=False)
    assert exc.value.field == "optimizer_in_backward" and "gradient accumulation" in str(exc.value)


def test_optimizer_in_backward_min_gpus_is_one_or_none():
    plan = estimate(PlanRequest(SMALL, method="sft", optimizer_in_backward=True))
    assert set(plan.min_gpus.values()) == {1}


def test_activation_offload_keeps_two_layers_on_the_gpu():
    """Without checkpointing each of L layers saves A bytes; offloaded, 2 A stay on the GPU (here
    L = 2: nothing changes) and L A go to host memory. With 4 layers the GPU saves 2 A."""
    four = {**SMALL, "num_hidden_layers": 4}
    base = PlanRequest(four, method="sft", grad_ckpt=False, batch_size=2, seq_len=128, loss="fused")
    plain, off = (estimate(r, with_min_gpus=False) for r in (base, base.replace(activation_offload=True)))
    m = load_model(four)
    per_layer = terms.activation_bytes_per_layer(m, 256, 2, 2, seq_len=128)
    assert terms.offloaded_activation_bytes(per_layer, 4) == (2 * per_layer, 4 * per_layer)
    fb_plain, fb_off = _phase(plain, "forward_backward"), _phase(off, "forward_backward")
    assert fb_plain["activations"] - fb_off["activations"] == 2 * per_layer
    assert off.host_bytes_per_node == 4 * per_layer
    # checkpointed: each layer's input, r T h, is what is offloaded
    ck = estimate(base.replace(grad_ckpt=True, activation_offload=True), with_min_gpus=False)
    assert ck.host_bytes_per_node == 4 * 2 * 256 * 64


def test_assumptions_line_and_dict():
    plan = estimate(PlanRequest("Qwen/Qwen2.5-0.5B", method="dpo", zero=2, gpus=4), with_min_gpus=False)
    assert plan.assumptions == ("Assumes TRL 1.16 DPOTrainer; loss fused (fused LM head, no T x V logits); "
                                "bf16-kahan, adamw; grad ckpt on; sharding ZeRO-2 (deepspeed) over 4 GPU(s); "
                                "offload: none; micro-batch 8 x 1024 tokens")
    assert plan.assumed["trainer"] == "TRL 1.16 DPOTrainer" and plan.assumed["loss_is_trainer_default"]
    other = estimate(PlanRequest("Qwen/Qwen2.5-0.5B", method="dpo", loss="materialised"), with_min_gpus=False)
    assert "loss materialised (materialised fp32 logits, not the trainer default)" in other.assumptions


def test_cli_shows_assumptions_and_flags():
    cmd = [sys.executable, "-m", "alignplan", "plan", "--model", "Qwen/Qwen2.5-0.5B", "--method", "sft",
           "--activation-offload", "--optimizer-in-backward"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    peak = next(i for i, x in enumerate(lines) if x.strip().startswith("peak per GPU"))
    assert lines[peak + 1].strip().startswith("Assumes TRL 1.16 SFTTrainer; loss fused")
    assert "offload: activations + optimizer in backward" in lines[peak + 1]
    d = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert d["assumptions"] == lines[peak + 1].strip()
    assert d["assumed"]["offloads"] == ["activations"] and d["assumed"]["optimizer_in_backward"] is True
    assert d["request"]["activation_offload"] is True
    bad = subprocess.run(cmd + ["--zero", "3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "optimizer_in_backward" in bad.stderr


def test_docs_section_figures_are_the_codes():
    """docs/memory.md §5a quotes these figures: they are what the planner computes."""
    from pathlib import Path

    from planner import GIB

    doc = (Path(__file__).resolve().parents[2] / "docs" / "memory.md").read_text()
    peaks = {loss: estimate(PlanRequest("Qwen/Qwen2.5-0.5B", method="sft", loss=loss),
                            with_min_gpus=False).peak_bytes_per_gpu / GIB for loss in ("fused", "chunked", "materialised")}
    assert (f"fused {peaks['fused']:.1f} GiB,\nchunked {peaks['chunked']:.1f} GiB, "
            f"materialised {peaks['materialised']:.1f} GiB") in doc
    q = PlanRequest("Qwen/Qwen2.5-7B", method="sft", lora_rank=16, quant="nf4")
    on, off = (estimate(r, with_min_gpus=False).copies[0]["weights_bytes"] / GIB
               for r in (q, q.replace(kbit_upcast=False)))
    assert f"weights {on:.2f} GiB with it, {off:.2f} GiB without" in doc
    line = estimate(PlanRequest("Qwen/Qwen2.5-0.5B", method="dpo", zero=2, gpus=4), with_min_gpus=False).assumptions
    assert f"`{line}`" in doc
