from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from launch_helpers import fake_run, processes_in_group, spec, stop_leftovers, wait_until

from runners.launch import launch
from runners.paths import REPO_ROOT
from runners.registry.store import Registry
from runners.rundir.prepare import write_command
from runners.rundir.reader import RunDir


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test(tmp_path):
    yield
    stop_leftovers(tmp_path)


def registry(root) -> Registry:
    return Registry.for_runs_root(root)


def test_launch_runs_to_success_and_records_everything(tmp_path):
    run = fake_run(tmp_path, steps=4)
    pid = launch.launch(run.path)
    assert pid > 0
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "succeeded" and rec.exit_code == 0 and rec.error is None
    assert rec.pid == pid and rec.pgid == pid and rec.launches == 1
    assert rec.measured_peak_bytes == 1004  # result.json of the fake recipe
    assert rec.last_metrics["step"] == 4
    assert rec.started_at <= rec.ended_at
    log = run.stdout_log.read_text()
    assert "fake recipe: done" in log and "run succeeded" in log
    # The supervisor is reaped (by the launcher's reaper thread): no zombie left behind.
    assert wait_until(lambda: not psutil.pid_exists(rec.supervisor_pid), timeout=10)


def test_runs_done_by_hand_reach_the_registry(tmp_path):
    """bash command.sh bypasses the registry; the next open records that the run ran, and how it ended."""
    run = fake_run(tmp_path, steps=4, save_steps=2)
    assert registry(tmp_path).get(run.id).status == "prepared"
    (run.path / "STOP").touch()  # the by-hand run stops at once, with a checkpoint and result.json
    assert subprocess.run(["bash", str(run.command_sh)], capture_output=True, timeout=60).returncode == 0
    rec = registry(tmp_path).get(run.id)
    assert (rec.status, rec.launches, rec.exit_code) == ("stopped", 1, None)
    (run.path / "STOP").unlink()
    assert subprocess.run(["bash", str(run.command_sh), "--resume"], capture_output=True, timeout=60).returncode == 0
    rec = registry(tmp_path).get(run.id)
    assert (rec.status, rec.launches, rec.measured_peak_bytes) == ("succeeded", 2, 1004)
    assert rec.last_metrics["step"] == 4 and rec.started_at <= rec.ended_at
    assert registry(tmp_path).get(run.id).updated_at == rec.updated_at  # adopted once, not at every open
    # A result.json older than the record (the outcome the registry already has) changes nothing.
    other = fake_run(tmp_path, steps=2)
    (other.path / "result.json").write_text(json.dumps({"status": "succeeded"}))
    os.utime(other.path / "result.json", (1, 1))
    assert registry(tmp_path).get(other.id).status == "prepared"


def test_a_run_prepared_for_deepspeed_does_not_launch_where_it_is_missing(tmp_path, monkeypatch):
    run = fake_run(tmp_path, steps=2)
    plan = json.loads(run.plan_path.read_text())
    plan["decision"].update(distributed_type="DEEPSPEED", zero=3)
    run.plan_path.write_text(json.dumps(plan))
    monkeypatch.setattr("runners.rundir.decide.deepspeed_installed", lambda: False)
    with pytest.raises(launch.LaunchError, match=r"sharding: .*DeepSpeed ZeRO-3.*alignplan\[deepspeed\]"):
        launch.launch(run.path)
    rec = registry(tmp_path).get(run.id)
    assert (rec.status, rec.launches) == ("prepared", 0) and not run.stdout_log.exists()
    monkeypatch.setattr("runners.rundir.decide.deepspeed_installed", lambda: True)
    launch.launch(run.path)  # installed: it starts (the fake recipe ignores the engine)
    assert launch.wait(run.id, timeout=60, runs=tmp_path).status == "succeeded"


def test_a_copied_result_keeps_its_own_time(tmp_path):
    """A runs/ folder copied without file times: result.json's own clock says it is old news."""
    run = fake_run(tmp_path, steps=2)
    (run.path / "result.json").write_text(json.dumps({"status": "succeeded", "time": 1.0}))
    assert registry(tmp_path).get(run.id).status == "prepared"


def test_crash_is_failed_with_exit_code_and_log_tail(tmp_path):
    run = fake_run(tmp_path, steps=5, fake_crash_at=2)
    launch.launch(run.path)
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "failed" and rec.exit_code == 3
    assert "boom at step 2" in rec.error


def test_stop_then_resume_continues_the_step_count(tmp_path):
    run = fake_run(tmp_path, steps=100, fake_step_seconds=0.03, save_steps=1000)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 3)
    rec = launch.stop(run.id, grace=30, runs=tmp_path)
    assert rec.status == "stopped" and rec.exit_code == 0
    assert processes_in_group(rec.pgid) == []
    k = run.metrics()[-1]["step"]
    assert 3 <= k < 100
    launch.resume(run.id, runs=tmp_path)
    assert registry(tmp_path).get(run.id).status == "running"
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "succeeded" and rec.launches == 2
    steps = [m["step"] for m in run.metrics()]
    assert steps == list(range(1, 101))  # no step repeated or skipped across the stop
    assert "resume=True" in run.stdout_log.read_text()


