"""Issue 14: every run records its speed (step time, tokens/s, generation time, MFU achieved) in
result.json and the registry, beside the speed predicted at launch."""

from __future__ import annotations

import json
import sqlite3
import statistics
from types import SimpleNamespace

import pytest
from launch_helpers import stop_leftovers

from runners.registry.store import Registry
from runners.rundir import timing


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def test_measure_leaves_out_warmup_and_takes_medians():
    rows = [
        {"step": 1, "step_time_s": 9.0, "tokens_per_second": 10.0},  # warm-up: left out
        {"step": 2, "step_time_s": 7.0, "tokens_per_second": 20.0},  # warm-up: left out
        {"step": 3, "step_time_s": 1.0, "tokens_per_second": 100.0},
        {"step": 3, "eval_loss": 0.5, "step_time_s": 50.0},  # held-out evaluation: not a step
        {"step": 4, "step_time_s": 3.0, "tokens_per_second": 300.0},
        {"step": 5, "step_time_s": 2.0, "tokens_per_second": 200.0, "generation_time_s": 0.5,
         "generation_tokens_per_second": 40.0},
    ]
    m = timing.measure(rows)
    assert m["steps_measured"] == 3
    assert m["step_time_s"] == 2.0
    assert m["tokens_per_second"] == 200.0
    assert m["tokens_per_step"] == 400.0  # 100 x 1, 300 x 3, 200 x 2 tokens per step: median 400
    assert m["generation_time_s"] == 0.5 and m["generation_tokens_per_second"] == 40.0


def test_generation_stage_rows_are_batches():
    # a generation stage's step counter counts prompts; each row is a batch of batch_seconds
    rows = [{"step": 4 * i, "batch_seconds": s, "generation_time_s": s} for i, s in enumerate([5.0, 4.0, 1.0, 2.0, 3.0], 1)]
    m = timing.measure(rows)
    assert m["steps_measured"] == 3 and m["step_time_s"] == 2.0


def test_monitor_step_time_is_the_interval_over_the_steps_it_covers(tmp_path, monkeypatch):
    from runners.recipes import callbacks

    clock = iter([99.0, 100.0, 103.0, 109.0])  # 99: the "first step" phase stamp on_train_begin writes
    monkeypatch.setattr(callbacks.time, "time", lambda: next(clock))
    mon = callbacks.RunMonitor(tmp_path, memory=SimpleNamespace(sample=lambda: 0, kind="test"))
    state = SimpleNamespace(global_step=0, max_steps=4, epoch=0.0, num_input_tokens_seen=0, is_world_process_zero=True)
    mon.on_train_begin(None, state, None)
    state.global_step = 1
    mon.on_log(None, state, None, logs={"loss": 1.0})
    state.global_step = 4  # logging every 3 steps: 6 s over 3 steps
    mon.on_log(None, state, None, logs={"loss": 0.5})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step_time_s"] for r in rows] == [3.0, 2.0]


def test_old_registry_gains_the_speed_columns(tmp_path):
    db = tmp_path / "registry.db"
    con = sqlite3.connect(db)
    # the registry as it was before issue 14's columns (and before pipeline_id)
    con.execute("""CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, method TEXT NOT NULL, model TEXT NOT NULL,
        dataset TEXT NOT NULL, status TEXT NOT NULL, pid INTEGER, pgid INTEGER, pid_started REAL, supervisor_pid INTEGER,
        supervisor_started REAL, created_at REAL NOT NULL, started_at REAL, ended_at REAL, exit_code INTEGER,
        predicted_peak_bytes INTEGER, measured_peak_bytes INTEGER, last_metrics TEXT, run_dir TEXT NOT NULL,
        error TEXT, launches INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)""")
    con.execute("INSERT INTO runs (id, method, model, dataset, status, created_at, run_dir, updated_at, "
                "measured_peak_bytes) VALUES ('old', 'dpo', 'm', 'd', 'succeeded', 1.0, ?, 1.0, 123)",
                (str(tmp_path / "old"),))
    con.commit()
    con.close()
    reg = Registry(db, reconcile=False)
    old = reg.get("old")
    assert old.measured_peak_bytes == 123 and old.measured_step_seconds is None and old.device_type is None
    reg.update("old", device_type="cpu", measured_step_seconds=0.5, predicted_step_seconds=0.25, measured_mfu=0.01)
    again = Registry(db, reconcile=False).get("old")
    assert (again.device_type, again.measured_step_seconds, again.predicted_step_seconds, again.measured_mfu) == \
        ("cpu", 0.5, 0.25, 0.01)


