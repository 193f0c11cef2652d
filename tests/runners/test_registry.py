from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from runners.paths import REPO_ROOT
from runners.registry.store import Registry, RegistryError, TransitionError, is_alive, process_started
from runners.rundir.reader import RunDir


def add(reg: Registry, tmp_path, run_id: str = "20260101-000000-dpo-abc123", **kw):
    run_dir = tmp_path / run_id
    run_dir.mkdir(exist_ok=True)
    return reg.add(run_id=run_id, method="dpo", model="m", dataset="d.jsonl", run_dir=run_dir, **kw)


def test_add_get_list_and_wal(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path, predicted_peak_bytes=123, name="first")
    assert rec.status == "prepared" and rec.predicted_peak_bytes == 123 and rec.launches == 0
    assert [r.id for r in reg.list()] == [rec.id]
    assert reg.list(status="running") == []
    with sqlite3.connect(reg.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert json.loads(json.dumps(rec.to_dict()))["id"] == rec.id


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (["running", "succeeded"], True),
        (["running", "stopped", "running", "failed", "running", "succeeded"], True),
        (["failed"], True),
        (["succeeded"], False),
        (["stopped"], False),
        (["running", "succeeded", "running"], False),
        (["running", "prepared"], False),
    ],
)
def test_status_transitions_are_validated(tmp_path, path, ok):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path)
    try:
        for status in path:
            rec = reg.transition(rec.id, status)
    except TransitionError as exc:
        assert not ok, exc
        assert "cannot go from" in str(exc)
        return
    assert ok and rec.status == path[-1]


def test_update_refuses_status_and_unknown_fields(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path)
    with pytest.raises(RegistryError, match="status"):
        reg.update(rec.id, status="running")
    with pytest.raises(RegistryError, match="bogus"):
        reg.update(rec.id, bogus=1)
    rec = reg.update(rec.id, last_metrics={"step": 3, "loss": 0.5}, measured_peak_bytes=77)
    assert rec.last_metrics == {"step": 3, "loss": 0.5} and rec.measured_peak_bytes == 77
    with pytest.raises(RegistryError, match="no such run"):
        reg.get("nope")


