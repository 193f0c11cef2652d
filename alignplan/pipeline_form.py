"""The Launch page's pipeline forms (rlhf: SFT -> reward model -> PPO; rlaif: generate -> judge -> DPO;
cai: critique/revise -> SFT -> generate -> judge -> DPO): the PipelineSpec each builds (the judge, the
constitution, review), each stage's plan before anything runs, and launching the pipeline the way
`alignplan run --method rlhf|rlaif|cai` does (check_pipeline_inputs -> prepare_pipeline -> register_pipeline
-> launch)."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import tempfile
from typing import Any

import streamlit as st

# Pipelines the Launch form offers (runners.pipelines.definitions.PIPELINES holds their stages).
FORM_PIPELINES = ("rlhf", "rlaif", "cai")
# How the method list names a stage (the stage ids are short: label is the judge, critique also revises).
STAGE_LABELS = {"label": "judge", "critique": "critique/revise"}
# Stages whose recipe trains nothing and takes no max_steps (runners/recipes/rlaif_label.py TRAINING_FIELDS).
NO_STEPS_METHODS = ("rlaif-label",)
# The judge choices on the form for the labelling stage (a runners.rundir.spec.JudgeSpec kind each).
JUDGE_CHOICES = {"function": "Built-in rule judge", "local": "Local judge model", "reward-model": "Reward model",
                 "endpoint": "OpenAI-compatible endpoint"}
RULES_MODULE = "runners.judges.rules"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The data sets each pipeline's form asks for: name -> (label, bundled demo sample, method its format is
# checked for).
PIPELINE_DATA: dict[str, dict[str, tuple[str, str, str]]] = {
    "rlhf": {"sft": ("SFT demonstrations", "sft", "sft"),
             "preferences": ("Preference pairs (reward model)", "preference", "rm"),
             "prompts": ("Prompts for PPO", "prompts", "ppo")},
    "rlaif": {"prompts": ("Prompts the policy answers", "prompts", "generate")},
    "cai": {"prompts": ("Prompts (red-team and ordinary) to answer, critique and revise", "prompts", "cai-generate")},
}
# The PPO stage's fields on the form, with PPOConfig's defaults (runners/rl/ppo_config.py; kept here so the
# page opens without importing torch; tests/app/test_app_helpers.py checks them against PPOConfig).
PPO_FIELDS: dict[str, float] = {"learning_rate": 3e-6, "kl_coef": 0.05, "cliprange": 0.2, "lam": 0.95, "vf_coef": 0.1}
PPO_LABELS = {"learning_rate": "Learning rate", "kl_coef": "KL coefficient", "cliprange": "Clip range",
              "lam": "GAE lambda", "vf_coef": "Value loss weight"}


def definition(method: str):
    from runners.pipelines.definitions import PIPELINES

    return PIPELINES[method]


def method_label(method: str) -> str:
    """'rlaif (pipeline: generate → judge → dpo)' for the method list."""
    d = definition(method)
    return f"{method} (pipeline: {' → '.join(STAGE_LABELS.get(s.name, s.name) for s in d.stages)})"


def step_stages(method: str) -> list[Any]:
    """The stages that take max steps on the form (a labelling stage trains nothing)."""
    return [s for s in definition(method).stages if s.method not in NO_STEPS_METHODS]


def stage_defaults(tiny: bool, method: str = "rlhf") -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """(max steps per stage, hparams per stage) the form starts from: the tiny demo's on the tiny model
    (a random 2-layer model needs a large step size), else each recipe's defaults (-1: epochs, or every
    prompt for a generation stage; PPO's 100)."""
    if method == "rlhf":
        if tiny:
            from runners.demo import tiny as tiny_model

            return dict(tiny_model.DEMO_RLHF_STEPS), {k: dict(v) for k, v in tiny_model.DEMO_RLHF_HPARAMS.items()}
        return {"sft": -1, "rm": -1, "ppo": 100}, {}
    steps = {s.name: -1 for s in step_stages(method)}
    if not tiny:
        return steps, {}
    from runners.demo import tiny as tiny_model

    demo = {"rlaif": tiny_model.DEMO_RLAIF_STAGES, "cai": tiny_model.DEMO_CAI_STAGES}[method]
    for name in steps:
        steps[name] = int((demo.get(name) or {}).get("max_steps", -1))
    return steps, {k: dict(v["hparams"]) for k, v in demo.items() if v.get("hparams")}