def test_tiny_run_records_throughput_in_result_and_registry(capsys, runs_dir, tiny_model_dir, demo_data):
    from alignplan.cli import main

    code = main(["run", "--method", "dpo", "--model", str(tiny_model_dir), "--dataset", str(demo_data["preference"]),
                 "--devices", "cpu", "--max-steps", "5", "--hparam", "max_length=64", "--hparam",
                 "per_device_train_batch_size=2"])
    capsys.readouterr()
    assert code == 0
    (rec,) = Registry.for_runs_root(runs_dir).list()
    assert rec.status == "succeeded"
    from pathlib import Path

    run_dir = Path(rec.run_dir)
    launch = json.loads((run_dir / "plan.json").read_text())["time"]
    assert launch["device"] == "cpu" and launch["seq_len"] == 64 and launch["examples_per_step"] == 2
    assert launch["step_time_s"] > 0 and launch["mfu_source"] == "default"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step_time_s"] > 0 for r in rows if "eval_loss" not in r)
    tp = json.loads((run_dir / "result.json").read_text())["throughput"]
    assert tp["steps_measured"] == 3  # steps 3, 4, 5
    assert tp["step_time_s"] > 0 and tp["tokens_per_second"] > 0
    assert tp["predicted_at_launch"] == launch
    # the prediction compared with is at the run's own mean length (its tokens per step / 4 sequences)
    assert tp["predicted"]["seq_len"] == round(tp["tokens_per_step"] / 4) <= 64
    assert tp["mfu_achieved"] == pytest.approx(
        tp["predicted"]["flops_per_step"] / (tp["step_time_s"] * tp["predicted"]["peak_flops"]))
    assert 0 < tp["mfu_achieved"] < 1
    assert rec.device_type == "cpu"
    assert rec.measured_step_seconds == tp["step_time_s"]
    assert rec.measured_tokens_per_second == tp["tokens_per_second"]
    assert rec.measured_mfu == tp["mfu_achieved"]
    assert rec.predicted_step_seconds == tp["predicted"]["step_time_s"]
    assert rec.predicted_mfu == 0.35 and rec.measured_generation_seconds is None


def _recipe(module: str, spec_path):
    import os
    import subprocess
    import sys

    from runners.paths import REPO_ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", f"runners.recipes.{module}", "--spec", str(spec_path)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_generation_stage_records_generation_time_and_tokens_per_second(tmp_path, tiny_model_dir, demo_data):
    from launch_helpers import cpu_devices

    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec

    spec = RunSpec.parse({"method": "generate", "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
                          "hparams": {"num_responses": 2, "max_new_tokens": 8, "batch_size": 2}, "max_steps": 8,
                          "devices": "cpu", "seed": 3})
    run = prepare(spec, tmp_path / "runs", devices=cpu_devices())
    launch = json.loads(run.plan_path.read_text())["time"]
    assert launch["generation_time_s"] > 0 and launch["examples_per_step"] == 2  # a batch of 2 prompts
    out = _recipe("generate", run.spec_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert len(rows) == 4
    for r in rows:
        assert r["generation_time_s"] == r["batch_seconds"] > 0
        # 2 prompts x 2 responses of response_length tokens on average, over the batch's seconds
        assert r["generation_tokens_per_second"] == pytest.approx(4 * r["response_length"] / r["batch_seconds"])
    tp = json.loads(run.result_path.read_text())["throughput"]
    assert tp["steps_measured"] == 2  # batches 3 and 4
    assert tp["generation_time_s"] == pytest.approx(statistics.median([r["batch_seconds"] for r in rows[2:]]))
    assert tp["step_time_s"] == tp["generation_time_s"]
    assert tp["predicted"]["generation_time_s"] > 0 and tp["predicted"]["decode_bw_source"] == "default"
    fields = timing.registry_fields(tp)
    assert fields["measured_generation_seconds"] == tp["generation_time_s"]
    assert fields["predicted_generation_seconds"] == tp["predicted"]["generation_time_s"]


def test_ppo_records_rollout_generation_time_beside_its_prediction(tmp_path, tiny_model_dir, demo_data):
    from launch_helpers import cpu_devices

    from runners.rundir.prepare import prepare
    from runners.rundir.spec import RunSpec

    spec = RunSpec.parse({
        "method": "ppo", "model": str(tiny_model_dir), "dataset": {"path": str(demo_data["prompts"])},
        "reward": {"function": "runners.recipes.rewards:marker_reward"},
        "hparams": {"per_device_train_batch_size": 4, "response_length": 6, "learning_rate": 1e-3},
        "max_steps": 4, "save_steps": 10, "gradient_checkpointing": False, "devices": "cpu"})
    run = prepare(spec, tmp_path / "runs", devices=cpu_devices())
    launch = json.loads(run.plan_path.read_text())["time"]
    assert launch["examples_per_step"] == 4 and 0 < launch["generation_time_s"] < launch["step_time_s"]
    out = _recipe("ppo", run.spec_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    for r in rows:
        assert 0 < r["generation_time_s"] < r["iteration_seconds"]
        # 4 responses of response_length tokens on average, over the rollout's generation time
        assert r["generation_tokens_per_second"] == pytest.approx(4 * r["response_length"] / r["generation_time_s"])
    tp = json.loads(run.result_path.read_text())["throughput"]
    assert tp["steps_measured"] == 2
    assert tp["generation_time_s"] == pytest.approx(statistics.median(r["generation_time_s"] for r in rows[2:]))
    assert tp["step_time_s"] > tp["generation_time_s"] and tp["predicted"]["generation_time_s"] > 0
    assert tp["predicted"]["decode_bw_fraction"] == 0.5