def test_resolve_by_prefix_suffix_name_and_ambiguity(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    add(reg, tmp_path, "20260101-000000-dpo-aaa111", name="alpha")
    add(reg, tmp_path, "20260101-000001-dpo-bbb222")
    assert reg.resolve("aaa111").id == "20260101-000000-dpo-aaa111"
    assert reg.resolve("20260101-000001").id == "20260101-000001-dpo-bbb222"
    assert reg.resolve("alpha").id == "20260101-000000-dpo-aaa111"
    with pytest.raises(RegistryError, match="ambiguous"):
        reg.resolve("20260101")
    with pytest.raises(RegistryError, match="no run"):
        reg.resolve("zzz")
    with pytest.raises(RegistryError, match="no run"):
        reg.resolve("%")  # LIKE wildcards are literal


def dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_started(proc.pid)
    proc.wait()
    return proc.pid, started


def test_reconcile_marks_vanished_runs_failed_with_log_tail(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path)
    pid, started = dead_pid()
    reg.transition(rec.id, "running", pid=pid, pgid=pid, pid_started=started, supervisor_pid=pid,
                   supervisor_started=started, started_at=1.0)
    (tmp_path / rec.id / "stdout.log").write_text("line 1\nTraceback: CUDA out of memory\n")
    reopened = Registry(tmp_path / "registry.db")  # reconcile on open
    rec = reopened.get(rec.id)
    assert rec.status == "failed"
    assert "CUDA out of memory" in rec.error and rec.ended_at is not None


def test_reconcile_trusts_result_json(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path)
    pid, started = dead_pid()
    reg.transition(rec.id, "running", pid=pid, pid_started=started, supervisor_pid=pid, supervisor_started=started)
    run = RunDir(tmp_path / rec.id)
    run.result_path.write_text(json.dumps({"status": "succeeded", "final": {"step": 9}, "peak_memory_bytes": 4096}))
    assert reg.reconcile() == [rec.id]
    rec = reg.get(rec.id)
    assert (rec.status, rec.measured_peak_bytes, rec.last_metrics, rec.error) == ("succeeded", 4096, {"step": 9}, None)


def test_reconcile_keeps_live_runs_and_guards_pid_reuse(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    live = add(reg, tmp_path, "20260101-000000-dpo-live00")
    reused = add(reg, tmp_path, "20260101-000000-dpo-reuse0")
    me, my_start = os.getpid(), process_started(os.getpid())
    reg.transition(live.id, "running", pid=me, pid_started=my_start, supervisor_pid=me, supervisor_started=my_start)
    # Same pid, different start time: a new process that reused the number.
    reg.transition(reused.id, "running", pid=me, pid_started=my_start - 1000, supervisor_pid=me,
                   supervisor_started=my_start - 1000)
    assert is_alive(me, my_start) and not is_alive(me, my_start - 1000)
    assert reg.reconcile() == [reused.id]
    assert reg.get(live.id).status == "running" and reg.get(reused.id).status == "failed"


def test_concurrent_writers_keep_the_registry_consistent(tmp_path):
    path = tmp_path / "registry.db"
    Registry(path)
    errors = []

    def worker(i: int) -> None:
        try:
            reg = Registry(path, reconcile=False)
            rec = add(reg, tmp_path, f"20260101-000000-dpo-{i:06d}")
            reg.transition(rec.id, "running")
            for step in range(5):
                reg.update(rec.id, last_metrics={"step": step})
            reg.transition(rec.id, "succeeded", exit_code=0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recs = Registry(path).list()
    assert len(recs) == 16
    assert all(r.status == "succeeded" and r.last_metrics == {"step": 4} and r.exit_code == 0 for r in recs)


def test_two_processes_transition_the_same_run_only_once(tmp_path):
    """Both a supervisor and a stop() may try to record the end; exactly one wins."""
    path = tmp_path / "registry.db"
    reg = Registry(path)
    rec = add(reg, tmp_path)
    reg.transition(rec.id, "running")
    code = (
        "import sys; from runners.registry.store import Registry, TransitionError\n"
        f"reg = Registry({str(path)!r}, reconcile=False)\n"
        "try:\n"
        f"    reg.transition({rec.id!r}, sys.argv[1], expect='running'); print('won')\n"
        "except TransitionError:\n"
        "    print('lost')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, s], stdout=subprocess.PIPE, text=True, env=env)
             for s in ("stopped", "failed")]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["lost", "won"]
    assert reg.get(rec.id).status in ("stopped", "failed")


def test_delete(tmp_path):
    reg = Registry(tmp_path / "registry.db")
    rec = add(reg, tmp_path)
    reg.delete(rec.id)
    assert reg.list() == []
    with pytest.raises(RegistryError):
        reg.delete(rec.id)


def test_older_registry_gains_new_columns(tmp_path):
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, method TEXT NOT NULL, model TEXT NOT NULL, "
                    "dataset TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, run_dir TEXT NOT NULL, "
                    "updated_at REAL NOT NULL)")
        con.execute("INSERT INTO runs VALUES ('old-run', 'dpo', 'm', 'd', 'succeeded', 1.0, '/x', 1.0)")
    reg = Registry(path)
    old = reg.get("old-run")
    assert old.status == "succeeded" and old.launches == 0 and old.last_metrics is None
    rec = add(reg, tmp_path)
    assert reg.transition(rec.id, "running", launches=1).launches == 1


def test_processes_opening_a_fresh_registry_together(tmp_path):
    """Switching a new file to WAL takes a lock SQLite's busy handler does not wait for: opening retries."""
    path = tmp_path / "fresh" / "registry.db"
    code = (
        "import sys, time\n"
        "from runners.registry.store import Registry\n"
        "start = float(sys.argv[1])\n"
        "while time.time() < start: pass\n"
        f"reg = Registry({str(path)!r})\n"
        "reg.add(run_id=sys.argv[2], method='dpo', model='m', dataset='d', run_dir='/x/' + sys.argv[2])\n"
    )
    start = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(start), f"run-{i}"], stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e[-500:] for e in errors if e]
    assert sorted(r.id for r in Registry(path).list()) == [f"run-{i}" for i in range(6)]
