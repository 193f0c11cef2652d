"""`alignplan run --method rlhf ...`: a pipeline from the command line.

    alignplan run --method rlhf --model BASE --sft-dataset demos.jsonl --dataset pairs.jsonl \
        [--prompts prompts.jsonl] [--sft-model DIR] [--reward-model DIR] [--max-steps N] \
        [--stage ppo.max_steps=40] [--hparam ppo.learning_rate=1e-5] [--dry-run]

Shared flags (--max-steps, --precision, --devices, --lora-rank, --save-steps, ...) apply to every
stage; --stage STAGE.FIELD=VALUE and --hparam STAGE.KEY=VALUE to one stage.
"""

from __future__ import annotations

import argparse
from typing import Any

from runners.pipelines.definitions import PIPELINES
from runners.pipelines.spec import PipelineSpec

# run flags that set a field shared by every stage
COMMON_FLAGS = (("precision", "precision"), ("max_steps", "max_steps"), ("save_steps", "save_steps"),
                ("num_processes", "num_processes"), ("sharding", "sharding"), ("zero_stage", "zero_stage"))


class PipelineInputError(ValueError):
    pass


def _stage_item(item: str, flag: str, stages: tuple[str, ...], parse_value) -> tuple[str, str, Any]:
    """STAGE.KEY=VALUE -> (stage, key, value), the value read as `--hparam` reads it (parse_value)."""
    key, sep, raw = item.partition("=")
    stage, dot, field = key.strip().partition(".")
    if not sep or not dot or not field:
        raise PipelineInputError(f"{flag} {item!r}: expected STAGE.KEY=VALUE with STAGE one of {', '.join(stages)}")
    if stage not in stages:
        raise PipelineInputError(f"{flag} {item!r}: unknown stage {stage!r}; stages: {', '.join(stages)}")
    return stage, field, parse_value([f"{field}={raw}"])[field]


def pipeline_spec_from_args(args: argparse.Namespace, parse_devices, parse_hparams) -> PipelineSpec:
    """parse_devices and parse_hparams: the CLI's readers of --devices and KEY=VALUE items."""
    definition = PIPELINES[args.method]
    names = definition.stage_names
    data: dict[str, Any] = {}
    if args.spec:
        data = PipelineSpec.load(args.spec).model_dump(mode="json")
    data["method"] = args.method
    if args.model:
        data["model"] = args.model
    if args.name:
        data["name"] = args.name
    datasets = dict(data.get("data") or {})
    for flag, key in (("sft_dataset", "sft"), ("dataset", definition.main_data), ("prompts", "prompts"),
                      ("responses", "responses")):
        value = getattr(args, flag, None)
        if value:
            datasets[key] = {**(datasets.get(key) or {}), "path": value}
    if args.eval_fraction is not None:
        for key in datasets:
            datasets[key]["eval_fraction"] = args.eval_fraction
    data["data"] = datasets
    given = dict(data.get("given") or {})
    for flag, stage in (("sft_model", "sft"), ("reward_model", "rm")):
        value = getattr(args, flag, None)
        if value:
            given[stage] = value
    data["given"] = given
    common = dict(data.get("common") or {})
    for flag, field in COMMON_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            common[field] = value
    if args.lora_rank is not None:
        common["lora"] = {**(common.get("lora") or {}), "r": args.lora_rank}
    if args.devices is not None:
        common["devices"] = parse_devices(args.devices)
    data["common"] = common
    stages: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (data.get("stages") or {}).items()}
    for item in getattr(args, "stage", None) or []:
        stage, field, value = _stage_item(item, "--stage", names, parse_hparams)
        stages.setdefault(stage, {})[field] = value
    for item in args.hparam or []:
        stage, field, value = _stage_item(item, "--hparam", names, parse_hparams)
        stages.setdefault(stage, {}).setdefault("hparams", {})[field] = value
    if getattr(args, "reward_function", None):
        last = names[-1]
        stages.setdefault(last, {})["reward"] = {"function": args.reward_function}
    judge = judge_from_args(args)
    for stage in definition.stages:
        if judge and stage.method == "rlaif-label":
            stages.setdefault(stage.name, {})["judge"] = judge
        if getattr(args, "constitution", None) and stage.method in ("cai-generate", "rlaif-label"):
            stages.setdefault(stage.name, {})["constitution"] = args.constitution
    if getattr(args, "review", False):
        data["review"] = True
    data["stages"] = stages
    if not data.get("model"):
        raise PipelineInputError("--model: required (the base model the first stage starts from)")
    return PipelineSpec.parse(data)


def judge_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The judge of the labelling stages from --judge-* flags (None when none is given)."""
    given = {
        "function": getattr(args, "judge_function", None),
        "local": getattr(args, "judge_model", None),
        "reward-model": getattr(args, "judge_reward_model", None),
        "endpoint": getattr(args, "judge_url", None),
    }
    kinds = [k for k, v in given.items() if v]
    if len(kinds) > 1:
        raise PipelineInputError("--judge-function, --judge-model, --judge-reward-model, --judge-url: give one judge")
    if not kinds:
        if getattr(args, "judge_endpoint_model", None) or getattr(args, "judge_api_key_env", None):
            raise PipelineInputError("--judge-endpoint-model/--judge-api-key-env: give the endpoint with --judge-url")
        return None
    kind = kinds[0]
    if kind == "function":
        return {"kind": "function", "function": given["function"]}
    if kind in ("local", "reward-model"):
        return {"kind": kind, "model": given[kind]}
    judge = {"kind": "endpoint", "base_url": given["endpoint"], "endpoint_model": args.judge_endpoint_model}
    if args.judge_api_key_env:
        judge["api_key_env"] = args.judge_api_key_env
    return judge
