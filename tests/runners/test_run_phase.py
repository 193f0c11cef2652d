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
