"""bench/peers.py runs each peer through its own code; check what it feeds them and what they answer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import planner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "bench" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model_id", ["openai-community/gpt2", "meta-llama/Llama-3.2-1B", "Qwen/Qwen2.5-0.5B"])
def test_accelerate_sees_our_backbone_and_prints_its_largest_component(peers, model_id):
    model_bytes, training = peers.accelerate_training_bytes(model_id)
    spec = planner.load_model(model_id)
    # accelerate measures AutoModel: the catalogue's parameters less an untied LM head (these three
    # tie it, so nothing is missing), in fp32, plus the buffers: RoPE's inv_freq and its
    # original_inv_freq copy, head_dim / 2 floats each (GPT-2 has none)
    rope = 0 if spec.model_type == "gpt2" else spec.head_dim
    assert model_bytes == 4 * (spec.params_total - spec.lm_head_params + rope)
    # "Training using Adam" (float16) is the largest component, two fp32 Adam moments: 8 bytes per
    # parameter, not the 16 + activations a step needs
    assert training == 2 * model_bytes


def test_accelerate_leaves_out_an_untied_lm_head(peers):
    model_bytes, _ = peers.accelerate_training_bytes("meta-llama/Llama-3.1-8B")
    spec = planner.load_model("meta-llama/Llama-3.1-8B")
    assert spec.lm_head_params == 128_256 * 4096
    assert model_bytes == 4 * (8_030_261_248 - 128_256 * 4096 + 128)  # + RoPE buffers (head_dim 128)


def test_accelerate_would_call_dpo_a_fit_on_one_h100_and_it_is_not(peers):
    """The comparison docs/memory.md §11b draws: accelerate's one-model figure sits under an H100,
    the two copies DPO loads do not."""
    h100 = planner.GPUS["H100-80GB"].memory_bytes
    _, accelerate_training = peers.accelerate_training_bytes("meta-llama/Llama-3.1-8B")
    dpo = peers.alignplan_bytes("meta-llama/Llama-3.1-8B", "dpo", 1, 0)
    assert dpo["copies"] == 2
    assert accelerate_training < h100 < dpo["peak"]


def test_deepspeed_estimators_get_the_catalogue_counts(peers, monkeypatch):
    """DeepSpeed is not installed here: stand in for its two estimators and check what they are asked."""
    import types

    calls = {}

    def zero2(**kw):
        calls["zero2"] = kw
        return 1, 222

    def zero3(**kw):
        calls["zero3"] = kw
        return 1, 333, None

    stage3 = types.ModuleType("deepspeed.runtime.zero.stage3")
    stage3.estimate_zero3_model_states_mem_needs = zero3
    stage12 = types.ModuleType("deepspeed.runtime.zero.stage_1_and_2")
    stage12.estimate_zero2_model_states_mem_needs = zero2
    for name in ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.zero"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "deepspeed.runtime.zero.stage3", stage3)
    monkeypatch.setitem(sys.modules, "deepspeed.runtime.zero.stage_1_and_2", stage12)
    spec = planner.load_model("meta-llama/Llama-3.1-8B")
    assert peers.deepspeed_bytes(spec, 1, 0) == 222
    assert calls["zero2"] == {"total_params": 8_030_261_248, "num_gpus_per_node": 1, "num_nodes": 1,
                              "cpu_offload": False}
    assert peers.deepspeed_bytes(spec, 8, 3) == 333
    # the largest "layer" DeepSpeed gathers: the 128,256 x 4096 embedding, above one decoder layer
    assert calls["zero3"]["largest_layer_params"] == 128_256 * 4096
    assert calls["zero3"]["total_params"] == 8_030_261_248 and calls["zero3"]["num_gpus_per_node"] == 8
