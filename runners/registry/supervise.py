"""The per-run supervisor: ``python -m runners.registry.supervise RUN_DIR --registry DB [--resume]``.

The launcher starts this in its own session and returns; the supervisor starts the run's command
(command.json) in a new process group, records its pid, keeps the registry's last metrics fresh,
waits for it, reaps every descendant (it is a child subreaper on Linux, so orphaned grandchildren
come back to it rather than to an init that may not reap), and records the final status. Status
is therefore recorded even when the app or CLI that launched the run has exited.

SIGTERM/SIGINT/SIGHUP to the supervisor (a shutdown, a container stop, a closed terminal) are a
stop request, as `alignplan runs stop` makes: the STOP file asks the recipe to checkpoint and exit;
after ``--stop-grace`` seconds the process group gets SIGTERM, and SIGKILL ``TERM_GRACE_S`` later. A
second signal skips to the next step. The run ends ``stopped``.

The registry is a copy; the run directory is the truth. The supervisor writes its pids, and at the
end the exit code, to ``supervisor.json`` in the run directory, and no registry error (the file
deleted, read-only or corrupt mid-run) stops it supervising: it reopens the registry, rebuilding it
if needed (a corrupt file is moved aside), re-adopts its run there (status running, its pids), and
carries on; what it cannot record is in the run directory for the next reader
(Registry.adopt_run_dirs).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from runners.registry.store import (
    SUPERVISOR_FILE,
    TRANSITIONS,
    Registry,
    RegistryError,
    process_started,
    run_dir_facts,
)
from runners.rundir.reader import RunDir

POLL_S = 0.5
STOP_GRACE_S = 60.0  # as `alignplan runs stop`
TERM_GRACE_S = 10.0
CLEANUP_GRACE_S = 5.0
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux prctl); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in extra.items():
        if key == "PYTHONPATH" and env.get("PYTHONPATH"):
            env[key] = f"{value}{os.pathsep}{env['PYTHONPATH']}"
        else:
            env[key] = value
    return env


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_descendants(sig: int) -> None:
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for proc in children:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def reap_all(timeout: float) -> None:
    """Reap children (and adopted orphans) until none is left or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def wait_for_child(pid: int, on_tick) -> int:
    """Wait for ``pid`` while reaping adopted orphans; returns its exit code (-N for signal N)."""
    while True:
        try:
            got, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # should not happen while pid runs; treat as lost
            return -1
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if got == 0:
            on_tick()
            time.sleep(POLL_S)


