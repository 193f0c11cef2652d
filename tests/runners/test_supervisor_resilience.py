"""The supervisor outlives registry trouble and treats a signal as a stop (issue 11): the run's own
files are the truth, the registry a copy that is rebuilt and re-adopted into."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch_helpers import (
    cpu_devices,
    fake_run,
    no_estimate,
    processes_in_group,
    spec,
    stop_leftovers,
    wait_until,
)

from runners.launch import launch
from runners.launch.launch import prepare_and_register
from runners.paths import REPO_ROOT
from runners.registry.store import Registry
from runners.rundir.reader import RunDir


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def registry(root) -> Registry:
    return Registry.for_runs_root(root)


def _remove_registry(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'registry.db'}{suffix}").unlink(missing_ok=True)


def _ended(run: RunDir) -> bool:
    return "=== alignplan: run " in run.stdout_log.read_text()


@pytest.mark.timeout(120)
def test_registry_deleted_mid_run_the_run_finishes_and_is_recorded_in_the_rebuilt_registry(tmp_path):
    run = fake_run(tmp_path, steps=30, fake_step_seconds=0.05)
    launch.launch(run.path)
    sup = registry(tmp_path).get(run.id).supervisor_pid
    assert wait_until(lambda: len(run.metrics()) >= 3)
    _remove_registry(tmp_path)
    assert wait_until(lambda: _ended(run), timeout=60)
    assert wait_until(lambda: not os.path.exists(f"/proc/{sup}") or "Z" in open(f"/proc/{sup}/stat").read().split()[2],
                      timeout=20)
    rec = Registry(tmp_path / "registry.db", reconcile=False).get(run.id)
    assert rec.status == "succeeded" and rec.exit_code == 0
    assert rec.last_metrics["step"] == 30 and rec.launches == 1 and rec.supervisor_pid == sup
    log = run.stdout_log.read_text()
    assert "re-adopted run" in log and "run succeeded" in log
    assert json.loads((run.path / "supervisor.json").read_text())["exit_code"] == 0


@pytest.mark.timeout(120)
def test_registry_corrupted_mid_run_is_moved_aside_and_rebuilt(tmp_path):
    run = fake_run(tmp_path, steps=30, fake_step_seconds=0.05)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 3)
    _remove_registry(tmp_path)
    (tmp_path / "registry.db").write_bytes(b"this is not a database" * 100)
    assert wait_until(lambda: _ended(run), timeout=60)
    rec = Registry(tmp_path / "registry.db", reconcile=False).get(run.id)
    assert rec.status == "succeeded" and rec.last_metrics["step"] == 30
    assert list(tmp_path.glob("registry.db.corrupt-*"))


def test_runs_list_on_an_empty_registry_registers_the_run_directories_found(tmp_path):
    done = fake_run(tmp_path, steps=3)
    launch.launch(done.path)
    assert launch.wait(done.id, timeout=60, runs=tmp_path).status == "succeeded"
    never = prepare_and_register(spec(name="never-ran"), tmp_path, devices=cpu_devices(), estimate=no_estimate)
    crashed = prepare_and_register(spec(), tmp_path, devices=cpu_devices(), estimate=no_estimate)
    crashed.stdout_log.write_text("Traceback ...\nboom\n")
    (tmp_path / "not-a-run").mkdir()
    _remove_registry(tmp_path)
    old = time.time() - 60  # prepared a while ago (a directory being prepared right now is left alone)
    for run in (done, never, crashed):
        os.utime(run.plan_path, (old, old))
    recs = {r.id: r for r in registry(tmp_path).list()}
    assert set(recs) == {done.id, never.id, crashed.id}
    assert recs[done.id].status == "succeeded" and recs[done.id].last_metrics["step"] == 3
    assert recs[done.id].exit_code == 0
    assert recs[never.id].status == "prepared" and recs[never.id].name == "never-ran"
    assert recs[crashed.id].status == "failed" and "boom" in recs[crashed.id].error
    # the adopted runs follow the lifecycle from there: the prepared one can be started
    launch.start(never.id, runs=tmp_path)


@pytest.mark.timeout(120)
def test_sigterm_to_the_supervisor_stops_the_run_with_a_checkpoint(tmp_path):
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05, save_steps=100_000)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 3)
    rec = registry(tmp_path).get(run.id)
    os.kill(rec.supervisor_pid, signal.SIGTERM)  # a shutdown, a container stop
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "stopped" and rec.exit_code == 0
    assert json.loads(run.result_path.read_text())["status"] == "stopped"
    assert list((run.path / "checkpoints").glob("checkpoint-*"))  # it checkpointed before exiting
    assert processes_in_group(rec.pgid) == []
    launch.resume(run.id, runs=tmp_path)  # and it resumes from there
    assert "resume=True" in run.stdout_log.read_text() or wait_until(
        lambda: "resume=True" in run.stdout_log.read_text(), timeout=20)
    launch.stop(run.id, grace=20, runs=tmp_path)


@pytest.mark.timeout(120)
def test_a_recipe_that_ignores_stop_is_escalated_after_the_grace_and_still_stopped(tmp_path):
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05, fake_ignore_term=True)
    reg = registry(tmp_path)
    reg.transition(run.id, "running", started_at=time.time(), launches=1)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    sup = subprocess.Popen([sys.executable, "-m", "runners.registry.supervise", str(run.path), "--registry",
                            str(reg.path), "--stop-grace", "0.5", "--term-grace", "0.5"], env=env, cwd=str(REPO_ROOT))
    assert wait_until(lambda: len(run.metrics()) >= 2)
    t0 = time.monotonic()
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 15
    rec = reg.get(run.id)
    assert run.stop_path.exists()
    assert rec.status == "stopped" and rec.exit_code == -signal.SIGKILL and "stopped by signal" in rec.error