def rule_judges() -> dict[str, str]:
    """The built-in rule judges (runners/judges/rules.py): 'module:function' -> the first line of its doc."""
    import importlib

    module = importlib.import_module(RULES_MODULE)
    out: dict[str, str] = {}
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if fn.__module__ != module.__name__ or name.startswith("_"):
            continue
        if list(inspect.signature(fn).parameters)[:3] != ["prompt", "first", "second"]:
            continue
        out[f"{RULES_MODULE}:{name}"] = (inspect.getdoc(fn) or "").split("\n")[0]
    return out


def judge_spec(kind: str, *, function: str | None = None, model: str | None = None, base_url: str | None = None,
               endpoint_model: str | None = None, api_key_env: str | None = None) -> dict[str, Any]:
    """The labelling stage's judge (JudgeSpec-shaped) from the form, as `--judge-*` makes it. Raises ValueError
    naming what to fill in. An endpoint takes the NAME of the environment variable with its key, never a key."""
    if kind == "function":
        if not function:
            raise ValueError("Judge: choose a rule judge")
        return {"kind": "function", "function": function}
    if kind in ("local", "reward-model"):
        if not model:
            raise ValueError(f"Judge: give the {JUDGE_CHOICES[kind].lower()}'s hub id or local directory")
        return {"kind": kind, "model": model}
    if kind == "endpoint":
        if not base_url or not endpoint_model:
            raise ValueError("Judge: give the endpoint's URL and the model name it serves")
        judge: dict[str, Any] = {"kind": "endpoint", "base_url": base_url, "endpoint_model": endpoint_model}
        if api_key_env:
            if not _ENV_NAME.match(api_key_env):
                raise ValueError("Judge: API key variable: give the NAME of the environment variable that holds the "
                                 "key (e.g. OPENAI_API_KEY), not the key itself")
            judge["api_key_env"] = api_key_env
        return judge
    raise ValueError(f"Judge: unknown kind {kind!r}; one of {', '.join(JUDGE_CHOICES)}")


def constitution_rows(path: str | None = None) -> tuple[str, list[dict[str, str]]]:
    """(the constitution's name, one row per principle: principle, critique, revision); None: the bundled
    one. Raises ConstitutionError for a file that cannot be used."""
    from runners.judges.constitution import load_constitution

    c = load_constitution(path)
    return c.name, [{"principle": p.name, "critique": p.critique, "revision": p.revision} for p in c.principles]


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
    judge: dict[str, Any] | None = None,
    constitution: str | None = None,
    review: bool = False,
) -> dict[str, Any]:
    """A PipelineSpec-shaped dict from the form's values; empty inputs are left out (a given model skips its
    stage; prompts default to the preference pairs' prompts). judge: every labelling stage's; constitution: the
    critique/revision and labelling stages' (as `--judge-*` and `--constitution` set them); review: pause after
    labelling."""
    stages: dict[str, dict[str, Any]] = {}
    for stage_def in definition(method).stages:
        stage = stage_def.name
        fields: dict[str, Any] = {}
        if stage in max_steps and stage_def.method not in NO_STEPS_METHODS:
            fields["max_steps"] = int(max_steps[stage])
        if hparams.get(stage):
            fields["hparams"] = dict(hparams[stage])
        if judge and stage_def.method == "rlaif-label":
            fields["judge"] = dict(judge)
        if constitution and stage_def.method in ("cai-generate", "rlaif-label"):
            fields["constitution"] = constitution
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
        **({"review": True} if review else {}),
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
    """Check, prepare, register and start the pipeline (as `alignplan run --method rlhf|rlaif|cai`); returns
    its id."""
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
