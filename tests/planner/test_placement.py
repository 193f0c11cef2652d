"""planner.placement: training placements (first ZeRO/offload setup that fits) and RL role
placements (vLLM's pre-allocated memory, TP choice, offload between phases), with their numbers."""

from __future__ import annotations

import pytest

from planner import PlanRequest, estimate, get_gpu, load_model
from planner.placement import (
    kv_bytes_per_token,
    rl_placement,
    rollout_memory,
    training_placement,
)

L70 = "meta-llama/Llama-3.1-70B"


def test_kv_bytes_per_token_splits_kv_heads_over_tp_and_replicates_beyond():
    m = load_model(L70)  # 80 layers, 8 KV heads, head_dim 128
    assert kv_bytes_per_token(m, 1) == 2 * 80 * 8 * 128 * 2
    assert kv_bytes_per_token(m, 4) == 2 * 80 * 2 * 128 * 2
    assert kv_bytes_per_token(m, 16) == 2 * 80 * 1 * 128 * 2  # TP > kv heads: one head per rank


def test_rollout_memory_is_the_pre_allocated_fraction():
    m = load_model(L70)
    total = get_gpu("H100-80GB").memory_bytes
    mem = rollout_memory(m, gpu_total_bytes=total, gpu_memory_utilization=0.5, tensor_parallel=4)
    assert mem["budget_bytes"] == int(0.5 * total)
    assert mem["weights_bytes"] == m.params_total * 2 // 4
    assert mem["kv_pool_bytes"] == mem["budget_bytes"] - mem["weights_bytes"] - mem["activations_bytes"]
    assert mem["kv_pool_tokens"] == mem["kv_pool_bytes"] // mem["kv_bytes_per_token"]


def test_training_placement_takes_the_first_setup_that_fits():
    req = PlanRequest(model=L70, method="dpo", seq_len=2048, batch_size=1)
    p = training_placement(req, gpu="H100-80GB", nodes=2, gpus_per_node=8)
    assert [(t["zero"], t["offload"]) for t in p.tried] == [(0, None), (2, None), (3, None), (3, "optimizer")]
    assert p.fits and p.zero == 3 and p.offload == "optimizer"
    direct = estimate(req.replace(gpu="H100-80GB", gpus=8, nodes=2, zero=3, offload="optimizer"), with_min_gpus=False)
    assert p.peak_bytes_per_gpu == direct.peak_bytes_per_gpu
    assert p.host_bytes_per_node == direct.host_bytes_per_node > 0
    assert p.roles[0].gpus == 16


def test_training_placement_flags_what_does_not_fit():
    req = PlanRequest(model=L70, method="dpo", seq_len=2048, batch_size=1)
    p = training_placement(req, gpu="A10G-24GB", nodes=1, gpus_per_node=2)
    assert not p.fits and p.peak_bytes_per_gpu == min(t["peak_bytes_per_gpu"] for t in p.tried)


def test_rl_placement_ppo_70b_has_every_role_colocated_and_offloads_between_phases():
    req = PlanRequest(model=L70, method="ppo")
    p = rl_placement(req, gpu="H100-80GB", nodes=4, gpus_per_node=8, framework="verl", prompt_len=1024,
                     response_len=1024)
    assert {r.role for r in p.roles} == {"actor", "rollout", "reference", "critic", "reward"}
    rollout = p.role("rollout")
    assert rollout.tensor_parallel * rollout.engines == 32
    assert p.offload == "between-phases" and p.fits
    assert p.tried[0]["fits"] is False  # keeping every state resident does not fit
    assert p.peak_bytes_per_gpu == max(p.phases.values()) <= p.usable_bytes_per_gpu
    assert p.phases["rollout"] == rollout.peak_bytes_per_gpu  # nothing else resident while vLLM runs
    resident = sum(r.resident_bytes_per_gpu for r in p.roles)
    assert p.host_bytes_per_node == resident * 8 + rollout.detail["weights_bytes"] * 8
    # the KV pool holds the concurrency target at the chosen TP, and not at half of it
    assert rollout.detail["kv_pool_tokens"] >= 32 * 2048
    half = rollout_memory(load_model(L70), gpu_total_bytes=get_gpu("H100-80GB").memory_bytes,
                          gpu_memory_utilization=rollout.detail["gpu_memory_utilization"],
                          tensor_parallel=rollout.tensor_parallel // 2)
    assert half["kv_pool_tokens"] < 32 * 2048


def test_rl_placement_grpo_default_beta_drops_reference_and_critic():
    p = rl_placement(PlanRequest(model="meta-llama/Llama-3.1-8B", method="grpo", reward_model="rule"),
                     gpu="H100-80GB", nodes=1, gpus_per_node=8, framework="openrlhf", prompt_len=512,
                     response_len=512, rollout_n=8)
    assert {r.role for r in p.roles} == {"actor", "rollout"}
    assert p.engine == "deepspeed" and p.fits and p.offload is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_shape_is_validated(bad):
    with pytest.raises(ValueError, match="nodes"):
        training_placement(PlanRequest(model=L70), gpu="H100-80GB", nodes=bad, gpus_per_node=8)
