"""A finished tiny run, registered in a runs root, for the Try it and export tests: a few steps (DPO by default) on
the tiny model in this process (no subprocess, no hub), then recorded as succeeded as the supervisor does."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from runners.launch.launch import prepare_and_register
from runners.registry.store import Registry
from runners.rundir.reader import RunDir
from runners.rundir.spec import RunSpec
from tests.runners.launch_helpers import cpu_devices, no_estimate

# A high learning rate so that 3 steps move the adapter (and the answers) away from the base model.
FAST = {"per_device_train_batch_size": 4, "learning_rate": 5e-2, "max_length": 64}


def trained_run(root: Path, model: Path, data: Path, *, name: str, lora: dict[str, Any] | None = None,
                merge_lora: bool = False, eval_fraction: float = 0.2, steps: int = 3, method: str = "dpo") -> RunDir:
    spec = RunSpec.parse({
        "method": method, "model": str(model), "name": name,
        "dataset": {"path": str(data), "eval_fraction": eval_fraction},
        "hparams": dict(FAST), "max_steps": steps, "save_steps": 100, "gradient_checkpointing": False,
        "devices": "cpu", "lora": lora, "merge_lora": merge_lora,
    })
    run = prepare_and_register(spec, root, devices=cpu_devices(), estimate=no_estimate)
    reg = Registry.for_runs_root(root)
    reg.transition(run.id, "running")
    code = importlib.import_module(f"runners.recipes.{method}").main(["--spec", str(run.spec_path)])
    assert code == 0, run.log_tail()
    assert reg.record_outcome(run.id, code).status == "succeeded"
    return run
