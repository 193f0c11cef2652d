"""`alignplan run`, `alignplan runs ...`, `alignplan tiny-model`, `alignplan demo`: runs from the shell.

    alignplan run --method dpo --model DIR --dataset prefs.jsonl --max-steps 30 --dry-run --json
    alignplan runs list | show ID | logs ID | start ID | stop ID | resume ID | delete ID   [--json]

Runs live under $ALIGNPLAN_RUNS_DIR (default ./runs); see docs/runners.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from planner.parsing import printable

GIB = 2**30
# Metrics worth a column in progress lines, in this order, when the recipe logs them.
PROGRESS_KEYS = ("rewards/accuracies", "rewards/margins", "accuracy", "reward", "score", "kl")
EVAL_KEYS = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "eval_reward", "eval_accuracy")


class CliInputError(ValueError):
    """A command-line value that cannot be used."""


def add_follow_options(p: argparse.ArgumentParser) -> None:
    """What run, runs start and runs resume share: they launch, then follow the run."""
    p.add_argument("--detach", action="store_true", help="launch and return at once")
    p.add_argument("--stop-grace", type=float, default=60.0, help="seconds Ctrl-C waits for a clean stop")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="prepare a run directory and launch a training run",
                       description="Prepare runs/<id>/ for a method, model and data set, then launch it.")
    p.add_argument("--spec", type=Path, help="a spec.yaml (RunSpec) to start from; flags below override it")
    p.add_argument("--method", help="sft, rm, dpo, ipo, kto, orpo, simpo, grpo, rloo, ppo; or a pipeline: "
                                    "rlhf, rlaif, cai")
    p.add_argument("--model", help="hub id or local model directory")
    p.add_argument("--dataset", help="local .jsonl/.json/.csv/.parquet file or hub dataset id")
    p.add_argument("--eval-fraction", type=float, help="share of rows held out for evaluation")
    p.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank instead of all weights")
    p.add_argument("--precision", help="bf16-kahan | bf16 | amp-bf16 | fp32 (default: bf16-kahan on a GPU, fp32 on CPU)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (default: one epoch)")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="a method hyper-parameter (TRL config field), e.g. learning_rate=5e-6; repeatable")
    p.add_argument("--devices", help="cpu | auto | GPU indices such as 0,1 (default auto)")
    p.add_argument("--num-processes", type=int, help="processes to launch (default: one per device)")
    p.add_argument("--sharding", choices=("auto", "fsdp", "deepspeed"),
                   help="what shards the model when a replica does not fit one GPU (default auto: "
                        "DeepSpeed if installed, else FSDP2)")
    p.add_argument("--zero-stage", type=int, choices=(0, 2, 3),
                   help="force the sharding stage: 0 DDP, 2 gradients + optimizer states, 3 everything "
                        "(default: the smallest stage that fits)")
    p.add_argument("--name", help="a label for the run registry")
    g = p.add_argument_group("rewards (ppo, grpo, rloo)")
    g.add_argument("--reward-model", help="reward model directory or hub id (rlhf: skips the reward-model stage)")
    g.add_argument("--reward-function",
                   help="reward function: builtin:exact_match|regex|length|marker, 'package.module:function' "
                   "or 'path/to/file.py:function'")
    g.add_argument("--reward-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the reward function (repeatable), e.g. pattern='^<answer>'")
    g = p.add_argument_group("pipelines (rlhf: sft -> rm -> ppo)")
    g.add_argument("--sft-dataset", help="rlhf: demonstrations for the SFT stage")
    g.add_argument("--prompts", help="rlhf: prompts for PPO (default: the prompts of --dataset's pairs)")
    g.add_argument("--sft-model", help="rlhf: an existing SFT model; skips the SFT stage")
    g.add_argument("--responses", help="rlaif: answers in hand ({prompt, responses}); skips generation")
    g.add_argument("--judge-function", help="rlaif/cai: judge 'module:function' or 'file.py:function' "
                                            "(prompt, first, second) -> 'first' | 'second' | None")
    g.add_argument("--judge-model", help="rlaif/cai: a local causal LM judge (directory or hub id)")
    g.add_argument("--judge-reward-model", help="rlaif/cai: a reward model as judge (the higher score wins)")
    g.add_argument("--judge-url", help="rlaif/cai: an OpenAI-compatible endpoint's base URL as judge")
    g.add_argument("--judge-endpoint-model", help="rlaif/cai: the model name the endpoint serves")
    g.add_argument("--judge-api-key-env", help="rlaif/cai: the NAME of the env variable holding the key")
    g.add_argument("--constitution", help="cai: constitution YAML (default: the bundled harmlessness one)")
    g.add_argument("--review", action="store_true", help="rlaif/cai: pause after labelling for a person")
    g.add_argument("--stage", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                   help="rlhf: a spec field of one stage, e.g. ppo.max_steps=40; repeatable "
                        "(--hparam takes STAGE.KEY=VALUE for a pipeline)")
    p.add_argument("--dry-run", action="store_true", help="write the run directory and print the plan; launch nothing")
    g = p.add_argument_group("export beyond one machine (docs/exports.md): writes files, launches nothing")
    g.add_argument("--export", choices=("accelerate", "verl", "openrlhf"),
                   help="render the planner's placement for this engine into <run dir>/export-<engine>/")
    g.add_argument("--nodes", type=int, default=1, help="nodes for --export (default 1)")
    g.add_argument("--gpus", type=int, default=8, help="GPUs per node for --export (default 8)")
    g.add_argument("--gpu-type", default="H100-80GB", help="planner GPU id for --export (default H100-80GB)")
    g.add_argument("--host-ram-gib", type=float, default=None,
                   help="host RAM per node in GiB, checked against the offloaded states (default: the usual "
                        "server of --gpu-type, e.g. 2048 for a DGX H100; other types are not checked)")
    add_follow_options(p)
    p.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="list, inspect, start, stop, resume, delete, try or export runs")
    rsub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    r = rsub.add_parser("list", help="all runs with status, step and memory")
    r.add_argument("--status", help="only runs with this status")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_list)
    r = rsub.add_parser("show", help="one run: registry record, decision, plan and result")
    r.add_argument("id", help="run id, unique id prefix/suffix, or run name")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_show)
    r = rsub.add_parser("logs", help="the run's stdout.log")
    r.add_argument("id")
    r.add_argument("-n", "--lines", type=int, default=40, help="lines from the end (default 40)")
    r.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    r.set_defaults(func=cmd_logs)
    r = rsub.add_parser("start", help="launch a prepared run (one made with run --dry-run)")
    r.add_argument("id")
    add_follow_options(r)
    r.set_defaults(func=cmd_start)
    r = rsub.add_parser("stop", help="stop a running run (checkpoint, then exit)")
    r.add_argument("id")
    r.add_argument("--grace", type=float, default=60.0, help="seconds to wait before SIGTERM (default 60)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_stop)
    r = rsub.add_parser("resume", help="continue a stopped or failed run from its newest checkpoint")
    r.add_argument("id")
    add_follow_options(r)
    r.set_defaults(func=cmd_resume)
    r = rsub.add_parser("delete", help="delete a run's directory (checkpoints included) and registry entry")
    r.add_argument("id", help="the run's full id or name; a unique id prefix is shown back and needs --yes")
    r.add_argument("--yes", "-y", action="store_true", help="delete the run a unique id prefix matches without asking")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_delete)
    r = rsub.add_parser("export", help="a finished run's model as a standalone directory (a LoRA adapter merged in)")
    r.add_argument("id", help="run id, unique id prefix/suffix, or run name")
    r.add_argument("--merged", type=Path, required=True, metavar="OUT_DIR",
                   help="new (or empty) directory for the merged model, its tokenizer and ALIGNPLAN_EXPORT.json")
    r.add_argument("--push-to-hub", metavar="REPO", help="also upload it to this Hugging Face Hub repo (private)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_export)
    r = rsub.add_parser("try", help="answers of a finished run's model, beside its reference's with --compare")
    r.add_argument("id", help="run id, unique id prefix/suffix, or run name")
    r.add_argument("--prompt", action="append", metavar="TEXT",
                   help="ask this (repeatable; through the chat template when the tokenizer has one); "
                        "default: the run's held-out prompts")
    r.add_argument("--compare", action="store_true", help="also answer with the reference (the SFT/base model)")
    r.add_argument("-k", "--prompts", type=int, default=5, help="held-out prompts to answer (default 5)")
    r.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (default 48)")
    r.add_argument("--sample", action="store_true", help="sample (temperature 0.7) instead of greedy decoding")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_try)

    t = sub.add_parser("tiny-model", help="build the tiny local Llama + tokenizer used by tests and the demo")
    t.add_argument("dir", type=Path)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tiny_model)

    d = sub.add_parser("demo", help="DPO on the tiny model and bundled preference data, on CPU (under a minute)")
    d.add_argument("--method", choices=("dpo", "ppo", "rlaif", "cai"), default="dpo",
                   help="dpo (default); ppo: the RLHF pipeline SFT -> reward model -> PPO; rlaif: generate -> "
                        "judge -> DPO; cai: critique/revise -> SFT -> generate -> judge -> DPO (a few minutes each)")
    d.add_argument("--steps", type=int, help="optimizer steps (default: the demo's; ppo: PPO iterations)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)


# --- building the spec -----------------------------------------------------------------------------


def parse_hparams(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as YAML scalars (5e-6 -> float, true -> bool, [a, b] -> list)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliInputError(f"--hparam {item!r}: expected KEY=VALUE, e.g. learning_rate=5e-6")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key] = _number(value) if isinstance(value, str) else value
    return out


def _number(text: str) -> Any:
    """YAML 1.1 reads 5e-3 (no dot) as a string; a learning rate written so is still a number."""
    try:
        return float(text) if text.strip().lower() not in ("nan", "inf", "-inf", "infinity") else text
    except ValueError:
        return text


def parse_devices(value: str) -> str | list[int]:
    if value.strip() in ("cpu", "auto"):
        return value.strip()
    try:
        indices = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        indices = []
    if not indices or any(i < 0 for i in indices):
        raise CliInputError(f"--devices {value!r}: expected cpu, auto or GPU indices such as 0,1")
    return indices


def spec_from_args(args: argparse.Namespace):
    from runners.rundir.spec import RunSpec

    data: dict[str, Any] = {}
    if args.spec:
        data = RunSpec.load(args.spec).model_dump(mode="json", exclude_unset=False)
    for flag, field in (("method", "method"), ("model", "model"), ("precision", "precision"),
                        ("max_steps", "max_steps"), ("save_steps", "save_steps"),
                        ("num_processes", "num_processes"), ("name", "name"), ("sharding", "sharding"),
                        ("zero_stage", "zero_stage")):
        value = getattr(args, flag)
        if value is not None:
            data[field] = value
    if args.dataset is not None:
        data["dataset"] = {**(data.get("dataset") or {}), "path": args.dataset}
    if args.eval_fraction is not None:
        data.setdefault("dataset", {})["eval_fraction"] = args.eval_fraction
    if args.lora_rank is not None:
        data["lora"] = {**(data.get("lora") or {}), "r": args.lora_rank}
    if args.devices is not None:
        data["devices"] = parse_devices(args.devices)
    data["hparams"] = {**(data.get("hparams") or {}), **parse_hparams(args.hparam)}
    if args.reward_model or args.reward_function:
        data["reward"] = {"model": args.reward_model, "function": args.reward_function}
    if args.reward_param:
        from runners.rewards.load import parse_param_items

        reward = data.get("reward") or {}
        reward["params"] = {**(reward.get("params") or {}), **parse_param_items(args.reward_param)}
        data["reward"] = reward
    for flag in ("sft_dataset", "prompts", "sft_model", "responses", "judge_function", "judge_model",
                 "judge_reward_model", "judge_url", "judge_endpoint_model", "judge_api_key_env", "constitution",
                 "review"):
        if getattr(args, flag, None):
            raise CliInputError(f"--{flag.replace('_', '-')}: only for a pipeline (--method rlhf, rlaif or cai)")
    if args.stage:
        raise CliInputError("--stage: only for a pipeline (--method rlhf)")
    missing = [f"--{f}" for f in ("method", "model", "dataset") if not data.get(f)]
    if missing:
        raise CliInputError(f"{', '.join(missing)}: required (or give --spec FILE)")
    return RunSpec.parse(data)


def dry_run_warnings(spec) -> list[str]:
    """A dry run may plan for another machine, so inputs missing here do not stop it; say which,
    so that a typo is not found only when the run starts. A data file that is here and wrong is wrong
    on every machine: that stays an error (one line, exit 2)."""
    from runners.data.load import DataError
    from runners.launch import preflight

    warnings = []
    for check in (preflight.check_model, preflight.check_dataset, preflight.check_reward):
        try:
            check(spec)
        except (ValueError, OSError) as exc:  # SpecError, DataError, PreflightError; an unreadable file
            if isinstance(exc, DataError) and Path(spec.dataset.path).is_file():
                raise
            warnings.append(f"{exc} (a dry run prepares anyway: this must be right where the run is launched)")
    return warnings


# --- output helpers --------------------------------------------------------------------------------


def say(text: Any = "", **kw: Any) -> None:
    """print() for one line that may hold names, paths or metrics from users and files: control
    characters and escape sequences are shown escaped (planner.parsing.printable), never sent raw."""
    print(printable(text), **kw)


def emit_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def gib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f} GiB"


def progress_line(row: dict[str, Any]) -> str:
    if any(k.startswith("eval_") for k in row):
        keys = [k for k in EVAL_KEYS if k in row] or [k for k in row if k.startswith("eval_")][:4]
        return printable("  ".join([f"eval at step {row.get('step')}"] + [f"{k} {_num(row[k])}" for k in keys]))
    step = f"step {row.get('step')}/{row.get('max_steps')}" if row.get("max_steps") else f"step {row.get('step')}"
    if row.get("stage"):
        step = f"[{row.get('stage_index')}/{row.get('stages')} {row['stage']}] {step}"
    parts = [step, f"loss {_num(row.get('loss'))}"]
    parts += [f"{k} {_num(row[k])}" for k in PROGRESS_KEYS if k in row]
    if row.get("tokens_per_second"):
        parts.append(f"tok/s {row['tokens_per_second']:.0f}")
    if row.get("peak_memory_bytes"):
        parts.append(f"mem {gib(row['peak_memory_bytes'])}")
    return printable("  ".join(parts))


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe(run, rec=None) -> dict[str, Any]:
    """The JSON document for a run: registry record, decision, plan summary, command, result.
    A pipeline's also has its stages' plans (pipeline_plan) and, with a record, their records."""
    plan = run.plan()
    if plan.get("pipeline"):
        return describe_pipeline(run, plan, rec)
    decision = plan.get("decision") or {}
    planned = plan.get("plan") or {}
    return {
        "run_id": run.id,
        "run_dir": str(run.path),
        "status": rec.status if rec else None,
        "record": rec.to_dict() if rec else None,
        "decision": decision,
        "accelerate": _yaml(run.accelerate_path),
        "command": run.command()["argv"] if run.command_json.exists() else None,
        "command_sh": str(run.command_sh),
        "plan": {
            "predicted_peak_bytes": plan.get("predicted_peak_bytes"),
            "peak_phase": planned.get("peak_phase"),
            "components": planned.get("components"),
            "fits": decision.get("fits"),
            "notes": planned.get("notes"),
        },
        "devices": plan.get("devices"),
        "result": run.result(),
    }


def describe_pipeline(run, plan: dict[str, Any], rec=None) -> dict[str, Any]:
    from runners.pipelines.pipeline_dir import PipelineDir

    stages = []
    reg = None
    if rec is not None:
        from runners.registry.store import Registry

        reg = Registry(run.path.parent / "registry.db", reconcile=False)
    for stage in PipelineDir(run.path).stage_runs():
        item: dict[str, Any] = {"stage": stage.name, "method": stage.method, "run_id": stage.run_id}
        if reg is not None:
            try:
                srec = reg.get(stage.run_id)
                item.update(status=srec.status, last_metrics=srec.last_metrics,
                            measured_peak_bytes=srec.measured_peak_bytes)
            except ValueError:
                item["status"] = None
        stages.append(item)
    return {
        "run_id": run.id,
        "run_dir": str(run.path),
        "status": rec.status if rec else None,
        "record": rec.to_dict() if rec else None,
        "decision": plan.get("decision") or {},
        "command": run.command()["argv"] if run.command_json.exists() else None,
        "command_sh": str(run.command_sh),
        "plan": {"predicted_peak_bytes": plan.get("predicted_peak_bytes"),
                 "fits": (plan.get("decision") or {}).get("fits")},
        "pipeline_plan": plan,
        "stages": stages,
        "devices": plan.get("devices"),
        "result": run.result(),
    }


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def print_plan(doc: dict[str, Any]) -> None:
    d = doc["decision"]
    say(f"run {doc['run_id']}  ({doc['run_dir']})")
    sharded = f"  sharded by {d['engine']} (stage {d.get('zero')})" if d.get("engine") not in (None, "none") else ""
    say(f"setup: {d.get('kind')}  distributed_type {d.get('distributed_type')}  processes {d.get('num_processes')}"
          f"  precision {d.get('precision')}{sharded}")
    say(f"why: {d.get('reason')}")
    comps = doc["plan"].get("components") or {}
    if doc["plan"].get("predicted_peak_bytes") is not None:
        detail = ", ".join(f"{k} {gib(v)}" for k, v in comps.items() if v)
        say(f"predicted peak per device: {gib(doc['plan']['predicted_peak_bytes'])}"
              f" ({doc['plan'].get('peak_phase')}: {detail})")
    for note in d.get("notes") or []:
        say(f"note: {note}")
    for warning in doc.get("warnings") or []:
        say(f"warning: {warning}")
    say(f"command: bash {doc['command_sh']}")
    import shlex

    say("  " + shlex.join(doc["command"] or []))


# --- commands --------------------------------------------------------------------------------------


def is_pipeline_request(args: argparse.Namespace) -> bool:
    from runners.pipelines.definitions import PIPELINE_METHODS

    if args.method:
        return args.method in PIPELINE_METHODS
    if args.spec:
        from planner.input_files import load_yaml_file

        doc = load_yaml_file(args.spec, "--spec")  # a regular file, size and nesting bounded
        if isinstance(doc, dict) and doc.get("method") in PIPELINE_METHODS:
            args.method = doc["method"]
            return True
    return False


def cmd_run_pipeline(args: argparse.Namespace) -> int:
    """spec -> checks (once) -> pipeline and stage directories -> registry -> launch -> follow."""
    from runners.pipelines.cli import pipeline_spec_from_args
    from runners.pipelines.prepare import check_pipeline_inputs, prepare_pipeline
    from runners.pipelines.registry import register_pipeline
    from runners.registry.store import Registry

    spec = pipeline_spec_from_args(args, parse_devices, parse_hparams)
    check_pipeline_inputs(spec, hparams_only=args.dry_run)
    pipeline, stages = prepare_pipeline(spec)
    register_pipeline(Registry.for_runs_root(pipeline.path.parent, reconcile=False), pipeline, spec, stages)
    doc = {**describe(pipeline.run), "launched": False}
    if args.dry_run:
        emit_json(doc) if args.json else print_pipeline_plan(doc)
        return 0
    if not args.json:
        print_pipeline_plan(doc)
    return launch_and_follow(pipeline.id, pipeline.path, detach=args.detach, as_json=args.json, grace=args.stop_grace)


def print_pipeline_plan(doc: dict[str, Any]) -> None:
    plan = doc.get("pipeline_plan") or {}
    say(f"pipeline {doc['run_id']}  ({doc['run_dir']}): {plan.get('pipeline')}, "
          f"{len(plan.get('stages') or [])} stages")
    for i, stage in enumerate(plan.get("stages") or [], 1):
        fits = {True: "fits", False: "does NOT fit", None: "fit unknown"}[stage.get("fits")]
        say(f"  {i}. {stage['stage']:4} {stage['method']:4} run {stage['run_id']}: predicted "
              f"{gib(stage.get('predicted_peak_bytes'))} per device ({stage.get('peak_phase')}, {stage.get('setup')}; "
              f"{fits})")
        say(f"     {stage.get('summary')}; model {stage.get('model')}")
    for name, why in (plan.get("skipped") or {}).items():
        say(f"  skipped: {name} ({why})")
    for note in (plan.get("decision") or {}).get("notes") or []:
        say(f"note: {note}")
    say(f"command: bash {doc['command_sh']}")


def cmd_run(args: argparse.Namespace) -> int:
    from runners.launch import preflight
    from runners.launch.launch import prepare_and_register
    from runners.rundir.prepare import with_absolute_paths

    if is_pipeline_request(args):
        return cmd_run_pipeline(args)
    spec = with_absolute_paths(spec_from_args(args))  # what prepare() writes, and what the checks read
    if getattr(args, "export", None):
        args.dry_run = True  # an export writes files for another machine and launches nothing
    if not args.dry_run:
        preflight.check_run_inputs(spec)
    if args.dry_run:
        preflight.check_hparams(spec)  # wrong on any machine, unlike a model or data set that is not here
    unchecked = dry_run_warnings(spec) if args.dry_run else []
    run = prepare_and_register(spec)
    if getattr(args, "export", None):
        from runners.exports.export import export_command

        return export_command(run.path, spec, args)
    if args.dry_run:
        doc = {**describe(run), "launched": False, "warnings": unchecked}
        emit_json(doc) if args.json else print_plan(doc)
        return 0
    if not args.json:
        print_plan(describe(run))
    return launch_and_follow(run.id, run.path, detach=args.detach, as_json=args.json, grace=args.stop_grace)


def launch_and_follow(run_id: str, run_path: Path, *, detach: bool, as_json: bool, grace: float,
                      resume_run: bool = False, start_run: bool = False) -> int:
    from runners.launch import launch
    from runners.registry.store import Registry
    from runners.rundir.reader import RunDir

    out = sys.stderr if as_json else sys.stdout
    interrupted = False
    try:
        if resume_run:
            pid = launch.resume(run_id)
        elif start_run:
            pid = launch.start(run_id)
        else:
            pid = launch.launch(run_path)
        print(f"launched run {run_id} (pid {pid}); log: {Path(run_path) / 'stdout.log'}", file=out, flush=True)
        if detach:
            if as_json:
                emit_json({"run_id": run_id, "run_dir": str(run_path), "pid": pid, "status": "running"})
            return 0
        for row in launch.follow(run_id):
            print(progress_line(row), file=out, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        if _is_running(run_id):
            stop_after_interrupt(run_id, grace, out)
    rec = launch.wait(run_id)
    run = RunDir(Path(rec.run_dir))
    if as_json:
        emit_json(describe(run, Registry.for_runs_root(run.path.parent, reconcile=False).get(rec.id)))
    else:
        print_outcome(rec)
    if interrupted:
        return 130
    return 0 if rec.status in ("succeeded", "stopped") else 1


def stop_after_interrupt(run_id: str, grace: float, out) -> None:
    """Ctrl-C: a clean stop (checkpoint, exit); a second Ctrl-C kills the run's process group at once."""
    from runners.launch import launch

    print(f"\nstopping run {run_id} (checkpoint, then exit; up to {grace:.0f}s; Ctrl-C again to kill)...",
          file=out, flush=True)
    try:
        launch.stop(run_id, grace=grace)
    except KeyboardInterrupt:
        print(f"killing run {run_id}...", file=out, flush=True)
        if _is_running(run_id):
            launch.stop(run_id, grace=0, term_grace=3)