class Recorder:
    """The supervisor's registry writes, none of which may end the supervision: each is retried once on
    a reopened (rebuilt, if need be) registry into which the run is re-adopted, and otherwise logged
    to stdout.log and dropped. ``state`` (pids, times, exit code) is also kept in supervisor.json."""

    def __init__(self, run: RunDir, registry_path: Path, log) -> None:
        self.run, self.path, self.log = run, registry_path, log
        self.state: dict[str, Any] = {"supervisor_pid": os.getpid(), "supervisor_started": process_started(os.getpid())}
        self._said: set[str] = set()
        self._reg: Registry | None = None

    def save_state(self, **fields: Any) -> None:
        self.state.update(fields)
        tmp = self.run.path / f".{SUPERVISOR_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(self.state), encoding="utf-8")
            os.replace(tmp, self.run.path / SUPERVISOR_FILE)
        except OSError as exc:
            self._say(f"cannot write {SUPERVISOR_FILE}: {exc}")

    def _say(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            try:
                self.log.write(f"=== alignplan supervisor: {text}\n".encode())
            except (OSError, ValueError):
                pass

    def call(self, op):
        """``op(registry)``, surviving any registry error; its value, or None when it could not be done."""
        for attempt in (1, 2):
            try:
                reg = self._open(rebuild=attempt == 2)
                if attempt == 2:
                    self._readopt(reg)
                return op(reg)
            except (sqlite3.Error, RegistryError, OSError) as exc:
                last = exc
        self._say(f"the run registry {self.path} cannot be written ({type(last).__name__}: {last}); "
                  "supervising on, the run directory keeps the record")
        return None

    def _open(self, rebuild: bool) -> Registry:
        if not rebuild and self._reg is not None and self.path.exists():
            return self._reg
        self._reg = None
        try:
            self._reg = Registry(self.path, reconcile=False)
            return self._reg
        except sqlite3.DatabaseError as exc:
            if not rebuild or "locked" in str(exc):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.replace(Path(f"{aside}{suffix}"))
            self._say(f"the run registry was not a database ({exc}); moved it to {aside.name} and started a new one")
            self._reg = Registry(self.path, reconcile=False)
            return self._reg

    def _readopt(self, reg: Registry) -> None:
        """Our run in ``reg`` as running with our pids: inserted from its files when the row is gone
        (a registry deleted or rebuilt), moved back to running when a scan recorded it as ended."""
        keys = ("pid", "pgid", "pid_started", "supervisor_pid", "supervisor_started", "started_at", "launches")
        fields = {k: self.state[k] for k in keys if self.state.get(k) is not None}
        try:
            rec = reg.get(self.run.id)
        except RegistryError:
            facts = run_dir_facts(self.run.path) or {}
            if not facts:
                raise
            facts.update(fields, status="running", error=None, ended_at=None, exit_code=None)
            try:
                reg.insert_adopted(facts)
            except sqlite3.IntegrityError:
                pass
            self._say(f"re-adopted run {self.run.id} into the run registry {self.path}")
            return
        if rec.status != "running" and "running" in TRANSITIONS[rec.status]:
            reg.transition(self.run.id, "running", error=None, ended_at=None, exit_code=None, **fields)


def supervise(run_dir: Path, registry_path: Path, resume: bool = False, stop_grace: float = STOP_GRACE_S,
              term_grace: float = TERM_GRACE_S) -> int:
    run = RunDir(run_dir)
    cmd = run.command()
    argv = list(cmd["argv"]) + ([cmd.get("resume_flag", "--resume")] if resume else [])
    become_subreaper()
    with open(run.stdout_log, "ab", buffering=0) as log:
        rec_ = Recorder(run, registry_path, log)
        before = rec_.call(lambda reg: reg.get(run.id))
        rec_.save_state(started_at=before.started_at if before else time.time(),
                        launches=before.launches if before else 1, exit_code=None, ended_at=None)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        log.write(f"=== alignplan supervisor {os.getpid()}: {'resume' if resume else 'launch'} at {stamp}\n".encode())
        stop = {"asked": None, "level": 0}  # when a stop was asked (monotonic), how far it has escalated

        def request_stop(signum, _frame):
            if stop["asked"] is None:
                stop["asked"] = time.monotonic()
                try:
                    run.stop_path.write_text(f"requested by signal {signum} to the supervisor at {time.time():.3f}\n",
                                             encoding="utf-8")
                except OSError:
                    stop["level"] = 1
                    stop["asked"] -= stop_grace  # no STOP file: go straight to SIGTERM
            else:  # a second signal: the next step now (SIGTERM, then SIGKILL)
                stop["asked"] = time.monotonic() - (stop_grace + term_grace if stop["level"] >= 2 else stop_grace)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, request_stop)
        try:
            child = subprocess.Popen(
                argv,
                cwd=cmd.get("cwd") or str(run.path),
                env=child_env(cmd.get("env") or {}),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"=== alignplan: could not start {argv[0]}: {exc}\n".encode())
            rec_.save_state(exit_code=127, ended_at=time.time())
            rec_.call(lambda reg: reg.record_outcome(run.id, 127))
            return 127
        pgid = child.pid  # a new session makes the child its own process-group leader
        rec_.save_state(pid=child.pid, pgid=pgid, pid_started=process_started(child.pid))
        rec_.call(lambda reg: reg.update(run.id, pid=child.pid, pgid=pgid, pid_started=rec_.state["pid_started"]))

        seen = {"size": -1}

        def escalate() -> None:
            if stop["asked"] is None:
                return
            waited = time.monotonic() - stop["asked"]
            if waited >= stop_grace + term_grace:
                signal_group(pgid, signal.SIGKILL)
                signal_descendants(signal.SIGKILL)
            elif waited >= stop_grace and stop["level"] < 2:
                stop["level"] = 2
                signal_group(pgid, signal.SIGTERM)

        def refresh_metrics() -> None:
            try:
                size = run.metrics_path.stat().st_size
            except OSError:
                return
            if size != seen["size"]:
                seen["size"] = size
                fields = run.measurements()
                if fields:
                    rec_.call(lambda reg: reg.update(run.id, **fields))

        def on_tick() -> None:
            try:
                escalate()
                refresh_metrics()
            except Exception as exc:  # nothing in a tick may end the supervision
                rec_._say(f"tick error: {type(exc).__name__}: {exc}")

        exit_code = wait_for_child(child.pid, on_tick)
        child.returncode = exit_code  # reaped above; keeps Popen from waiting again
        # Leftovers (workers of a launcher that died, in the group or adopted by this subreaper)
        # must not outlive the run.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            signal_group(pgid, sig)
            signal_descendants(sig)
            reap_all(0.5 if sig == signal.SIGTERM else CLEANUP_GRACE_S)
        log.write(f"=== alignplan: command exited with {exit_code}\n".encode())
        rec_.save_state(exit_code=exit_code, ended_at=time.time())
        rec = rec_.call(lambda reg: reg.record_outcome(run.id, exit_code))
        status = rec.status if rec is not None else f"{run.outcome(exit_code)[0]} (not in the registry)"
        log.write(f"=== alignplan: run {status}\n".encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.registry.supervise")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE_S,
                        help="seconds a signal to the supervisor gives the recipe to checkpoint before SIGTERM")
    parser.add_argument("--term-grace", type=float, default=TERM_GRACE_S, help="seconds from SIGTERM to SIGKILL")
    args = parser.parse_args(argv)
    return supervise(args.run_dir.resolve(), args.registry.resolve(), resume=args.resume, stop_grace=args.stop_grace,
                     term_grace=args.term_grace)


if __name__ == "__main__":
    sys.exit(main())