def test_stop_escalates_to_sigkill_and_leaves_no_process(tmp_path):
    # The command ignores STOP and SIGTERM, and has a grandchild: only SIGKILL to the group ends them.
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05, fake_ignore_term=True, fake_spawn_child=True)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 1)
    pgid = registry(tmp_path).get(run.id).pgid
    kids = json.loads((run.path / "children.json").read_text())
    assert len(processes_in_group(pgid)) == 2  # the recipe and one grandchild; the other left the group
    assert all(psutil.pid_exists(k) for k in kids)
    rec = launch.stop(run.id, grace=0.5, term_grace=0.5, runs=tmp_path)
    assert processes_in_group(pgid) == []  # zombies included: everything reaped
    assert not any(psutil.pid_exists(k) for k in kids)  # the one in its own session too
    assert rec.status == "stopped" and rec.exit_code == -signal.SIGKILL
    assert "stopped by signal" in rec.error


def test_workers_in_their_own_session_die_with_their_launcher(tmp_path):
    # torch.distributed.run starts workers in new sessions; if it is SIGKILLed they are orphaned.
    # The supervisor adopts them (subreaper) and kills them when the command ends.
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05, fake_spawn_child=True)
    launch.launch(run.path)
    assert wait_until(lambda: (run.path / "children.json").exists() and len(run.metrics()) >= 1)
    kids = json.loads((run.path / "children.json").read_text())
    rec = registry(tmp_path).get(run.id)
    os.kill(rec.pid, signal.SIGKILL)  # the launcher alone, not its group
    rec = launch.wait(run.id, timeout=30, runs=tmp_path)
    assert rec.status == "failed" and rec.exit_code == -signal.SIGKILL
    assert wait_until(lambda: not any(psutil.pid_exists(k) for k in kids), timeout=15)


def test_sigkilled_run_is_reconciled_as_failed_with_log_tail(tmp_path):
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 2)
    rec = registry(tmp_path).get(run.id)
    # Kill everything, supervisor included, as an OOM killer or a reboot would: nobody records the end.
    os.kill(rec.supervisor_pid, signal.SIGKILL)
    os.killpg(rec.pgid, signal.SIGKILL)
    assert wait_until(lambda: not processes_in_group(rec.pgid), timeout=20)
    assert wait_until(lambda: not psutil.pid_exists(rec.supervisor_pid), timeout=20)
    assert registry(tmp_path).get(run.id).status == "failed"  # opening the registry reconciled it
    rec = registry(tmp_path).get(run.id)
    assert "process gone" in rec.error and "fake recipe: start at step 0" in rec.error
    assert rec.last_metrics["step"] >= 2


def test_command_killed_while_supervisor_lives_is_failed(tmp_path):
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 1)
    os.killpg(registry(tmp_path).get(run.id).pgid, signal.SIGKILL)
    rec = launch.wait(run.id, timeout=30, runs=tmp_path)
    assert rec.status == "failed" and rec.exit_code == -signal.SIGKILL
    assert "exit code -9" in rec.error and "fake recipe" in rec.error


def test_two_concurrent_launches(tmp_path):
    runs, pids = [], []

    def go():
        run = fake_run(tmp_path, steps=3)
        runs.append(run)
        pids.append(launch.launch(run.path))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in runs}) == 2 and len({r.path for r in runs}) == 2 and len(set(pids)) == 2
    for run in runs:
        assert launch.wait(run.id, timeout=60, runs=tmp_path).status == "succeeded"
    recs = registry(tmp_path).list()
    assert sorted(r.id for r in recs) == sorted(r.id for r in runs)
    assert all(r.launches == 1 and r.last_metrics["step"] == 3 for r in recs)


def test_two_processes_prepare_and_launch_at_the_same_moment(tmp_path):
    here = Path(__file__).resolve().parent
    code = (
        f"import sys, time; sys.path.insert(0, {str(here)!r})\n"
        "from launch_helpers import fake_run\n"
        "from runners.launch import launch\n"
        "start = float(sys.argv[1])\n"
        "while time.time() < start: time.sleep(0.001)\n"
        f"run = fake_run(__import__('pathlib').Path({str(tmp_path)!r}), steps=3)\n"
        "launch.launch(run.path); print(run.id)\n"
    )
    start = time.time() + 3.0  # both past their imports, then go together
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ids = [o[0].strip() for o in outs]
    assert len(set(ids)) == 2
    for run_id in ids:
        rec = launch.wait(run_id, timeout=60, runs=tmp_path)
        assert rec.status == "succeeded" and rec.launches == 1
    assert sorted(r.id for r in registry(tmp_path).list()) == sorted(ids)


