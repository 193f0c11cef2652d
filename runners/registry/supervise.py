"""The per-run supervisor: ``python -m runners.registry.supervise RUN_DIR --registry DB [--resume]``.

The launcher starts this in its own session and returns; the supervisor starts the run's command
(command.json) in a new process group, records its pid, keeps the registry's last metrics fresh,
waits for it, reaps every descendant (it is a child subreaper on Linux, so orphaned grandchildren
come back to it rather than to an init that may not reap), and records the final status. Status
is therefore recorded even when the app or CLI that launched the run has exited.

SIGTERM/SIGINT/SIGHUP to the supervisor are forwarded to the run's process group as SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from runners.registry.store import Registry, process_started
from runners.rundir.reader import RunDir

POLL_S = 0.5
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


def supervise(run_dir: Path, registry_path: Path, resume: bool = False) -> int:
    run = RunDir(run_dir)
    reg = Registry(registry_path, reconcile=False)
    cmd = run.command()
    argv = list(cmd["argv"]) + ([cmd.get("resume_flag", "--resume")] if resume else [])
    become_subreaper()
    with open(run.stdout_log, "ab", buffering=0) as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        log.write(f"=== alignplan supervisor {os.getpid()}: {'resume' if resume else 'launch'} at {stamp}\n".encode())
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
            reg.record_outcome(run.id, 127)
            return 127
        pgid = child.pid  # a new session makes the child its own process-group leader

        def forward(signum, _frame):
            signal_group(pgid, signal.SIGTERM)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        reg.update(run.id, pid=child.pid, pgid=pgid, pid_started=process_started(child.pid))

        seen = {"size": -1}

        def refresh_metrics() -> None:
            try:
                size = run.metrics_path.stat().st_size
            except FileNotFoundError:
                return
            if size != seen["size"]:
                seen["size"] = size
                fields = run.measurements()
                if fields:
                    reg.update(run.id, **fields)

        exit_code = wait_for_child(child.pid, refresh_metrics)
        child.returncode = exit_code  # reaped above; keeps Popen from waiting again
        # Leftovers (workers of a launcher that died, in the group or adopted by this subreaper)
        # must not outlive the run.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            signal_group(pgid, sig)
            signal_descendants(sig)
            reap_all(0.5 if sig == signal.SIGTERM else CLEANUP_GRACE_S)
        log.write(f"=== alignplan: command exited with {exit_code}\n".encode())
    rec = reg.record_outcome(run.id, exit_code)
    with open(run.stdout_log, "ab") as log:
        log.write(f"=== alignplan: run {rec.status}\n".encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.registry.supervise")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return supervise(args.run_dir.resolve(), args.registry.resolve(), resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
