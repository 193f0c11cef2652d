"""After a resume, metrics.jsonl has one row per step and the token counters continue (issue 11).

Decision: rows an earlier attempt wrote after the checkpoint a resume starts from are *dropped* when
the resumed attempt logs its first row (RunMonitor._continue_after_resume); the steps are trained again
and their rows are those of the training that continued."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
from launch_helpers import spec, stop_leftovers, wait_until

from runners.launch import launch
from runners.recipes.callbacks import PeakMemory, RunMonitor


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def _log(monitor: RunMonitor, step: int, num_tokens: float, seen: int = 0) -> None:
    state = SimpleNamespace(global_step=step, max_steps=6, epoch=step / 6, num_input_tokens_seen=seen,
                            is_world_process_zero=True)
    monitor.on_log(None, state, None, logs={"loss": 1.0 / step, "num_tokens": num_tokens})


def test_resumed_attempt_replaces_the_rows_after_its_checkpoint_and_continues_the_token_count(tmp_path):
    first = RunMonitor(tmp_path, PeakMemory(cuda=False))
    for step in range(1, 5):  # checkpoint at step 2, killed while at step 4
        _log(first, step, 10.0 * step)
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 5, "lo')  # the line it was writing when it was killed
    second = RunMonitor(tmp_path, PeakMemory(cuda=False))  # resumed from checkpoint-2: TRL counts from 0 again
    for step in range(3, 7):
        _log(second, step, 10.0 * (step - 2))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["num_tokens"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert all(r["tokens_per_second"] is None or r["tokens_per_second"] < 1e6 for r in rows)


def test_a_counter_the_trainer_restores_is_not_offset(tmp_path):
    first = RunMonitor(tmp_path, PeakMemory(cuda=False))
    for step in (1, 2, 3):
        _log(first, step, 10.0 * step, seen=10 * step)
    second = RunMonitor(tmp_path, PeakMemory(cuda=False))  # GRPO logs the Trainer's restored count
    _log(second, 3, 30.0, seen=30)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["num_tokens"] for r in rows] == [10, 20, 30]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dpo_killed_after_its_checkpoint_resumes_with_each_step_once(tmp_path, tiny_model_dir, demo_data):
    from runners.demo.tiny import DEMO_HPARAMS

    s = spec(model=str(tiny_model_dir), dataset={"path": str(demo_data["preference"])}, devices="cpu",
             max_steps=8, save_steps=2, hparams=dict(DEMO_HPARAMS))
    run = launch.prepare_and_register(s, tmp_path)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 3 and (run.path / "checkpoints" / "checkpoint-2").is_dir(),
                      timeout=300)
    rec = launch._open(tmp_path).get(run.id)
    os.killpg(rec.pgid, signal.SIGKILL)  # a crash after the checkpoint at step 2
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "failed"
    launch.resume(run.id, runs=tmp_path)
    rec = launch.wait(run.id, timeout=600, runs=tmp_path)
    assert rec.status == "succeeded", rec.error
    rows = [r for r in run.metrics() if not any(k.startswith("eval_") for k in r)]
    assert [r["step"] for r in rows] == list(range(1, 9))
    tokens = [r["num_tokens"] for r in rows if "num_tokens" in r]
    assert len(tokens) == 8 and tokens == sorted(tokens) and tokens[0] > 0