def _is_running(run_id: str) -> bool:
    return _records().resolve(run_id).status == "running"


def print_outcome(rec) -> None:
    m = rec.last_metrics or {}
    say(f"run {rec.id}: {rec.status} (exit code {rec.exit_code})")
    if m:
        say("final: " + progress_line(m))
    say(f"peak memory: predicted {gib(rec.predicted_peak_bytes)}, measured {gib(rec.measured_peak_bytes)}")
    if rec.status == "failed":
        line = failure_line(rec)
        if line:
            say(f"error: {line}", file=sys.stderr)
        say(f"full log: alignplan runs logs {rec.id}", file=sys.stderr)


def failure_line(rec) -> str | None:
    """The recipe's one-line error (result.json), else the first line of the registry's error text."""
    from runners.rundir.reader import RunDir

    try:
        error = (RunDir(Path(rec.run_dir)).result() or {}).get("error")
    except (OSError, ValueError):
        error = None
    text = error or rec.error or ""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0].strip() if lines else None


def _records():
    from runners.registry.store import Registry

    return Registry.for_runs_root()


def cmd_list(args: argparse.Namespace) -> int:
    from runners.rundir.reader import RunDir

    recs = _records().list(status=args.status)
    for r in recs:  # the run's own files are the truth; the registry's copy is stale when no supervisor updates it
        try:
            r.last_metrics = RunDir(Path(r.run_dir)).progress() or r.last_metrics
        except (OSError, ValueError):
            pass
    if args.json:
        emit_json([r.to_dict() for r in recs])
        return 0
    if not recs:
        say("no runs yet (alignplan run ... or alignplan demo)")
        return 0
    # a pipeline's stages are listed under it, indented; where it is shows as "stage k/n name step"
    shown = {r.id for r in recs}
    ordered = [r for r in recs if not r.pipeline_id or r.pipeline_id not in shown]
    for stage in [r for r in recs if r.pipeline_id and r.pipeline_id in shown]:
        parent = next(i for i, r in enumerate(ordered) if r.id == stage.pipeline_id)
        while parent + 1 < len(ordered) and ordered[parent + 1].pipeline_id == stage.pipeline_id:
            parent += 1
        ordered.insert(parent + 1, stage)
    width = max(34, *(len(r.id) + (2 if r.pipeline_id else 0) for r in ordered))
    header = (f"{'ID':{width}} {'STATUS':10} {'METHOD':6} {'STEP':>13} {'LOSS':>8} {'PRED PEAK':>11} "
              f"{'MEAS PEAK':>11}  MODEL")
    say(header)
    for r in ordered:
        m = r.last_metrics or {}
        step = f"{m.get('step', '-')}/{m.get('max_steps', '-')}" if m else "-"
        if not m and r.status == "running":  # before the first step: what the recipe is doing (phase.json)
            phase = RunDir(Path(r.run_dir)).phase() or {}
            step = {"loading the model": "loading model"}.get(phase.get("phase"), phase.get("phase") or "starting")
        if m.get("stage") and not r.pipeline_id:
            step = f"{m.get('stage_index')}/{m.get('stages')} {m['stage']} {step}"
        loss = m.get("loss", m.get("policy_loss"))
        model = r.model if len(r.model) <= 40 else "..." + r.model[-37:]
        rid = f"  {r.id}" if r.pipeline_id else r.id
        say(f"{rid:{width}} {r.status:10} {r.method:6} {step:>13} {_num(loss):>8} "
              f"{gib(r.predicted_peak_bytes):>11} {gib(r.measured_peak_bytes):>11}  {model}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from runners.rundir.reader import RunDir

    rec = _records().resolve(args.id)
    run = RunDir(Path(rec.run_dir))
    rec.last_metrics = run.progress() or rec.last_metrics  # the run's files, not a copy that may be stale
    doc = describe(run, rec)
    if args.json:
        emit_json(doc)
        return 0
    if "pipeline_plan" in doc:
        print_pipeline_plan(doc)
        for i, stage in enumerate(doc["stages"], 1):
            m = stage.get("last_metrics") or {}
            where = f"step {m.get('step')}/{m.get('max_steps')}" if m else "not started"
            say(f"  stage {i}/{len(doc['stages'])} {stage['stage']}: {stage.get('status')}, {where}")
        print_outcome(rec)
        return 0
    print_plan(doc)
    print_outcome(rec)
    held = run.parameters_held()
    if held:
        how = "sharded" if held.get("sharded") else "a full copy each"
        say(f"parameters held per process: {held['this_process']:,} of {held['total']:,} ({how})")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from runners.registry.store import FINAL_STATUSES
    from runners.rundir.reader import RunDir

    if args.lines < 1:
        raise CliInputError(f"-n/--lines {args.lines}: expected a number of lines >= 1")
    reg = _records()
    rec = reg.resolve(args.id)
    run = RunDir(Path(rec.run_dir))
    if not run.stdout_log.exists() and rec.status != "running":
        hint = f"; start it with alignplan runs start {rec.id}" if rec.status == "prepared" else ""
        raise CliInputError(f"run {rec.id}: no log yet (status {rec.status}){hint}")
    print(run.log_tail(lines=args.lines, max_chars=10**7))
    if not args.follow:
        return 0
    pos = run.stdout_log.stat().st_size if run.stdout_log.exists() else 0
    while True:
        if not run.stdout_log.exists():  # the launcher creates it a moment after marking the run running
            if reg.get(rec.id).status in FINAL_STATUSES:
                return 0
            time.sleep(0.5)
            continue
        with open(run.stdout_log, "rb") as fh:
            fh.seek(pos)
            chunk = fh.read()
            pos += len(chunk)
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        if reg.get(rec.id).status in FINAL_STATUSES and not chunk:
            return 0
        time.sleep(0.5)


def cmd_stop(args: argparse.Namespace) -> int:
    from runners.launch import launch

    rec = launch.stop(args.id, grace=args.grace)
    if args.json:
        emit_json(rec.to_dict())
    else:
        say(f"run {rec.id}: {rec.status}" + (f" at step {rec.last_metrics.get('step')}" if rec.last_metrics else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    rec = _records().resolve(args.id)
    return launch_and_follow(rec.id, Path(rec.run_dir), detach=args.detach, as_json=args.json,
                             grace=args.stop_grace, resume_run=True)


def cmd_start(args: argparse.Namespace) -> int:
    from runners.launch import launch, preflight
    from runners.rundir.reader import RunDir

    rec = _records().resolve(args.id)
    if rec.status not in launch.STARTABLE_STATUSES:
        launch.start(rec.id)  # raises the LaunchError that says why
    preflight.check_run_inputs(RunDir(Path(rec.run_dir)).spec())  # a dry run may have been made for another machine
    return launch_and_follow(rec.id, Path(rec.run_dir), detach=args.detach, as_json=args.json,
                             grace=args.stop_grace, start_run=True)


def cmd_delete(args: argparse.Namespace) -> int:
    from runners.launch import launch

    rec, exact = launch.delete_target(args.id)
    if not exact:
        what = f"run {rec.id} ({rec.status}, {rec.method}, {rec.model}" + (f", name {rec.name}" if rec.name else "") + ")"
        if not args.yes:
            if not sys.stdin.isatty() or args.json:
                raise CliInputError(f"run {args.id!r}: deleting needs the run's full id or name; {args.id!r} is a "
                                    f"prefix of {rec.id} (pass the id, or --yes to delete it)")
            say(f"{args.id!r} matches {what}", file=sys.stderr)
            answer = input("delete it, checkpoints included? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                say(f"not deleted: {rec.id}")
                return 1
    run_id = launch.delete(rec.id)
    emit_json({"deleted": run_id}) if args.json else say(f"deleted run {run_id}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runners.exports.merged import check_export, merge_run

    rec = _records().resolve(args.id)
    check_export(rec.run_dir, args.merged, args.push_to_hub)  # refusals first, with nothing printed before them
    if not args.json:
        say(f"exporting run {rec.id} to {args.merged} ...")
    doc = merge_run(rec.run_dir, args.merged, push_to_hub=args.push_to_hub)
    if args.json:
        emit_json(doc)
        return 0
    say(f"run {rec.id} ({doc['method']}, {doc['kind']}, {doc['dtype']}): standalone model in {doc['out_dir']}")
    if doc.get("pushed_to"):
        say(f"pushed to {doc['pushed_to']}")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    from runners import tryit
    from runners.exports.merged import final_model
    from runners.rundir.reader import RunDir

    if args.prompts < 1 or args.max_new_tokens < 1:
        raise CliInputError("--prompts and --max-new-tokens: a whole number of 1 or more")
    rec = _records().resolve(args.id)
    final_model(RunDir(Path(rec.run_dir)))  # a run without a final model is refused before any load
    tried = tryit.load(rec.run_dir, with_reference=args.compare)
    if args.prompt:
        prompts, source = [tryit.as_user_prompt(p, tried.tokenizer) for p in args.prompt], "--prompt"
    else:
        prompts, source = tryit.held_out_prompts(rec.run_dir, args.prompts)
    rows = tryit.answer(tried, prompts, compare=args.compare, max_new_tokens=args.max_new_tokens,
                        greedy=not args.sample)
    if args.json:
        emit_json({"run_id": rec.id, "prompts_from": source, "reference": tried.reference_name if args.compare else None,
                   "answers": rows})
        return 0
    say(f"run {rec.id}: {len(rows)} prompts from {source}")
    tryit.print_rows(rows, tried.reference_name, sys.stdout)
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from runners.demo.tiny import build_tiny_model

    path = build_tiny_model(args.dir)
    emit_json({"path": str(path)}) if args.json else print(path)
    return 0


def demo_rlhf(args: argparse.Namespace, out) -> int:
    """SFT -> reward model -> PPO on the tiny model and bundled data, on CPU, followed to the end; the
    PPO score of the first and last five iterations shows whether the policy learned the reward."""
    from runners.demo.tiny import DEMO_RLHF_HPARAMS, DEMO_RLHF_STEPS, build_tiny_model, demo_data_paths
    from runners.pipelines.spec import PipelineSpec

    t0 = time.time()
    data = demo_data_paths()
    model = build_tiny_model()
    print(f"tiny model: {model}", file=out, flush=True)
    steps = dict(DEMO_RLHF_STEPS, ppo=args.steps or DEMO_RLHF_STEPS["ppo"])
    spec = PipelineSpec.parse({
        "method": "rlhf",
        "model": str(model),
        "data": {"sft": {"path": str(data["sft"])}, "preferences": {"path": str(data["preference"])},
                 "prompts": {"path": str(data["prompts"])}},
        "common": {"devices": "cpu"},
        "stages": {name: {"max_steps": steps[name], "save_steps": steps[name], "hparams": dict(hp)}
                   for name, hp in DEMO_RLHF_HPARAMS.items()},
    })
    try:
        pipeline, rec = run_demo_pipeline(spec, out)
    except KeyboardInterrupt:
        return 130
    scores = [r["score"] for r in pipeline.run.metrics() if r.get("stage") == "ppo" and "score" in r]
    first = sum(scores[:5]) / len(scores[:5]) if scores else None
    last = sum(scores[-5:]) / len(scores[-5:]) if scores else None
    wall = time.time() - t0
    if args.json:
        emit_json({"run_id": rec.id, "status": rec.status, "score_first5": first, "score_last5": last,
                   "wall_seconds": round(wall, 1), "record": rec.to_dict()})
    else:
        print(f"run {rec.id}: {rec.status} in {wall:.0f}s")
        if scores:
            print(f"PPO score (reward model): {_num(first)} over the first 5 iterations -> {_num(last)} over the last 5")
        elif failure_line(rec):
            print(f"error: {failure_line(rec)}", file=sys.stderr)
    return 0 if rec.status == "succeeded" else 1


def run_demo_pipeline(spec, out) -> tuple[Any, Any]:
    """Prepare, register, launch and follow a demo pipeline; (its PipelineDir, its final record)."""
    from runners.launch import launch
    from runners.pipelines.prepare import prepare_pipeline
    from runners.pipelines.registry import register_pipeline
    from runners.registry.store import Registry

    pipeline, stages = prepare_pipeline(spec)
    register_pipeline(Registry.for_runs_root(pipeline.path.parent, reconcile=False), pipeline, spec, stages)
    names = " -> ".join(f"{s.stage.name}" for s in stages)
    print(f"run {pipeline.id}: {spec.method} ({names}) on CPU", file=out, flush=True)
    try:
        launch.launch(pipeline.path)
        for row in launch.follow(pipeline.id):
            print(progress_line(row), file=out, flush=True)
    except KeyboardInterrupt:
        if _is_running(pipeline.id):
            stop_after_interrupt(pipeline.id, 30.0, out)
        raise
    return pipeline, launch.wait(pipeline.id)


def demo_ai_feedback(args: argparse.Namespace, out) -> int:
    """RLAIF or Constitutional AI on the tiny model with the bundled prompts and a rule judge; reports
    the judge's position consistency, how often it preferred the longer answer, CAI's revisions, and
    DPO's reward accuracy on the judged pairs."""
    from runners.demo.tiny import DEMO_CAI_STAGES, DEMO_RLAIF_STAGES, build_tiny_model, demo_data_paths
    from runners.pipelines.spec import PipelineSpec

    t0 = time.time()
    model = build_tiny_model()
    print(f"tiny model: {model}", file=out, flush=True)
    stages = DEMO_RLAIF_STAGES if args.method == "rlaif" else DEMO_CAI_STAGES
    spec = PipelineSpec.parse({
        "method": args.method, "model": str(model), "data": {"prompts": {"path": str(demo_data_paths()["prompts"])}},
        "common": {"devices": "cpu"}, "stages": stages,
    })
    try:
        pipeline, rec = run_demo_pipeline(spec, out)
    except KeyboardInterrupt:
        return 130
    root = pipeline.path.parent
    label_report = _stage_report(root / f"{pipeline.id}.label")
    critique_report = _stage_report(root / f"{pipeline.id}.critique")
    dpo = [r for r in pipeline.run.metrics() if r.get("stage") == "dpo" and "rewards/accuracies" in r]
    doc = {"run_id": rec.id, "status": rec.status, "wall_seconds": round(time.time() - t0, 1),
           "labelling": label_report, "critique": critique_report,
           "dpo_reward_accuracy_last": dpo[-1]["rewards/accuracies"] if dpo else None}
    if args.json:
        emit_json({**doc, "record": rec.to_dict()})
    else:
        print(f"run {rec.id}: {rec.status} in {doc['wall_seconds']:.0f}s")
        if critique_report:
            print("critique/revision: " + _fields(critique_report, DEMO_CRITIQUE_FIELDS))
        if label_report:
            print("labelling: " + _fields(label_report, DEMO_LABEL_FIELDS))
        if doc["dpo_reward_accuracy_last"] is not None:
            print(f"DPO on the judged pairs: reward accuracy {_num(doc['dpo_reward_accuracy_last'])} (last batch)")
        if rec.status != "succeeded" and failure_line(rec):
            print(f"error: {failure_line(rec)}", file=sys.stderr)
    return 0 if rec.status == "succeeded" else 1


# The report figures the RLAIF/CAI demos print (report.json has more).
DEMO_LABEL_FIELDS = ("pairs_judged", "position_consistency", "pairs_written", "ties", "dropped",
                     "longer_preferred_share")
DEMO_CRITIQUE_FIELDS = ("prompts", "revisions_differing", "share_differing", "mean_critique_words",
                        "mean_revision_words")


def _stage_report(run_dir: Path) -> dict[str, Any] | None:
    """A data stage's report: the file its result.json names, else report.json in its directory."""
    named = (_read_json(run_dir / "result.json") or {}).get("report")
    return _read_json(Path(named)) if isinstance(named, str) else _read_json(run_dir / "report.json")


def _fields(report: dict[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {_num(report[k])}" for k in keys if k in report)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# The held-out figures the DPO demo shows before and after training (at step 0 the policy is the
# reference: every reward is 0, so the accuracy counts no pair and the loss is ln 2).
_HELD_OUT = {"eval_loss": "loss", "eval_rewards/accuracies": "reward accuracy", "eval_rewards/margins": "margin"}


def _held_out(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in (*_HELD_OUT, "step")}


def cmd_demo(args: argparse.Namespace) -> int:
    """Tiny model + bundled preference pairs + DPO on CPU, followed to the end."""
    from runners.demo.tiny import DEMO_HPARAMS, DEMO_MAX_STEPS, build_tiny_model, demo_dataset_path
    from runners.launch import launch
    from runners.rundir.spec import RunSpec

    if args.steps is not None and args.steps < 1:
        raise CliInputError(f"--steps {args.steps}: expected a number of optimizer steps >= 1")
    out = sys.stderr if args.json else sys.stdout
    if args.method == "ppo":
        return demo_rlhf(args, out)
    if args.method in ("rlaif", "cai"):
        return demo_ai_feedback(args, out)
    t0 = time.time()
    steps = args.steps or DEMO_MAX_STEPS
    model = build_tiny_model()
    print(f"tiny model: {model}", file=out, flush=True)
    spec = RunSpec.parse({
        "method": "dpo",
        "model": str(model),
        "dataset": {"path": str(demo_dataset_path()), "eval_fraction": 0.1},
        # held-out evaluation before training (step 0) and at the end: the demo shows a before and after
        "hparams": {**DEMO_HPARAMS, "eval_on_start": True},
        "devices": "cpu",
        "max_steps": steps,
        "save_steps": steps,  # one checkpoint and the second held-out evaluation, at the end
        "name": None,
    })
    run = launch.prepare_and_register(spec)
    print(f"run {run.id}: DPO on {demo_dataset_path().name}, {steps} steps on CPU", file=out, flush=True)
    evals: list[dict[str, Any]] = []
    try:
        launch.launch(run.path)
        for row in launch.follow(run.id):
            print(progress_line(row), file=out, flush=True)
            if "eval_rewards/accuracies" in row:
                evals.append(row)
    except KeyboardInterrupt:
        if _is_running(run.id):
            stop_after_interrupt(run.id, 30.0, out)
        return 130
    rec = launch.wait(run.id)
    before, after = (_held_out(evals[0]), _held_out(evals[-1])) if len(evals) > 1 else (None, None)
    m = rec.last_metrics or {}
    train_acc = m.get("rewards/accuracies")
    eval_acc = m.get("eval_rewards/accuracies")
    accuracy = eval_acc if eval_acc is not None else train_acc
    wall = time.time() - t0
    if args.json:
        emit_json({"run_id": rec.id, "status": rec.status, "reward_accuracy": accuracy,
                   "train_reward_accuracy": train_acc, "eval_reward_accuracy": eval_acc,
                   "held_out_before": before, "held_out_after": after,
                   "wall_seconds": round(wall, 1), "record": rec.to_dict()})
    else:
        print(f"run {rec.id}: {rec.status} in {wall:.0f}s")
        if rec.status == "succeeded":
            where = "held-out pairs" if eval_acc is not None else "last training batch"
            if before and after:
                print("held-out pairs, before -> after training: " + "; ".join(
                    f"{name} {_num(before[key])} -> {_num(after[key])}" for key, name in _HELD_OUT.items()))
            print(f"final reward accuracy: {_num(accuracy)} ({where}); last training batch {_num(train_acc)}")
        elif failure_line(rec):
            print(f"error: {failure_line(rec)}", file=sys.stderr)
    return 0 if rec.status == "succeeded" else 1
