"""Checks on values before launch (issue 11): hyper-parameters against the config's types and ranges,
and processes against the CPU cores. One line, exit 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignplan.cli import main


def _nothing_created(root: Path) -> bool:
    return not root.exists() or not any(p.is_dir() for p in root.iterdir())


@pytest.mark.parametrize(("hparam", "message"), [
    ("learning_rate=abc", "hparams.learning_rate: expected a number, got 'abc'"),
    ("beta=nan", "hparams.beta: expected a finite number"),
    ("report_to=wandb", "hparams.report_to: 'wandb' is not installed"),
    ("learning_rate=0", "hparams.learning_rate: expected a number > 0"),
    ("per_device_train_batch_size=0", "hparams.per_device_train_batch_size: expected an integer >= 1"),
    ("per_device_train_batch_size=2.5", "hparams.per_device_train_batch_size: expected an integer"),
    ("lr_scheduler_type=nosuch", "hparams: DPOConfig rejects these settings"),
])
def test_bad_hparam_values_are_one_line_before_anything_exists(capsys, runs_dir, hparam, message, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code = main(["run", "--method", "dpo", "--model", "meta-llama/Llama-3.1-8B", "--dataset", "prefs.jsonl",
                 "--dry-run", "--hparam", hparam])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert _nothing_created(runs_dir)


def test_good_hparam_values_pass(capsys, runs_dir):
    code = main(["run", "--method", "dpo", "--model", "meta-llama/Llama-3.1-8B", "--dataset", "prefs.jsonl",
                 "--dry-run", "--hparam", "learning_rate=5e-6", "--hparam", "beta=0.1", "--hparam",
                 "loss_type=[sigmoid, hinge]", "--hparam", "per_device_train_batch_size=2", "--json"])
    assert code == 0, capsys.readouterr().err


def test_more_cpu_processes_than_cores_is_refused(capsys, runs_dir):
    import os

    many = str((os.cpu_count() or 1) * 32)
    code = main(["run", "--method", "dpo", "--model", "meta-llama/Llama-3.1-8B", "--dataset", "prefs.jsonl",
                 "--dry-run", "--devices", "cpu", "--num-processes", many])
    err = capsys.readouterr().err
    assert code == 2 and f"num_processes: {many} CPU processes on {os.cpu_count()} CPU cores" in err
    assert len(err.strip().splitlines()) == 1 and _nothing_created(runs_dir)


def test_cpu_processes_whose_plan_does_not_fit_in_ram_are_warned():
    import dataclasses

    from runners.rundir import devices as dev
    from runners.rundir.decide import decide
    from runners.rundir.spec import RunSpec

    small = dataclasses.replace(dev.discover(gpus=[]), cpu_count=4, ram_available_bytes=8 * 2**30)
    spec = RunSpec.parse({"method": "dpo", "model": "meta-llama/Llama-3.1-8B", "dataset": {"path": "p.jsonl"},
                          "devices": "cpu", "num_processes": 2})
    decision, _ = decide(spec, small)
    assert decision.fits is False
    assert any(n.startswith("RAM: 2 processes x") and "fewer --num-processes" in n for n in decision.notes)
