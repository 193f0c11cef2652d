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


def test_the_peers_do_not_see_the_second_copy(peers):
    row = peers.alignplan_bytes("meta-llama/Llama-3.1-8B", "dpo", 1, 0)
    sft = peers.alignplan_bytes("meta-llama/Llama-3.1-8B", "sft", 1, 0)
    assert (row["copies"], sft["copies"]) == (2, 1)
    _, accelerate_training = peers.accelerate_training_bytes("meta-llama/Llama-3.1-8B")
    assert accelerate_training < sft["peak"] < row["peak"]
