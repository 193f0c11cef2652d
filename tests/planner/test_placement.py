"""planner.placement: training placements (first ZeRO/offload setup that fits) and RL role
placements (vLLM's pre-allocated memory, TP choice, offload between phases), with their numbers."""

from __future__ import annotations

import pytest

from planner import PlanRequest, estimate, get_gpu, load_model
from planner.placement import (
    VERL_REWARD_ENGINE_UTILIZATION,
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
    reward = p.role("reward")  # verl serves the reward model with a vLLM engine of its own
    assert reward.resident_bytes_per_gpu == 0 and reward.tensor_parallel
    assert p.host_bytes_per_node == (resident + rollout.detail["weights_bytes"] + reward.detail["weights_bytes"]) * 8
    assert p.host_fits is True and p.host_ram_bytes_per_node == 2048 * 2**30  # DGX H100's 2 TB
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


# --- verl's reward engine; host RAM checked against the node's -----------------------------------------


def test_verl_plans_the_reward_model_as_its_own_vllm_engine_and_openrlhf_as_a_frozen_forward():
    req = PlanRequest(model="meta-llama/Llama-3.1-8B", method="ppo")
    verl = rl_placement(req, gpu="H100-80GB", nodes=1, gpus_per_node=8, framework="verl", prompt_len=512,
                        response_len=512)
    rm = verl.role("reward")
    total = get_gpu("H100-80GB").memory_bytes
    assert rm.detail["planned_as"].startswith("vLLM engine")
    assert rm.peak_bytes_per_gpu == rm.detail["budget_bytes"] == int(rm.detail["gpu_memory_utilization"] * total)
    assert rm.detail["gpu_memory_utilization"] <= VERL_REWARD_ENGINE_UTILIZATION
    kept = 0 if verl.offload else sum(r.resident_bytes_per_gpu for r in verl.roles)
    assert verl.phases["reward_scoring"] == rm.detail["budget_bytes"] + kept
    assert rm.detail["kv_pool_tokens"] >= 1024
    orl = rl_placement(req, gpu="H100-80GB", nodes=1, gpus_per_node=8, framework="openrlhf", prompt_len=512,
                       response_len=512)
    assert "reward_scoring" not in orl.phases and orl.role("reward").tensor_parallel is None
    assert orl.role("reward").resident_bytes_per_gpu > 0


def test_a_smaller_reward_model_is_planned_with_its_own_size():
    big = rl_placement(PlanRequest(model=L70, method="ppo"), gpu="H100-80GB", nodes=4, gpus_per_node=8,
                       framework="verl", prompt_len=1024, response_len=1024)
    small = rl_placement(PlanRequest(model=L70, method="ppo", reward_model="meta-llama/Llama-3.1-8B"),
                         gpu="H100-80GB", nodes=4, gpus_per_node=8, framework="verl", prompt_len=1024,
                         response_len=1024)
    assert small.role("reward").detail["model"] == "meta-llama/Llama-3.1-8B"
    assert small.role("reward").detail["weights_bytes"] < big.role("reward").detail["weights_bytes"]
    assert small.host_bytes_per_node < big.host_bytes_per_node


def test_training_placement_refuses_offload_setups_the_nodes_ram_cannot_hold():
    req = PlanRequest(model=L70, method="dpo", seq_len=2048, batch_size=1)
    roomy = training_placement(req, gpu="H100-80GB", nodes=2, gpus_per_node=8)
    assert roomy.fits and roomy.offload == "optimizer" and roomy.host_fits is True
    need_gib = roomy.host_bytes_per_node / 2**30
    tight = training_placement(req, gpu="H100-80GB", nodes=2, gpus_per_node=8, host_ram_gib=need_gib - 1)
    assert not tight.fits and tight.tried[3] == {**tight.tried[3], "host_fits": False, "fits": False}
    assert any("host RAM" in n for n in tight.notes)
    assert "DOES NOT FIT" in tight.summary().splitlines()[0]
    enough = training_placement(req, gpu="H100-80GB", nodes=2, gpus_per_node=8, host_ram_gib=need_gib + 1)
    assert enough.fits and enough.offload == "optimizer"


def test_rl_placement_that_offloads_needs_the_host_ram():
    req = PlanRequest(model=L70, method="ppo")
    kw = dict(gpu="H100-80GB", nodes=4, gpus_per_node=8, framework="openrlhf", prompt_len=1024, response_len=1024)
    ok = rl_placement(req, **kw)
    assert ok.fits and ok.offload == "between-phases"
    short = rl_placement(req, **kw, host_ram_gib=ok.host_bytes_per_node / 2**30 - 1)
    assert not short.fits and short.host_fits is False
    assert any("host RAM" in n and "more nodes" in n for n in short.notes)


def test_host_ram_is_not_checked_where_no_usual_server_is_known():
    p = training_placement(PlanRequest(model="meta-llama/Llama-3.1-8B", method="sft"), gpu="L40S-48GB", nodes=2,
                           gpus_per_node=8)
    assert p.host_ram_bytes_per_node is None and p.host_fits is None
    assert "not checked" in p.summary()


@pytest.mark.parametrize("bad", [0, -5, True, "lots", 1e9])
def test_host_ram_is_validated(bad):
    with pytest.raises(ValueError, match="host_ram_gib"):
        training_placement(PlanRequest(model=L70), gpu="H100-80GB", nodes=1, gpus_per_node=8, host_ram_gib=bad)
