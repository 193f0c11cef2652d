"""The ppo recipe end to end: a run directory made by the real prepare path, run as
`python -m runners.recipes.ppo --spec ...`, STOP and --resume, metrics.jsonl and samples.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PPO_METRICS = {
    "score", "kl", "non_score_reward", "entropy", "policy_loss", "value_loss", "policy_clipfrac",
    "value_clipfrac", "approx_kl", "response_length", "eos_fraction", "tokens_per_second", "kl_coef",
    "step", "max_steps", "peak_memory_bytes", "memory_kind",
}


def run_recipe(spec_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "runners.recipes.ppo", "--spec", str(spec_path), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def prepared_run(tmp_path: Path, tiny_model_dir: Path, demo_data, **over):
    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec
    from tests.runners.launch_helpers import cpu_devices, no_estimate

    fields = {
        "method": "ppo", "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
        "reward": {"function": "runners.recipes.rewards:marker_reward"},
        "hparams": {"per_device_train_batch_size": 4, "response_length": 6, "learning_rate": 1e-3,
                    "sample_every": 2, "num_samples": 2},
        "max_steps": 4, "save_steps": 2, "gradient_checkpointing": False, "devices": "cpu", **over,
    }
    return prepare(RunSpec.parse(fields), tmp_path / "runs", devices=cpu_devices(), estimate=no_estimate)


@pytest.mark.slow
def test_ppo_recipe_runs_stops_and_resumes(tmp_path, tiny_model_dir, demo_data) -> None:
    run = prepared_run(tmp_path, tiny_model_dir, demo_data)
    run_dir = Path(run.path)
    (run_dir / "STOP").write_text("")  # seen after the first iteration
    first = run_recipe(run_dir / "spec.yaml")
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "stopped" and result["checkpoint"].endswith("checkpoint-1")

    second = run_recipe(run_dir / "spec.yaml", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert PPO_METRICS <= set(row), PPO_METRICS - set(row)
        assert row["max_steps"] == 4 and 0 < row["response_length"] <= 6
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["iteration"] for s in samples] == [1, 1, 3, 3]
    assert {"prompt", "response", "score"} <= set(samples[0])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "succeeded"
    final = Path(result["final_model"])
    assert (final / "config.json").exists() and (Path(result["final_value_model"]) / "config.json").exists()
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir() and (run_dir / "checkpoints" / "checkpoint-4").is_dir()


def test_unknown_hparam_is_named(tmp_path, tiny_model_dir, demo_data) -> None:
    run = prepared_run(tmp_path, tiny_model_dir, demo_data)
    spec_path = Path(run.path) / "spec.yaml"
    text = spec_path.read_text().replace("response_length: 6", "respone_length: 6")
    spec_path.write_text(text)
    out = run_recipe(spec_path)
    assert out.returncode == 2
    assert "hparams.respone_length" in out.stderr and "response_length" in out.stderr


def test_deepspeed_or_fsdp_launch_is_refused(tmp_path, tiny_model_dir, demo_data, monkeypatch) -> None:
    run = prepared_run(tmp_path, tiny_model_dir, demo_data)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    out = run_recipe(Path(run.path) / "spec.yaml")
    assert out.returncode == 2
    [line] = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert "PPO trains two models" in line and "DDP only" in line and "LoRA" in line
