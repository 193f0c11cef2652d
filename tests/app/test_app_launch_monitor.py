"""The live run on the Launch page: its name, what it is doing before the first step (phase.json),
the readable and downloadable log, "stopping…" until the process is gone, Resume; the smoothed ETA."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from alignplan import run_monitor
from runners.demo import tiny
from runners.launch.launch import prepare_and_register
from runners.registry.store import Registry
from runners.rundir.devices import discover
from runners.rundir.reader import PHASE_FILE, RunDir
from runners.rundir.spec import RunSpec


@pytest.fixture
def live_run(runs_dir):
    """A prepared run that the registry sees running (this test's own process stands in for it)."""
    spec = RunSpec.parse({"method": "dpo", "model": "Qwen/Qwen2.5-0.5B", "name": "tone-trial",
                          "dataset": {"path": str(tiny.demo_data_paths()["preference"])}, "max_steps": 50})
    run = prepare_and_register(spec, runs_dir, devices=discover(gpus=[]))
    me = os.getpid()
    reg = Registry.for_runs_root(runs_dir)
    reg.transition(run.id, "running", started_at=time.time() - 40, pid=me,
                   pid_started=psutil.Process(me).create_time())
    return RunDir(run.path), reg


def _launch_monitor(app, run_id):
    at = app.run()
    at.session_state["launch_run_id"] = run_id
    return at.switch_page("pages/launch.py").run()


def test_the_start_says_what_is_happening_and_the_run_has_its_name(app, live_run):
    run, _ = live_run
    (run.path / PHASE_FILE).write_text(json.dumps({"phase": "tokenising", "since": time.time() - 12, "rows": 1000}))
    at = _launch_monitor(app, run.path.name)
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Run tone-trial ({run.path.name})"
    bar = at.get("progress")[0]
    assert "Tokenising 1,000 rows, " in bar.proto.text and bar.proto.text.endswith("so far")
    assert bar.proto.value == 50  # two of the start's three phases reached: half the bar
    assert any(m.label == "ETA" and m.value == "–" for m in at.metric)


def test_the_log_is_formatted_and_downloadable(app, live_run):
    run, _ = live_run
    run.stdout_log.write_text("model loaded\n{'loss': 0.693147, 'grad_norm': 1.2345, 'learning_rate': 5e-07, "
                              "'epoch': 0.04}\n")
    at = _launch_monitor(app, run.path.name)
    log = next(c.value for c in at.code if "model loaded" in c.value)
    assert "loss 0.6931 · grad_norm 1.234 · learning_rate 5e-07 · epoch 0.04" in log and "{'loss'" not in log
    assert any(b.proto.label == "Download the log" for b in at.get("download_button"))


def test_stop_shows_stopping_until_the_process_is_gone_then_resume(app, live_run, monkeypatch):
    run, reg = live_run
    asked = []
    monkeypatch.setattr(run_monitor, "stop_run_in_background", asked.append)
    at = _launch_monitor(app, run.path.name)
    at.button(key="launch_stop").click().run()
    assert not at.exception and asked == [run.path.name]
    assert next(m.value for m in at.metric if m.label == "Status") == "stopping…"
    assert "launch_stop" not in {b.key for b in at.button}  # asked once; no second Stop
    reg.transition(run.path.name, "stopped", pid=None, ended_at=time.time())
    at.run()
    assert next(m.value for m in at.metric if m.label == "Status") == "stopped"
    assert not at.button(key="launch_resume").disabled


def _rows(times):
    return [{"step": i + 1, "time": t, "max_steps": 100} for i, t in enumerate(times)]


def test_the_eta_leaves_out_the_first_steps_and_smooths_the_rest():
    # steps 1-2 took 30 s (model warm-up), the rest 1 s each: the ETA uses the 1 s steps
    rows = _rows([100.0, 130.0, 131.0, 132.0, 133.0, 134.0])
    assert run_monitor.smoothed_step_time(rows) == pytest.approx(1.0)
    assert run_monitor.smoothed_eta(rows, 100) == pytest.approx(94.0)
    # one slow step moves the average by the smoothing weight only
    slow = _rows([100.0, 130.0, 131.0, 132.0, 133.0, 137.0])
    assert run_monitor.smoothed_step_time(slow) == pytest.approx(0.3 * 4 + 0.7 * 1.0)
    assert run_monitor.smoothed_eta(_rows([100.0, 130.0, 131.0]), 100) is None  # nothing past the warm-up yet


def test_phase_words():
    assert run_monitor.phase_text(None, 0) == "Starting the process"
    assert run_monitor.phase_text({"phase": "loading the model", "model": "/x/runs/tiny-model", "since": 90}, 100) \
        .startswith("Loading the model (tiny-model), ")
    assert run_monitor.phase_fraction({"phase": "first step"}) == pytest.approx(0.75)


def test_the_runs_page_says_stopping_too(app, live_run, monkeypatch):
    run, _ = live_run
    monkeypatch.setattr(run_monitor, "stop_run_in_background", lambda run_id: None)
    at = app.run()
    at.session_state["runs_focus"] = run.path.name
    at.switch_page("pages/runs.py").run()
    at.button(key="runs_stop").click().run()
    assert not at.exception, at.exception
    assert "stopping…" in [m.value for m in at.metric if m.label == "Status"]
    assert "runs_stop" not in {b.key for b in at.button}
