"""The Launch page's pipeline form (RLHF: SFT -> reward model -> PPO): the PipelineSpec it builds, each
stage's plan before anything runs, and launching the pipeline the way `alignplan run --method rlhf` does
(check_pipeline_inputs -> prepare_pipeline -> register_pipeline -> launch)."""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import Any

import streamlit as st

# Pipelines the Launch form offers (runners.pipelines.definitions.PIPELINES holds their stages).
FORM_PIPELINES = ("rlhf",)
# The PPO stage's fields on the form, with PPOConfig's defaults (runners/rl/ppo_config.py; kept here so the
# page opens without importing torch; tests/app/test_app_helpers.py checks them against PPOConfig).
PPO_FIELDS: dict[str, float] = {"learning_rate": 3e-6, "kl_coef": 0.05, "cliprange": 0.2, "lam": 0.95, "vf_coef": 0.1}
PPO_LABELS = {"learning_rate": "Learning rate", "kl_coef": "KL coefficient", "cliprange": "Clip range",
              "lam": "GAE lambda", "vf_coef": "Value loss weight"}


def definition(method: str):
    from runners.pipelines.definitions import PIPELINES

    return PIPELINES[method]


def stage_defaults(tiny: bool) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """(max steps per stage, hparams per stage) the form starts from: the tiny RLHF demo's on the tiny model
    (a random 2-layer model needs a large step size), else each recipe's defaults (-1: epochs; PPO's 100)."""
    if tiny:
        from runners.demo import tiny as tiny_model

        return dict(tiny_model.DEMO_RLHF_STEPS), {k: dict(v) for k, v in tiny_model.DEMO_RLHF_HPARAMS.items()}
    return {"sft": -1, "rm": -1, "ppo": 100}, {}


def spec_dict(
    method: str,
    model: str,
    trust: bool,
    data: dict[str, str | None],
    given: dict[str, str | None],
    max_steps: dict[str, int],
    hparams: dict[str, dict[str, Any]],
    precision: str | None,
    name: str | None,
) -> dict[str, Any]:
    """A PipelineSpec-shaped dict from the form's values; empty inputs are left out (a given model skips its
    stage; prompts default to the preference pairs' prompts)."""
    stages: dict[str, dict[str, Any]] = {}
    for stage in definition(method).stage_names:
        fields: dict[str, Any] = {}
        if stage in max_steps:
            fields["max_steps"] = int(max_steps[stage])
        if hparams.get(stage):
            fields["hparams"] = dict(hparams[stage])
        if fields:
            stages[stage] = fields
    common: dict[str, Any] = {"trust_remote_code": trust}
    if precision:
        common["precision"] = precision
    return {
        "method": method,
        "model": model,
        "data": {k: {"path": v} for k, v in data.items() if v},
        "given": {k: v for k, v in given.items() if v},
        "common": common,
        "stages": stages,
        "name": name or None,
    }


def needed_inputs(method: str, given: dict[str, str | None], data: dict[str, str | None]) -> dict[str, bool]:
    """Which of the pipeline's data sets the stages that run read (given models skip stages)."""
    from runners.pipelines.spec import PipelineSpec, stages_to_run

    probe = PipelineSpec.model_construct(method=method, model="x", data={}, given={k: v for k, v in given.items() if v},
                                         common={}, stages={}, name=None, review=False)
    d = definition(method)
    wanted: dict[str, bool] = {key: False for key in d.data}
    for stage in stages_to_run(probe, d):
        if stage.data:
            wanted[stage.data] = True
    if wanted.get("prompts") and not data.get("prompts"):
        fallback = d.data_fallback.get("prompts")
        if fallback:
            wanted[fallback] = True  # the prompts come from the pairs
    return wanted


def stage_plan(spec_data: dict[str, Any]) -> dict[str, Any]:
    """Every stage's plan, as `alignplan run --method rlhf --dry-run` makes it (prepare_pipeline into a
    scratch directory that is removed again): the pipeline's plan.json. Cached per spec."""
    return _stage_plan(json.dumps(spec_data, sort_keys=True))


@st.cache_data(show_spinner=False, max_entries=16, ttl=120)
def _stage_plan(spec_json: str) -> dict[str, Any]:
    from runners.pipelines.prepare import check_pipeline_inputs, prepare_pipeline
    from runners.pipelines.spec import PipelineSpec

    spec = PipelineSpec.parse(json.loads(spec_json))
    check_pipeline_inputs(spec, hparams_only=True)
    scratch = tempfile.mkdtemp(prefix="alignplan-pipeline-plan-")
    try:
        pipeline, _ = prepare_pipeline(spec, scratch)
        return pipeline.run.plan()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def plan_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage for the page's table."""
    from alignplan.formatting import gib

    fits = {True: "yes", False: "NO", None: "unknown"}
    rows = [{"stage": f"{i}. {s.get('stage')}", "method": s.get("method"),
             "predicted peak": gib(s.get("predicted_peak_bytes")), "peak phase": s.get("peak_phase") or "–",
             "fits": fits.get(s.get("fits"), "unknown"), "setup": s.get("setup") or "–",
             "starts from": s.get("summary") or ""}
            for i, s in enumerate(plan.get("stages") or [], 1)]
    for stage, why in (plan.get("skipped") or {}).items():
        rows.append({"stage": f"– {stage}", "method": "skipped", "predicted peak": "–", "peak phase": "–",
                     "fits": "–", "setup": "–", "starts from": why})
    return rows


def launch_pipeline(spec_data: dict[str, Any]) -> str:
    """Check, prepare, register and start the pipeline (as `alignplan run --method rlhf`); returns its id."""
    from runners.launch import launch
    from runners.pipelines.prepare import check_pipeline_inputs, prepare_pipeline
    from runners.pipelines.registry import register_pipeline
    from runners.pipelines.spec import PipelineSpec
    from runners.registry.store import Registry

    spec = PipelineSpec.parse(spec_data)
    check_pipeline_inputs(spec)
    pipeline, stages = prepare_pipeline(spec)
    register_pipeline(Registry.for_runs_root(pipeline.path.parent, reconcile=False), pipeline, spec, stages)
    launch.launch(pipeline.path)
    return pipeline.id
