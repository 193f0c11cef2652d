"""prepare_pipeline(): a PipelineSpec -> the pipeline's run directory and one run directory per stage.

Every stage is prepared at once, as an ordinary run (spec.yaml, accelerate.yaml, command.sh,
plan.json), so the plan of every stage is known before anything runs. A stage whose model is an
earlier stage's output is planned with the model that output is made from (an SFT model has its
base model's architecture; a reward model too, with a one-wide head that its method profile
counts). The pipeline directory's command runs the driver (runners.pipelines.drive).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runners.paths import REPO_ROOT, runs_root
from runners.pipelines.definitions import StageDefinition
from runners.pipelines.pipeline_dir import PIPELINE_FILE, PipelineDir
from runners.pipelines.spec import PipelineSpec, stage_specs
from runners.rundir import devices as dev
from runners.rundir.decide import Estimator, planner_estimate
from runners.rundir.prepare import make_run_dir, prepare, with_absolute_paths, write_command
from runners.rundir.reader import RunDir
from runners.rundir.spec import RunSpec, SpecError


@dataclass(frozen=True)
class PreparedStage:
    stage: StageDefinition
    run: RunDir
    spec: RunSpec
    plan_model: str  # the model the planner was given for this stage


def with_absolute_inputs(spec: PipelineSpec) -> PipelineSpec:
    """The base model, given models and data paths made absolute (as prepare does for a run), so the
    stage specs built from them work from any directory."""
    probe = RunSpec.parse({"method": "sft", "model": spec.model, "dataset": {"path": "x"}})
    model = with_absolute_paths(probe).model
    data = {}
    for key, ds in spec.data.items():
        probe = RunSpec.parse({"method": "sft", "model": "x", "dataset": ds.model_dump(mode="json")})
        data[key] = with_absolute_paths(probe).dataset
    given = {}
    for key, path in spec.given.items():
        probe = RunSpec.parse({"method": "sft", "model": path, "dataset": {"path": "x"}})
        given[key] = with_absolute_paths(probe).model
    return spec.model_copy(update={"model": model, "data": data, "given": given})


def plan_models(spec: PipelineSpec) -> dict[str, str]:
    """For each stage, the model whose architecture its starting model has."""
    out: dict[str, str] = {}
    for stage in spec.definition.stages:
        source = stage.model_from
        if source is None:
            out[stage.name] = spec.model
        elif source in spec.given:
            out[stage.name] = spec.given[source]
        else:
            out[stage.name] = out.get(source, spec.model)
    return out


def _estimate_with(model: str, estimate: Estimator) -> Estimator:
    def estimate_stage(spec: RunSpec, **kwargs: Any):
        return estimate(spec.model_copy(update={"model": model}), **kwargs)

    return estimate_stage


def prepare_pipeline(
    spec: PipelineSpec,
    root: str | Path | None = None,
    *,
    devices: dev.Devices | None = None,
    estimate: Estimator = planner_estimate,
) -> tuple[PipelineDir, list[PreparedStage]]:
    """Write runs/<id>/ (pipeline.yaml, plan.json, command.sh/.json) and runs/<id>.<stage>/ for
    every stage that runs. Registering them is the registry's step (Registry.add_pipeline)."""
    spec = with_absolute_inputs(spec)
    devices = devices if devices is not None else dev.discover()
    base = runs_root(root)
    path = make_run_dir(base, spec.method)
    pipeline = PipelineDir(path)
    models = plan_models(spec)
    prepared: list[PreparedStage] = []
    try:
        for stage, run_spec, run_dir in stage_specs(spec, pipeline.id, base):
            run_dir.mkdir()
            plan_model = models[stage.name]
            run = prepare(run_spec, base, devices=devices, estimate=_estimate_with(plan_model, estimate),
                          run_dir=run_dir)
            prepared.append(PreparedStage(stage, run, run.spec(), plan_model))
    except BaseException:
        import shutil

        for item in prepared:
            shutil.rmtree(item.run.path, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        for leftover in base.glob(f"{pipeline.id}.*"):
            shutil.rmtree(leftover, ignore_errors=True)
        raise
    document = {
        **spec.model_dump(mode="json", exclude_defaults=False),
        "stage_runs": [{"stage": p.stage.name, "method": p.stage.method, "run_id": p.run.id} for p in prepared],
    }
    pipeline.pipeline_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    write_command(pipeline.run, [sys.executable, "-m", "runners.pipelines.drive", str(path)],
                  env={"PYTHONPATH": str(REPO_ROOT)})
    peaks = [p.run.plan().get("predicted_peak_bytes") for p in prepared]
    known = [int(p) for p in peaks if isinstance(p, int | float)]
    plan_doc = {
        "run_id": pipeline.id,
        "pipeline": spec.method,
        "predicted_peak_bytes": max(known) if known else None,
        "stages": [stage_plan_summary(p) for p in prepared],
        "skipped": {name: f"given: {model}" for name, model in spec.given.items()},
        "devices": devices.to_dict(),
        "decision": {
            "kind": "pipeline",
            "reason": f"{len(prepared)} stages run one after another; the peak is the largest stage's",
            "fits": None if not known else all(p.run.decision().get("fits") is not False for p in prepared),
            "notes": [n for p in prepared for n in (f"{p.stage.name}: {x}" for x in p.run.decision().get("notes") or [])],
        },
    }
    pipeline.run.plan_path.write_text(json.dumps(plan_doc, indent=2, default=str) + "\n", encoding="utf-8")
    return pipeline, prepared


def stage_plan_summary(item: PreparedStage) -> dict[str, Any]:
    plan = item.run.plan()
    decision = plan.get("decision") or {}
    planned = plan.get("plan") or {}
    return {
        "stage": item.stage.name,
        "method": item.stage.method,
        "run_id": item.run.id,
        "summary": item.stage.summary,
        "model": item.spec.model,
        "planned_with": item.plan_model,
        "predicted_peak_bytes": plan.get("predicted_peak_bytes"),
        "peak_phase": planned.get("peak_phase"),
        "setup": decision.get("kind"),
        "fits": decision.get("fits"),
    }


def check_pipeline_inputs(spec: PipelineSpec, root: str | Path | None = None, *, hparams_only: bool = False) -> None:
    """What runners.launch.preflight checks for a run, for every stage that runs: its hyper-parameters;
    unless hparams_only (a dry run, which may plan for another machine), also its data and its model
    when that exists before the pipeline runs (not when an earlier stage makes it)."""
    from runners.launch import preflight

    spec = with_absolute_inputs(spec)
    base = runs_root(root)
    made_here = str(base / "preflight-check.")  # an earlier stage's output, under this pipeline id
    for stage, run_spec, _ in stage_specs(spec, "preflight-check", base):
        try:
            preflight.check_hparams(run_spec)
            if hparams_only:
                continue
            if not run_spec.dataset.path.startswith(made_here):
                preflight.check_dataset(run_spec)
            if not run_spec.model.startswith(made_here):
                preflight.check_model(run_spec)
        except (SpecError, ValueError) as exc:
            raise SpecError(f"stage {stage.name}: {exc}") from None


__all__ = ["PIPELINE_FILE", "PreparedStage", "check_pipeline_inputs", "prepare_pipeline"]
