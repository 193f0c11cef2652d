"""Launch, follow, stop, resume and delete runs.

``launch`` starts ``python -m runners.registry.supervise`` in its own session; the supervisor starts the
run's command (command.json) in its own process group, records it, and records the outcome when
it ends, so nothing depends on the launching process staying alive. ``stop`` asks the recipe to
stop (the STOP file), then escalates to SIGTERM and SIGKILL on the process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from runners.paths import REPO_ROOT, runs_root
from runners.registry.store import (
    FINAL_STATUSES,
    Registry,
    RunRecord,
    group_members,
    is_alive,
    process_started,
)
from runners.rundir.decide import Estimator, planner_estimate
from runners.rundir.devices import Devices
from runners.rundir.prepare import prepare
from runners.rundir.reader import RunDir
from runners.rundir.spec import RunSpec

STOP_GRACE_S = 60.0
TERM_GRACE_S = 10.0
START_TIMEOUT_S = 60.0


# Which statuses each action accepts: the app's buttons and the CLI ask these, not their own lists.
RESUMABLE_STATUSES = ("stopped", "failed")
STARTABLE_STATUSES = ("prepared",)


class LaunchError(ValueError):
    """A launch, stop, resume or delete that cannot be done now; the message says why."""


def check_engine_installed(run: RunDir) -> None:
    """A run prepared for DeepSpeed (perhaps on another machine) cannot start where it is missing:
    say so before launching rather than let accelerate fail inside the run."""
    from runners.rundir.decide import deepspeed_installed

    decision = run.decision()
    if decision.get("distributed_type") == "DEEPSPEED" and not deepspeed_installed():
        raise LaunchError(
            f"sharding: run {run.id} shards with DeepSpeed ZeRO-{decision.get('zero')}, which is not installed "
            "here; pip install 'alignplan[deepspeed]', or prepare the run again with sharding: fsdp"
        )


def registry_for(run: RunDir) -> Registry:
    return Registry(run.path.parent / "registry.db", reconcile=False)


def prepare_and_register(spec: RunSpec, runs_root: str | Path | None = None, *, devices: Devices | None = None,
                         estimate: Estimator = planner_estimate) -> RunDir:
    """The run directory for ``spec`` (rundir.prepare.prepare), registered as prepared in the registry
    beside it: what the CLI and the app do before launching."""
    run = prepare(spec, runs_root, devices=devices, estimate=estimate)
    registry_for(run).add_run(run)
    return run


def launch(run_dir: str | Path, *, resume: bool = False, registry: Registry | None = None) -> int:
    """Start the run in ``run_dir``; returns the pid of its command once the supervisor started it."""
    run = RunDir(Path(run_dir).resolve())
    reg = registry or registry_for(run)
    run.command()  # fail here, not in the supervisor, on a broken command.json
    check_engine_installed(run)
    rec = reg.get(run.id)
    reg.transition(
        run.id,
        "running",
        started_at=time.time(),
        ended_at=None,
        exit_code=None,
        error=None,
        pid=None,
        pgid=None,
        pid_started=None,
        supervisor_pid=None,
        supervisor_started=None,
        launches=rec.launches + 1,
    )
    run.stop_path.unlink(missing_ok=True)
    if run.result_path.exists():  # the previous attempt's result; the relaunch writes a new one
        run.result_path.replace(run.path / "result.previous.json")
    argv = [sys.executable, "-m", "runners.registry.supervise", str(run.path), "--registry", str(reg.path)]
    if resume:
        argv.append("--resume")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with open(run.stdout_log, "ab") as log:
        try:
            sup = subprocess.Popen(
                argv,
                cwd=str(REPO_ROOT),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            reg.transition(run.id, "failed", ended_at=time.time(), error=f"could not start the supervisor: {exc}")
            raise LaunchError(f"run {run.id}: could not start the supervisor ({exc})") from None
    reg.update(run.id, supervisor_pid=sup.pid, supervisor_started=process_started(sup.pid))
    # Reap the supervisor when it ends, for as long as this process lives (no zombie in a
    # long-lived app); if this process exits first, the supervisor is re-parented and reaped.
    threading.Thread(target=sup.wait, name=f"reap-{run.id}", daemon=True).start()
    return _wait_for_pid(reg, run, sup)


def _wait_for_pid(reg: Registry, run: RunDir, sup: subprocess.Popen) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        rec = reg.get(run.id)
        if rec.pid:
            return rec.pid
        if sup.poll() is not None:
            rec = reg.get(run.id)
            if rec.pid:
                return rec.pid
            if rec.status == "running":
                reg.record_outcome(run.id, sup.returncode)
            raise LaunchError(f"run {run.id}: the supervisor exited ({sup.returncode}) before starting the command; "
                              f"see {run.stdout_log}")
        time.sleep(0.05)
    raise LaunchError(f"run {run.id}: the command did not start within {START_TIMEOUT_S:.0f}s; see {run.stdout_log}")


def _open(runs: str | Path | None) -> Registry:
    return Registry.for_runs_root(runs_root(runs))


def wait(run_id: str, timeout: float | None = None, runs: str | Path | None = None, poll: float = 0.2) -> RunRecord:
    """Block until the run has a final status (or ``timeout`` seconds pass); returns its record."""
    reg = _open(runs)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = reg.resolve(run_id)
        if rec.status in FINAL_STATUSES:
            return rec
        if not (is_alive(rec.supervisor_pid, rec.supervisor_started) or is_alive(rec.pid, rec.pid_started)):
            if reg.reconcile():  # it ended unseen; reconcile recorded it (after a start-up grace)
                continue
        if deadline is not None and time.monotonic() > deadline:
            return rec
        time.sleep(poll)


def follow(run_id: str, runs: str | Path | None = None, poll: float = 0.5) -> Iterator[dict[str, Any]]:
    """Yield each new metrics.jsonl row of a run until it has a final status."""
    reg = _open(runs)
    rec = reg.resolve(run_id)
    run = RunDir(Path(rec.run_dir))
    seen = 0
    while True:
        rec = reg.get(rec.id)
        rows = run.metrics()
        yield from rows[seen:]
        seen = len(rows)
        if rec.status in FINAL_STATUSES:
            rows = run.metrics()
            yield from rows[seen:]
            return
        if rec.status == "running" and not (
            is_alive(rec.supervisor_pid, rec.supervisor_started) or is_alive(rec.pid, rec.pid_started)
        ):
            reg.reconcile()
        time.sleep(poll)


def stop(
    run_id: str,
    grace: float = STOP_GRACE_S,
    term_grace: float = TERM_GRACE_S,
    runs: str | Path | None = None,
) -> RunRecord:
    """Stop a running run: STOP file, then SIGTERM to its process group after ``grace`` seconds,
    then SIGKILL after ``term_grace`` more. Returns once no process of the group is left."""
    reg = _open(runs)
    rec = reg.resolve(run_id)
    if rec.status != "running":
        raise LaunchError(f"run {rec.id}: status is {rec.status}; only a running run can be stopped")
    run = RunDir(Path(rec.run_dir))
    run.stop_path.write_text(f"requested at {time.time():.3f}\n", encoding="utf-8")
    rec = _wait_for_group(reg, rec.id, wait_pgid=10.0)
    for sig, secs in ((None, grace), (signal.SIGTERM, term_grace), (signal.SIGKILL, 10.0)):
        if sig is not None:
            _signal_run(rec, sig)
        if _run_gone(rec, secs):
            break
    # The supervisor records the outcome; do it here if it is gone too.
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        rec = reg.get(rec.id)
        if rec.status in FINAL_STATUSES:
            return rec
        if not is_alive(rec.supervisor_pid, rec.supervisor_started):
            return reg.record_outcome(rec.id, rec.exit_code)
        time.sleep(0.1)
    return reg.get(rec.id)


def _wait_for_group(reg: Registry, run_id: str, wait_pgid: float) -> RunRecord:
    deadline = time.monotonic() + wait_pgid
    rec = reg.get(run_id)
    while rec.pgid is None and rec.status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        rec = reg.get(run_id)
    return rec


def run_processes(rec: RunRecord) -> list[psutil.Process]:
    """Every process of a run but its supervisor: the command's process group, and every descendant
    of the supervisor and of the command. Descendants matter because torch.distributed.run starts
    its workers in sessions of their own; if the launcher dies they are re-parented to the
    supervisor (a child subreaper), so they remain its descendants."""
    procs = {p.pid: p for p in group_members(rec.pgid, include_zombies=True)}
    for pid, started in ((rec.supervisor_pid, rec.supervisor_started), (rec.pid, rec.pid_started)):
        if is_alive(pid, started):
            try:
                procs.update({c.pid: c for c in psutil.Process(pid).children(recursive=True)})
            except psutil.Error:
                pass
    procs.pop(rec.supervisor_pid or -1, None)
    return list(procs.values())


def _signal_run(rec: RunRecord, sig: int) -> None:
    targets = run_processes(rec)
    if rec.pgid:
        try:
            os.killpg(rec.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in targets:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _run_gone(rec: RunRecord, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not run_processes(rec):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def has_checkpoint(run: RunDir) -> bool:
    try:
        out = run.spec().output_dir
    except ValueError:
        out = None
    ckpt = Path(out) if out else run.path / "checkpoints"
    return ckpt.is_dir() and any(p.is_dir() and p.name.startswith("checkpoint-") for p in ckpt.iterdir())


def resume(run_id: str, runs: str | Path | None = None) -> int:
    """Relaunch a stopped or failed run in the same directory with --resume; returns the new pid.

    Without any checkpoint yet there is nothing to resume from, so the run starts over.
    """
    reg = _open(runs)
    rec = reg.resolve(run_id)
    if rec.status in STARTABLE_STATUSES:
        raise LaunchError(f"run {rec.id}: status is {rec.status} (never started); start it with "
                          f"alignplan runs start {rec.id}")
    if rec.status not in RESUMABLE_STATUSES:
        raise LaunchError(f"run {rec.id}: status is {rec.status}; only a stopped or failed run can be resumed")
    run = RunDir(Path(rec.run_dir))
    return launch(run.path, resume=has_checkpoint(run), registry=reg)


def start(run_id: str, runs: str | Path | None = None) -> int:
    """Launch a prepared run (a dry run's directory) through the supervisor; returns the new pid."""
    reg = _open(runs)
    rec = reg.resolve(run_id)
    if rec.status not in STARTABLE_STATUSES:
        hint = f"; resume it with alignplan runs resume {rec.id}" if rec.status in RESUMABLE_STATUSES else ""
        raise LaunchError(f"run {rec.id}: status is {rec.status}; only a prepared run can be started{hint}")
    return launch(Path(rec.run_dir), registry=reg)


def delete_target(run_id: str, runs: str | Path | None = None) -> tuple[RunRecord, bool]:
    """The run ``delete`` would remove, and whether ``run_id`` named it exactly (its full id or its
    name). Otherwise a unique id *prefix* matches (never a suffix, never part of a name), and the
    caller must show it back and get a confirmation before deleting."""
    reg = _open(runs)
    rec = reg.resolve_exact(run_id)
    if rec is not None:
        return rec, True
    return reg.resolve_prefix(run_id), False


def delete(run_id: str, runs: str | Path | None = None, *, confirmed_prefix: bool = False) -> str:
    """Remove a run that is not running: its directory and its registry row; a pipeline's stages go
    with it, and a stage alone is not deleted (its pipeline would lose a step).

    ``run_id`` must be the run's full id or name; a unique id prefix is accepted only with
    ``confirmed_prefix`` (the user saw which run it is and said yes)."""
    reg = _open(runs)
    rec, exact = delete_target(run_id, runs)
    if not exact and not confirmed_prefix:
        raise LaunchError(f"run {run_id!r}: deleting needs the run's full id or name; {run_id!r} is a prefix of "
                          f"{rec.id} (alignplan runs delete {rec.id}, or --yes to confirm the prefix)")
    if rec.pipeline_id:
        raise LaunchError(f"run {rec.id}: a stage of pipeline {rec.pipeline_id}; delete the pipeline "
                          f"(alignplan runs delete {rec.pipeline_id})")
    stages = [r for r in reg.list() if r.pipeline_id == rec.id]
    for item in [rec, *stages]:
        if item.status == "running":
            raise LaunchError(f"run {item.id}: running; stop it first (alignplan runs stop {rec.id})")
    root = reg.path.parent.resolve()
    for item in [*stages, rec]:
        run_dir = Path(item.run_dir)
        if run_dir.resolve().parent == root and run_dir.is_dir():  # never delete outside the runs root
            shutil.rmtree(run_dir)
        reg.delete(item.id)
    return rec.id
