"""The pipeline driver: ``python -m runners.pipelines.drive PIPELINE_DIR --registry DB``.

A pipeline run's command.json runs this module, so the pipeline is launched, supervised, stopped
and resumed like any run. The driver launches each stage in order as an ordinary run (its own
supervisor and registry row) and waits for it:

- a stage that already succeeded is never run again (a resumed pipeline continues where it was);
- a stopped or failed stage is resumed from its newest checkpoint, else started over;
- the pipeline's STOP file is passed on to the running stage, which checkpoints and exits; the
  pipeline then ends as stopped, naming the stage;
- a failed stage ends the pipeline as failed, naming the stage and its error.

Each stage's metrics rows are copied into the pipeline's metrics.jsonl, tagged with the stage, so
that following a pipeline is following its stages one after the other.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from runners.pipelines.pipeline_dir import PipelineDir, StageRun

POLL_S = 0.5


def log(message: str) -> None:
    print(f"[pipeline] {message}", flush=True)


def drive(pipeline_dir: Path, registry_path: Path) -> int:
    from runners.launch import launch
    from runners.recipes.callbacks import write_result
    from runners.registry.store import FINAL_STATUSES, Registry, is_alive

    pipeline = PipelineDir(pipeline_dir)
    reg = Registry(registry_path, reconcile=False)
    stages = pipeline.stage_runs()
    terminated = {"flag": False, "stage_supervisor": None}

    def on_term(signum, _frame):
        terminated["flag"] = True
        pid = terminated["stage_supervisor"]
        if pid:
            try:
                import os

                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)

    copied = pipeline.copied_metrics_counts()
    review = bool(pipeline.document().get("review"))
    definition = pipeline.definition()
    for stage in stages:
        where = f"stage {stage.index}/{len(stages)} ({stage.name}, run {stage.run_id})"
        rec = reg.get(stage.run_id)
        if rec.status == "succeeded":
            log(f"{where}: succeeded earlier; not run again")
            if pipeline.review_pending_path.exists():  # resumed after a review pause: the person approved
                pipeline.review_pending_path.replace(pipeline.review_approved_path)
                log(f"review of {stage.name} approved by resuming; continuing")
            continue
        if pipeline.stop_path.exists() or terminated["flag"]:
            return _ended(pipeline, write_result, "stopped", stage, f"stopped before {where} started")
        if rec.status != "running":
            resume = rec.status in launch.RESUMABLE_STATUSES and launch.has_checkpoint(stage.run)
            verb = "resuming" if resume else ("restarting" if rec.status in launch.RESUMABLE_STATUSES else "starting")
            log(f"{where}: {verb}")
            launch.launch(stage.run.path, resume=resume, registry=reg)
        rec = reg.get(stage.run_id)
        terminated["stage_supervisor"] = rec.supervisor_pid
        passed_stop = False
        while True:
            copied[stage.name] = pipeline.copy_stage_metrics(stage, len(stages), copied.get(stage.name, 0))
            rec = reg.get(stage.run_id)
            if rec.status in FINAL_STATUSES:
                break
            if pipeline.stop_path.exists() and not passed_stop:
                stage.run.stop_path.write_text(f"pipeline stop at {time.time():.3f}\n", encoding="utf-8")
                passed_stop = True
                log(f"{where}: STOP passed on; waiting for its checkpoint")
            if not (is_alive(rec.supervisor_pid, rec.supervisor_started) or is_alive(rec.pid, rec.pid_started)):
                reg.reconcile()  # it ended unseen: record what its directory says
            time.sleep(POLL_S)
        copied[stage.name] = pipeline.copy_stage_metrics(stage, len(stages), copied.get(stage.name, 0))
        log(f"{where}: {rec.status}")
        if rec.status == "stopped":
            return _ended(pipeline, write_result, "stopped", stage, f"{where} stopped; resume the pipeline to continue it")
        if rec.status == "failed":
            first = next((ln for ln in str(rec.error or "").splitlines() if ln.strip()), "no error text")
            result_error = (stage.run.result() or {}).get("error")
            return _ended(pipeline, write_result, "failed", stage,
                          f"{where} failed: {result_error or first}", exit_code=1)
        pauses = definition is not None and stage.name in definition.stage_names and \
            definition.stage(stage.name).review_after
        if review and pauses and stage is not stages[-1] and not pipeline.review_approved_path.exists():
            pipeline.review_pending_path.write_text(json.dumps({"stage": stage.name, "at": time.time()}) + "\n",
                                                    encoding="utf-8")
            return _ended(pipeline, write_result, "stopped", stage,
                          f"{where} done: paused for review; read its labels (runs show {stage.run_id}, the Runs "
                          "page), then resume the pipeline to continue or delete it to stop")
    last = stages[-1]
    final = (last.run.result() or {}).get("final_model")
    write_result(pipeline.path, "succeeded", final_model=final, stages=_stage_summary(reg, stages))
    log(f"all {len(stages)} stages succeeded; final model {final}")
    return 0


def _ended(pipeline: PipelineDir, write_result, status: str, stage: StageRun, message: str, exit_code: int = 0) -> int:
    from runners.registry.store import Registry

    reg = Registry(pipeline.path.parent / "registry.db", reconcile=False)
    extra: dict[str, Any] = {"stage": stage.name, "stage_run_id": stage.run_id,
                             "stages": _stage_summary(reg, pipeline.stage_runs())}
    if status == "failed":
        extra["error"] = message
    else:
        extra["message"] = message
    write_result(pipeline.path, status, **extra)
    log(message)
    return exit_code


def _stage_summary(reg, stages: list[StageRun]) -> list[dict[str, Any]]:
    out = []
    for stage in stages:
        try:
            status = reg.get(stage.run_id).status
        except ValueError:
            status = None
        out.append({"stage": stage.name, "run_id": stage.run_id, "status": status})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.pipelines.drive")
    parser.add_argument("pipeline_dir", type=Path)
    parser.add_argument("--registry", type=Path, help="registry.db (default: beside the pipeline directory)")
    parser.add_argument("--resume", action="store_true", help="accepted for the launcher; a pipeline always continues")
    args = parser.parse_args(argv)
    path = args.pipeline_dir.resolve()
    registry = (args.registry or path.parent / "registry.db").resolve()
    try:
        return drive(path, registry)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        from runners.recipes.callbacks import write_result

        write_result(path, "failed", error=str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
