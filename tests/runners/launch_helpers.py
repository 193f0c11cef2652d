"""Helpers for the launcher tests: specs, fake devices, and run dirs whose command is the fake recipe."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from runners.launch.launch import prepare_and_register
from runners.rundir import devices as dev
from runners.rundir.prepare import write_command
from runners.rundir.reader import RunDir
from runners.rundir.spec import RunSpec

FAKE_RECIPE = Path(__file__).resolve().parent / "fake_recipe.py"
GIB = 2**30


def spec(**over: Any) -> RunSpec:
    data: dict[str, Any] = {"method": "dpo", "model": "meta-llama/Llama-3.1-8B", "dataset": {"path": "prefs.jsonl"}}
    data.update(over)
    return RunSpec.parse(data)


def cpu_devices() -> dev.Devices:
    return dev.discover(gpus=[])


def fake_gpus(n: int, total_gib: float, name: str = "NVIDIA A100-SXM4-80GB", free_gib: float | None = None) -> dev.Devices:
    total = int(total_gib * GIB)
    free = int((free_gib if free_gib is not None else total_gib) * GIB)
    return dev.discover(gpus=[dev.GPU(i, name, total, free) for i in range(n)])


def no_estimate(spec, **kw):
    raise RuntimeError("no planner in this test")


def fake_run(root: Path, steps: int = 5, **hparams: Any) -> RunDir:
    """A prepared run (registered, status prepared) whose command is the fake recipe."""
    s = spec(max_steps=steps, save_steps=hparams.pop("save_steps", 2), hparams=hparams)
    run = prepare_and_register(s, root, devices=cpu_devices(), estimate=no_estimate)
    write_command(run, [sys.executable, str(FAKE_RECIPE), "--spec", str(run.spec_path)])
    return run


def wait_until(predicate, timeout: float = 30.0, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())


def processes_in_group(pgid: int) -> list[psutil.Process]:
    """Every process of the group, zombies included."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out



def stop_leftovers(root: Path) -> None:
    """Kill runs a failed test left running under ``root`` (each registry.db found), so no process
    outlives its test."""
    from runners.launch import launch
    from runners.registry.store import Registry

    for db in root.rglob("registry.db"):
        for rec in Registry(db).list(status="running"):
            try:
                launch.stop(rec.id, grace=0, term_grace=1, runs=db.parent)
            except Exception:  # best effort: the test itself reports the failure
                pass


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`alignplan ARGV` in this process: (exit code, stdout, stderr)."""
    from alignplan.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
