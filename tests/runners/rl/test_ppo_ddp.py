"""PPO across two DDP processes (accelerate, CPU + gloo): each process rolls out its own slice of the
prompts, gradients are averaged so the weights stay identical, and the logged metrics are the mean
over both processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ppo_ddp_worker.py")
REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ppo_shards_prompts_syncs_weights_and_averages_metrics(tmp_path, tiny_model_dir):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--machine_rank", "0", "--main_process_ip", "127.0.0.1",
            "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
            str(WORKER), str(tiny_model_dir), str(tmp_path)]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # each iteration's 8 prompts: 4 per process, disjoint
    for b0, b1 in zip(r0["batches"], r1["batches"], strict=True):
        assert len(b0) == len(b1) == 4 and not set(b0) & set(b1)
    # DDP averaged the gradients: both processes end with the same weights, and they moved
    assert r0["policy_sum"] == pytest.approx(r1["policy_sum"], rel=0, abs=1e-9)
    assert r0["value_sum"] == pytest.approx(r1["value_sum"], rel=0, abs=1e-9)
    assert r0["policy_start"] == r1["policy_start"] and abs(r0["policy_sum"] - r0["policy_start"]) > 1e-6
    # every process logs the same metrics (its own clock aside), the score the mean of both processes' rewards
    clock = {"tokens_per_second", "iteration_seconds", "time", "generation_time_s", "generation_tokens_per_second",
             "step_time_s"}

    def metrics(rows):
        return [{k: v for k, v in row.items() if k not in clock} for row in rows]

    assert metrics(r0["rows"]) == metrics(r1["rows"]) and len(r0["rows"]) == 3
    for i, row in enumerate(r0["rows"]):
        both = r0["local_scores"][i] + r1["local_scores"][i]
        assert row["score"] == pytest.approx(sum(both) / len(both), abs=1e-5)
