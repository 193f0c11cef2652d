"""OpenRLHF 0.11.2: PPO/GRPO/RLOO with Ray + vLLM (``openrlhf.cli.train_ppo_ray``), DPO/RM with
DeepSpeed (``openrlhf.cli.train_dpo`` / ``train_rm``). OpenRLHF >= 0.10.2 takes dotted flags only
(``--actor.model_name_or_path``, ``--vllm.num_engines``, ``--train.colocate_all``); the names here
were read from 0.11.2's parsers, and the checks parse the argument list with the parser itself.

Placement checks OpenRLHF makes only inside train() (after Ray is up), repeated here before export
(``placement_errors``): colocated actor GPUs = vLLM engines x TP; colocated pairs (actor/ref,
critic/reward) of the same shape; rollout samples >= actor processes.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runners.exports.common import as_messages, as_text, kl_coef, read_rows, rl_batch_sizes
from runners.exports.reward_adapter import ADAPTER_FILE, label_column, write_reward_adapter
from runners.rundir.hparams import hparam_float
from runners.rundir.spec import RunSpec

OPENRLHF_VERSION = "0.11.2"
MODULES = {"ppo": "openrlhf.cli.train_ppo_ray", "grpo": "openrlhf.cli.train_ppo_ray",
           "rloo": "openrlhf.cli.train_ppo_ray", "dpo": "openrlhf.cli.train_dpo", "rm": "openrlhf.cli.train_rm"}
ESTIMATOR = {"ppo": "gae", "grpo": "group_norm", "rloo": "rloo"}


def rl_args(placement, spec: RunSpec, data_path: str) -> list[str]:
    hp = spec.hparams
    n, micro = placement.request["rollout_n"], placement.request["micro_batch"]
    world = placement.world_size
    rollout = placement.role("rollout")
    sizes = rl_batch_sizes(spec, world, n, micro)
    ppo = spec.method == "ppo"
    beta = kl_coef(spec)
    shape = ["--{r}.num_nodes", str(placement.nodes), "--{r}.num_gpus_per_node", str(placement.gpus_per_node)]
    args = ["--actor.model_name_or_path", spec.model]
    for role in ("actor", "ref"):
        args += [a.format(r=role) for a in shape]
    if ppo:
        rm = spec.reward.model if spec.reward and spec.reward.model else None
        if rm:
            args += ["--reward.model_name_or_path", rm, "--critic.model_name_or_path", rm]
        for role in ("critic", "reward"):
            args += [a.format(r=role) for a in shape]
    elif spec.reward and spec.reward.model:
        args += ["--reward.model_name_or_path", spec.reward.model]
        args += [a.format(r="reward") for a in shape]
    if spec.reward and spec.reward.function:
        # the reward function runs in the rollout workers: reward_func(queries, prompts, labels)
        args += ["--reward.remote_url", ADAPTER_FILE]
        if label_column(spec):
            args += ["--data.label_key", "label"]
    args += [
        "--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep",
        "--vllm.num_engines", str(rollout.engines), "--vllm.tensor_parallel_size", str(rollout.tensor_parallel),
        "--vllm.gpu_memory_utilization", str(rollout.detail["gpu_memory_utilization"]),
        "--ds.zero_stage", "3", "--ds.param_dtype", "bf16", "--actor.gradient_checkpointing_enable",
        "--algo.advantage.estimator", ESTIMATOR[spec.method],
        "--algo.kl.init_coef", str(beta),
        "--rollout.n_samples_per_prompt", str(n),
        "--rollout.batch_size", str(sizes["train_batch_size"]),
        "--rollout.micro_batch_size", str(micro),
        "--train.batch_size", str(sizes["ppo_mini_batch_size"] * n),
        "--train.micro_batch_size", str(micro),
        "--data.max_len", str(placement.request["prompt_len"] + placement.request["response_len"]),
        "--rollout.max_new_tokens", str(placement.request["response_len"]),
        "--data.prompt_dataset", data_path, "--data.input_key", "prompt", "--data.apply_chat_template",
        "--actor.adam.lr", str(float(hp.get("learning_rate", 1e-6))),
        "--ckpt.output_dir", "./ckpt",
    ]
    if not ppo and beta > 0:
        args += ["--algo.kl.use_loss", "--algo.kl.estimator", "k3"]
    if ppo:
        args += ["--critic.adam.lr", str(float(hp.get("vf_learning_rate", 9e-6)))]
    return args


def offline_args(placement, spec: RunSpec, data_path: str) -> list[str]:
    """train_dpo / train_rm under DeepSpeed (deepspeed launcher with a hostfile)."""
    hp = spec.hparams
    world = placement.world_size
    micro = int(hp.get("per_device_train_batch_size", 1))
    ga = int(hp.get("gradient_accumulation_steps", 1))
    model_flag = "--model.model_name_or_path"
    args = [model_flag, spec.model, "--ds.zero_stage", str(max(placement.zero, 2)), "--ds.param_dtype", "bf16",
            "--train.micro_batch_size", str(micro), "--train.batch_size", str(micro * ga * world),
            "--data.max_len", str(int(hp.get("max_length", 1024))),
            "--data.dataset", data_path, "--data.prompt_key", "prompt", "--data.chosen_key", "chosen",
            "--data.rejected_key", "rejected", "--data.apply_chat_template",
            "--model.gradient_checkpointing_enable", "--adam.lr", str(float(hp.get("learning_rate", 1e-6))),
            "--train.max_epochs", str(max(1, int(spec.num_train_epochs))), "--ckpt.output_dir", "./ckpt"]
    if placement.offload:
        args.append("--ds.adam_offload")
    if spec.method == "dpo":
        beta = hparam_float(hp, "beta")
        args += ["--model.beta", str(0.1 if beta is None else beta)]
    return args


def placement_errors(ns) -> list[str]:
    """OpenRLHF's run-time placement checks (train_ppo_ray.train and its __main__), on a parsed,
    hierarchized namespace: what its train() would reject after Ray starts."""
    errs = []
    a = ns
    if a.train.colocate_actor_ref or a.train.colocate_all:
        if a.algo.kl.init_coef > 0 and (a.actor.num_nodes, a.actor.num_gpus_per_node) != (a.ref.num_nodes,
                                                                                         a.ref.num_gpus_per_node):
            errs.append("colocated actor and reference must have the same num_nodes and num_gpus_per_node")
    if a.vllm.num_engines and a.train.colocate_all and not a.train.async_enable:
        actor_gpus = a.actor.num_nodes * a.actor.num_gpus_per_node
        if actor_gpus != a.vllm.num_engines * a.vllm.tensor_parallel_size:
            errs.append(f"colocate_all: actor GPUs ({actor_gpus}) must equal vllm.num_engines x "
                        f"vllm.tensor_parallel_size ({a.vllm.num_engines * a.vllm.tensor_parallel_size})")
    if a.critic.model_name_or_path and a.train.colocate_critic_reward:
        if (a.critic.num_nodes, a.critic.num_gpus_per_node) != (a.reward.num_nodes, a.reward.num_gpus_per_node):
            errs.append("colocated critic and reward must have the same num_nodes and num_gpus_per_node")
    if a.train.colocate_all and a.critic.model_name_or_path:
        shapes = {(getattr(a, r).num_nodes, getattr(a, r).num_gpus_per_node) for r in ("actor", "critic")}
        if len(shapes) > 1:
            errs.append("colocate_all: critic and actor must have the same shape (they share one placement group)")
    procs = a.actor.num_nodes * a.actor.num_gpus_per_node // a.ds.ring_attn_size // a.ds.tensor_parallel_size
    if a.rollout.n_samples_per_prompt * a.rollout.batch_size // a.rollout.micro_batch_size < procs:
        errs.append("the number of sample batches must be >= the effective number of actor processes")
    return errs


# --- OpenRLHF's own parser ----------------------------------------------------------------------------


def _main_block(module: str) -> ast.If:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"{module} is not installed (pip install --no-deps openrlhf=={OPENRLHF_VERSION})")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            return node
    raise RuntimeError(f"{module} has no `if __name__ == '__main__':` block: its CLI changed; this export "
                       f"targets openrlhf {OPENRLHF_VERSION}")


def parse_with_openrlhf(module: str, argv: list[str]):
    """Run the CLI's own ``__main__`` block (parser + post-parse checks) with ``train`` replaced by a
    function that keeps the namespace; nothing trains, Ray is never started. Fails loudly when the
    block no longer builds a parser or no longer calls train(args)."""
    block = _main_block(module)
    source = ast.unparse(ast.Module(body=block.body, type_ignores=[]))
    if "ArgumentParser(" not in source or "train(args)" not in source:
        raise RuntimeError(f"{module}'s __main__ no longer builds an ArgumentParser and calls train(args)")
    got: list[Any] = []
    import argparse
    import os
    from datetime import datetime

    namespace = {"argparse": argparse, "os": os, "datetime": datetime, "train": got.append,
                 "__name__": "__alignplan_check__"}
    old = sys.argv
    sys.argv = [module, *argv]
    try:
        exec(compile(source, f"<{module} __main__>", "exec"), namespace)  # noqa: S102 (their own parser)
    except SystemExit as exc:  # argparse rejected an argument
        raise ValueError(f"{module} rejected the arguments (exit {exc.code})") from exc
    finally:
        sys.argv = old
    if len(got) != 1:
        raise RuntimeError(f"{module}'s __main__ did not reach train(args)")
    return got[0]


def check_parse(module: str, argv: list[str]) -> str:
    ns = parse_with_openrlhf(module, argv)
    if module.endswith("train_ppo_ray"):
        errs = placement_errors(ns)
        if errs:
            raise ValueError("; ".join(errs))
    return f"{module} (openrlhf {OPENRLHF_VERSION}) parsed {len(argv)} arguments and passed its post-parse checks"


def as_namespace(d: dict) -> SimpleNamespace:
    return SimpleNamespace(**{k: as_namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


# --- files -------------------------------------------------------------------------------------------


def write_jsonl(spec: RunSpec, path: Path, rl: bool) -> int:
    """Prompts ({prompt: messages}, with `label` when the data has an answer) or preference pairs
    ({prompt: messages, chosen: text, rejected: text}): OpenRLHF's JSONL with --data.apply_chat_template."""
    count = 0
    label = label_column(spec) or "answer"
    with path.open("w", encoding="utf-8") as out:
        for r in read_rows(spec):
            if "prompt" not in r:
                continue
            row: dict[str, Any] = {"prompt": as_messages(r["prompt"])}
            if rl:
                if label in r:
                    row["label"] = str(r[label])
            else:
                if "chosen" not in r or "rejected" not in r:
                    continue
                row["chosen"] = [{"role": "assistant", "content": as_text(r["chosen"])}]
                row["rejected"] = [{"role": "assistant", "content": as_text(r["rejected"])}]
            out.write(json.dumps(row) + "\n")
            count += 1
    if not count:
        raise ValueError("no rows with the columns OpenRLHF needs (prompt; chosen/rejected for dpo/rm)")
    return count