def test_status_is_recorded_after_the_launcher_exits(tmp_path):
    run = fake_run(tmp_path, steps=10, fake_step_seconds=0.1)
    code = f"from runners.launch import launch; print(launch.launch({str(run.path)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    assert registry(tmp_path).get(run.id).status == "running"  # the launcher is gone, the run is not
    rec = launch.wait(run.id, timeout=60, runs=tmp_path)
    assert rec.status == "succeeded" and rec.pid == int(out.stdout.strip())


def test_follow_yields_each_step_once(tmp_path):
    run = fake_run(tmp_path, steps=6, fake_step_seconds=0.05)
    launch.launch(run.path)
    steps = [m["step"] for m in launch.follow(run.id, runs=tmp_path, poll=0.05)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_lifecycle_errors(tmp_path):
    run = fake_run(tmp_path, steps=2)
    with pytest.raises(launch.LaunchError, match="only a running run can be stopped"):
        launch.stop(run.id, runs=tmp_path)
    with pytest.raises(launch.LaunchError, match="never started.*runs start"):
        launch.resume(run.id, runs=tmp_path)
    launch.launch(run.path)
    with pytest.raises(ValueError, match="cannot go from running to running"):
        launch.launch(run.path)
    assert launch.wait(run.id, timeout=60, runs=tmp_path).status == "succeeded"
    with pytest.raises(launch.LaunchError, match="status is succeeded"):
        launch.resume(run.id, runs=tmp_path)


def test_delete_removes_dir_and_row_but_not_a_running_run(tmp_path):
    run = fake_run(tmp_path, steps=10_000, fake_step_seconds=0.05)
    launch.launch(run.path)
    with pytest.raises(launch.LaunchError, match="stop it first"):
        launch.delete(run.id, runs=tmp_path)
    launch.stop(run.id, grace=10, runs=tmp_path)
    launch.delete(run.id, runs=tmp_path)
    assert not run.path.exists() and registry(tmp_path).list() == []


def test_broken_command_fails_cleanly(tmp_path):
    run = fake_run(tmp_path)
    write_command(run, [str(tmp_path / "no-such-program")])
    with pytest.raises(launch.LaunchError, match="supervisor exited"):
        launch.launch(run.path)
    rec = registry(tmp_path).get(run.id)
    assert rec.status == "failed" and "no-such-program" in run.stdout_log.read_text()


# --- the real DPO recipe on the tiny model --------------------------------------------------------


def dpo_run(root, tiny_model_dir, demo_data, steps: int, save_steps: int = 50) -> RunDir:
    from runners.demo.tiny import DEMO_HPARAMS

    s = spec(model=str(tiny_model_dir), dataset={"path": str(demo_data["preference"])}, devices="cpu",
             max_steps=steps, save_steps=save_steps, hparams=dict(DEMO_HPARAMS))
    return launch.prepare_and_register(s, root)


@pytest.mark.slow
def test_command_sh_runs_by_hand_with_the_dpo_recipe(tmp_path, tiny_model_dir, demo_data):
    run = dpo_run(tmp_path, tiny_model_dir, demo_data, steps=3)
    proc = subprocess.run(["bash", str(run.command_sh)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads(run.result_path.read_text())
    assert result["status"] == "succeeded" and result["final"]["step"] == 3
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]


@pytest.mark.slow
def test_dpo_stop_at_step_k_then_resume(tmp_path, tiny_model_dir, demo_data):
    run = dpo_run(tmp_path, tiny_model_dir, demo_data, steps=16)
    launch.launch(run.path)
    assert wait_until(lambda: len(run.metrics()) >= 2, timeout=300)
    rec = launch.stop(run.id, grace=120, runs=tmp_path)
    assert rec.status == "stopped" and rec.exit_code == 0, rec.error
    assert processes_in_group(rec.pgid) == []
    k = run.metrics()[-1]["step"]
    assert 2 <= k < 16
    assert json.loads((run.path / "result.json").read_text())["status"] == "stopped"
    launch.resume(run.id, runs=tmp_path)
    rec = launch.wait(run.id, timeout=600, runs=tmp_path)
    assert rec.status == "succeeded", rec.error
    steps = [m["step"] for m in run.metrics()]
    assert steps[:k] == list(range(1, k + 1)) and steps[k] == k + 1 and steps[-1] == 16
    assert rec.measured_peak_bytes and rec.predicted_peak_bytes


def test_start_and_resume_statuses_follow_the_registry_lifecycle() -> None:
    from runners.registry.store import STATUSES, TRANSITIONS

    into_running = {s for s in STATUSES if "running" in TRANSITIONS[s]}
    assert set(launch.STARTABLE_STATUSES) | set(launch.RESUMABLE_STATUSES) == into_running
    assert not set(launch.STARTABLE_STATUSES) & set(launch.RESUMABLE_STATUSES)
    pages = Path(__file__).resolve().parents[2] / "pages" / "runs.py"
    assert '("stopped", "failed")' not in pages.read_text()  # the page asks launch, not its own list
