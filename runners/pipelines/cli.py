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
    for flag, key in (("sft_dataset", "sft"), ("dataset", "preferences"), ("prompts", "prompts")):
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
    data["stages"] = stages
    if not data.get("model"):
        raise PipelineInputError("--model: required (the base model the first stage starts from)")
    return PipelineSpec.parse(data)
