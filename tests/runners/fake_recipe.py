"""A stand-in recipe for launcher tests: same command line and files as runners.recipes.*, no torch.

``python fake_recipe.py --spec RUN/spec.yaml [--resume]`` counts steps up to spec max_steps, one
metrics.jsonl line per step, a checkpoint every save_steps, honours STOP (checkpoint, result.json
"stopped", exit 0) and writes result.json "succeeded" at the end. Behaviour knobs in hparams:
fake_step_seconds (sleep per step), fake_crash_at (exit 3 at that step), fake_ignore_term (ignore
STOP and SIGTERM, so only SIGKILL ends it), fake_spawn_child (start two sleeping grandchildren, one
in a new session, pids in children.json, to check that every process of the run goes).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml


def newest_checkpoint(ckpt_dir: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in ckpt_dir.glob("checkpoint-*") if p.is_dir()]
    return max(steps, default=0)


def save(ckpt_dir: Path, step: int) -> None:
    path = ckpt_dir / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "state.json").write_text(json.dumps({"step": step}))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    run_dir = args.spec.resolve().parent
    hp = spec.get("hparams") or {}
    max_steps = spec["max_steps"] if spec["max_steps"] > 0 else 5
    ckpt_dir = Path(spec["output_dir"]) if spec.get("output_dir") else run_dir / "checkpoints"
    step = newest_checkpoint(ckpt_dir) if args.resume else 0
    if hp.get("fake_ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hp.get("fake_spawn_child"):
        # One grandchild in our process group, one in a session of its own (as torch.distributed.run
        # starts its workers); both must be gone when the run is stopped or its launcher dies.
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        kids = [subprocess.Popen(sleeper), subprocess.Popen(sleeper, start_new_session=True)]
        (run_dir / "children.json").write_text(json.dumps([k.pid for k in kids]))
    print(f"fake recipe: start at step {step} of {max_steps} (resume={args.resume})", flush=True)
    metrics = open(run_dir / "metrics.jsonl", "a", buffering=1)
    t0 = time.time()
    while step < max_steps:
        if (run_dir / "STOP").exists() and not hp.get("fake_ignore_term"):
            save(ckpt_dir, step)
            (run_dir / "result.json").write_text(json.dumps({"status": "stopped", "step": step}))
            print(f"fake recipe: stopped at step {step}", flush=True)
            return 0
        time.sleep(float(hp.get("fake_step_seconds", 0.05)))
        step += 1
        if hp.get("fake_crash_at") == step:
            print(f"fake recipe: boom at step {step}", file=sys.stderr, flush=True)
            return 3
        row = {
            "step": step,
            "max_steps": max_steps,
            "epoch": step / max_steps,
            "loss": 1.0 / step,
            "learning_rate": 1e-6,
            "tokens_per_second": 100.0,
            "peak_memory_bytes": 1000 + step,
            "memory_kind": "cpu_rss",
            "time": time.time() - t0,
            "rewards/accuracies": min(1.0, 0.4 + 0.1 * step),
        }
        metrics.write(json.dumps(row) + "\n")
        if step % int(spec.get("save_steps", 50)) == 0:
            save(ckpt_dir, step)
    final = {"step": step, "loss": 1.0 / step, "rewards/accuracies": min(1.0, 0.4 + 0.1 * step)}
    (run_dir / "result.json").write_text(
        json.dumps({"status": "succeeded", "final": final, "peak_memory_bytes": 1000 + step})
    )
    print("fake recipe: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
