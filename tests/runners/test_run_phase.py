"""phase.json: the recipe's start (loading the model, tokenising N rows, the first step) as the monitor reads it."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

from runners.recipes.callbacks import RunMonitor, write_phase
from runners.rundir.reader import PHASE_FILE, RunDir


def test_the_phase_is_written_and_read_back(tmp_path):
    run = RunDir(tmp_path)
    assert run.phase() is None
    before = time.time()
    write_phase(tmp_path, "tokenising", rows=1000)
    got = run.phase()
    assert got["phase"] == "tokenising" and got["rows"] == 1000 and before <= got["since"] <= time.time()
    RunMonitor(tmp_path).on_train_begin(SimpleNamespace(), SimpleNamespace(global_step=0), SimpleNamespace())
    assert run.phase()["phase"] == "first step"
    assert not list(tmp_path.glob(".*.tmp"))


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    write_phase(tmp_path, "loading the model")
    assert not (tmp_path / PHASE_FILE).exists()


def test_a_torn_or_foreign_file_reads_as_no_phase(tmp_path):
    (tmp_path / PHASE_FILE).write_text('{"phase": ')
    assert RunDir(tmp_path).phase() is None
    (tmp_path / PHASE_FILE).write_text(json.dumps(["loading"]))
    assert RunDir(tmp_path).phase() is None


def test_runs_list_shows_the_phase_before_the_first_step(capsys, runs_dir):
    import os

    import psutil
    from launch_helpers import cpu_devices, no_estimate, run_cli, spec

    from runners.launch.launch import prepare_and_register
    from runners.registry.store import Registry

    run = prepare_and_register(spec(max_steps=10), runs_dir, devices=cpu_devices(), estimate=no_estimate)
    me = os.getpid()  # this process stands in for the recipe, so the registry keeps it running
    Registry.for_runs_root(runs_dir).transition(run.id, "running", started_at=time.time(), pid=me,
                                                pid_started=psutil.Process(me).create_time())
    write_phase(run.path, "tokenising", rows=64)
    code, out, _ = run_cli(capsys, "runs", "list")
    row = next(line for line in out.splitlines() if line.startswith(run.id))
    assert code == 0 and "tokenising" in row
    write_phase(run.path, "loading the model")
    code, out, _ = run_cli(capsys, "runs", "list")
    assert "loading model" in next(line for line in out.splitlines() if line.startswith(run.id))