def launch_script(placement, module: str, argv: list[str], folder: Path, rl: bool) -> str:
    q = shlex.quote
    args = " \\\n  ".join(q(a) for a in argv)
    if rl:
        body = f"""case "${{1:-}}" in
  head)
    ray start --head --port "$port" --num-gpus {placement.gpus_per_node} --dashboard-host 0.0.0.0 ;;
  worker)
    ray start --address "${{HEAD_IP:?set HEAD_IP to the head node address}}:$port" --num-gpus {placement.gpus_per_node} ;;
  submit)
    ray job submit --address "${{RAY_DASHBOARD:-http://127.0.0.1:8265}}" --runtime-env-json '{{"working_dir": "."}}' -- \\
      python3 -m {module} \\
  {args} ;;
  *)
    echo "usage: $0 head|worker|submit" >&2; exit 2 ;;
esac"""
    else:
        body = f"""# hostfile: one line per node, "<host> slots={placement.gpus_per_node}" ({placement.nodes} nodes)
deepspeed --hostfile "${{HOSTFILE:-$export_dir/hostfile}}" --module {module} \\
  {args}"""
    return f"""#!/usr/bin/env bash
# OpenRLHF {OPENRLHF_VERSION} on {placement.nodes} x {placement.gpus_per_node} {placement.gpu} (written by alignplan).
{"# 1. head node: bash launch.sh head   2. other nodes: HEAD_IP=<head> bash launch.sh worker   3. head: bash launch.sh submit" if rl else ""}
set -euo pipefail
export_dir={q(str(folder))}
{'port="${RAY_PORT:-6379}"' if rl else ''}
cd "$export_dir"
{body}
"""


def render(placement, spec: RunSpec, folder: Path) -> tuple[list[str], str, list[str]]:
    rl = spec.method in ("ppo", "grpo", "rloo")
    data = folder / ("prompts.jsonl" if rl else "pairs.jsonl")
    write_jsonl(spec, data, rl)
    module = MODULES[spec.method]
    argv = rl_args(placement, spec, data.name) if rl else offline_args(placement, spec, data.name)
    (folder / "args.json").write_text(json.dumps({"module": module, "argv": argv}, indent=2) + "\n", encoding="utf-8")
    (folder / "launch.sh").write_text(launch_script(placement, module, argv, folder, rl), encoding="utf-8")
    (folder / "launch.sh").chmod(0o755)
    files = [data.name, "args.json", "launch.sh"]
    if rl and spec.reward and spec.reward.function:
        files += write_reward_adapter(spec, folder, "openrlhf")
    if not rl:
        (folder / "hostfile").write_text("".join(f"node{i} slots={placement.gpus_per_node}\n"
                                                 for i in range(placement.nodes)), encoding="utf-8")
        files.append("hostfile")
    return files, module, argv
