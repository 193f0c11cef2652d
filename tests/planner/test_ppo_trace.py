"""The planner's ppo phases against one real iteration of our PPOTrainer, traced on CPU
(bench/ppo_trace.py at test size): every phase within 10%, full fine-tune (with and without
gradient checkpointing) and LoRA, on a Llama-like and a Qwen2-like (qkv bias) layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

_PATH = Path(__file__).resolve().parents[2] / "bench" / "ppo_trace.py"
_spec = importlib.util.spec_from_file_location("ppo_trace", _PATH)
ppo_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ppo_trace)


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("name, case, grad_ckpt, lora_rank", [
    ("tiny-llama", "full", False, None),
    ("tiny-llama", "full+ckpt", True, None),
    ("tiny-qwen2", "lora", False, 8),
])
def test_each_ppo_phase_within_ten_percent(name, case, grad_ckpt, lora_rank):
    row = ppo_trace.compare(name, case, grad_ckpt, lora_rank, ppo_trace.TINY_SHAPE)
    assert row["micro_batch"] == 2 and row["rollout_batch"] == 4  # the update runs on mini-batches
    assert row["completion_len"] == ppo_trace.TINY_SHAPE["response_len"]
    ratios = {p["phase"]: p["ratio"] for p in row["phases"]}
    assert set(ratios) == set(ppo_trace.PHASES)
    for p in row["phases"]:
        assert 0.9 <= p["ratio"] <= 1.1, (p["phase"], p["traced_bytes"], p["planned_bytes"], ratios)
    # the phases are told apart: scoring holds logits that generation does not, the update gradients
    traced = {p["phase"]: p["traced"] for p in row["phases"]}
    assert traced["scoring"]["total"] > traced["generation"]["total"]
    assert traced["optimizer_step"]["grad"] > 0 and traced["generation"]["grad"] == 0
