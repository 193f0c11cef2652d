"""verl 0.9.1 (PPO with a critic, GRPO, RLOO at scale): the planner's RL placement as a Hydra config
that inherits verl's ``ppo_trainer`` through its ``pkg://verl.trainer.config`` search path and
overrides what the placement decides; the data as verl's parquet layout; a Ray launch script.

verl 0.9 reads reward settings under ``reward.*`` (``reward.custom_reward_function``,
``reward.reward_model``); the old top-level ``reward_model.*`` / ``custom_reward_function.*``
keys are accepted and silently ignored, so this export never writes them (and a test says so).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from runners.exports.common import as_messages, kl_coef, read_rows, rl_batch_sizes
from runners.exports.reward_adapter import ADAPTER_FILE, label_column, write_reward_adapter
from runners.rundir.spec import RunSpec

VERL_VERSION = "0.9.1"
CONFIG_NAME = "alignplan_ppo"

# algorithm.adv_estimator per method (verl's AdvantageEstimator values)
ADV_ESTIMATOR = {"ppo": "gae", "grpo": "grpo", "rloo": "rloo"}


def verl_config(placement, spec: RunSpec, *, train_parquet: str, reward_file: str | None) -> dict[str, Any]:
    hp = spec.hparams
    rollout = placement.role("rollout")
    n = placement.request["rollout_n"]
    micro = placement.request["micro_batch"]
    sizes = rl_batch_sizes(spec, placement.world_size, n, micro)
    offload = placement.offload == "between-phases"
    ppo = spec.method == "ppo"
    beta = kl_coef(spec)
    model_path = spec.model
    fsdp = {"param_offload": offload, "optimizer_offload": offload}
    cfg: dict[str, Any] = {
        "hydra": {"searchpath": ["pkg://verl.trainer.config"]},
        "defaults": ["ppo_trainer", "_self_"],
        "data": {
            "train_files": [train_parquet], "val_files": [train_parquet],
            "prompt_key": "prompt", "reward_fn_key": "data_source",
            "max_prompt_length": placement.request["prompt_len"],
            "max_response_length": placement.request["response_len"],
            "train_batch_size": sizes["train_batch_size"],
            "filter_overlong_prompts": True, "truncation": "error",
        },
        "actor_rollout_ref": {
            "model": {"path": model_path, "enable_gradient_checkpointing": True, "use_remove_padding": True},
            "actor": {
                "strategy": "fsdp",
                "ppo_mini_batch_size": sizes["ppo_mini_batch_size"],
                "ppo_micro_batch_size_per_gpu": micro,
                "use_kl_loss": not ppo and beta > 0,  # GRPO/RLOO: KL as a loss (verl's recipe); PPO: KL in the reward
                "kl_loss_coef": beta, "kl_loss_type": "low_var_kl",
                "optim": {"lr": float(hp.get("learning_rate", 1e-6))},
                "fsdp_config": dict(fsdp),
            },
            "rollout": {
                "name": "vllm", "mode": "async",
                "tensor_model_parallel_size": rollout.tensor_parallel,
                "gpu_memory_utilization": rollout.detail["gpu_memory_utilization"],
                "n": n,
                "log_prob_micro_batch_size_per_gpu": micro,
                "free_cache_engine": True,
            },
            "ref": {"log_prob_micro_batch_size_per_gpu": micro, "fsdp_config": {"param_offload": offload}},
        },
        "algorithm": {
            "adv_estimator": ADV_ESTIMATOR[spec.method],
            "use_kl_in_reward": ppo,
            "kl_ctrl": {"type": "fixed", "kl_coef": beta},
        },
        "trainer": {
            "nnodes": placement.nodes, "n_gpus_per_node": placement.gpus_per_node,
            "total_epochs": max(1, int(spec.num_train_epochs)),
            "project_name": "alignplan", "experiment_name": f"{spec.method}-{Path(spec.model).name}",
            "logger": ["console"], "val_before_train": False,
        },
        "reward": {},
    }
    if spec.max_steps and spec.max_steps > 0:
        cfg["trainer"]["total_training_steps"] = spec.max_steps
    if ppo:
        critic = {"ppo_mini_batch_size": sizes["ppo_mini_batch_size"], "ppo_micro_batch_size_per_gpu": micro,
                  "model": {"path": spec.reward.model if spec.reward and spec.reward.model else model_path,
                            "enable_gradient_checkpointing": True},
                  "fsdp": dict(fsdp),  # verl 0.9's critic: critic.fsdp (the engine config), not model.fsdp_config
                  "optim": {"lr": float(hp.get("vf_learning_rate", 1e-5))}}
        cfg["critic"] = critic
    if spec.reward and spec.reward.model:
        reward_role = placement.role("reward")
        cfg["reward"]["reward_model"] = {
            "enable": True, "model_path": spec.reward.model,
            # the placement's reward engine: its own TP and memory share (planner.placement)
            "rollout": {"name": "vllm", "tensor_model_parallel_size": reward_role.tensor_parallel,
                        "gpu_memory_utilization": reward_role.detail["gpu_memory_utilization"],
                        "prompt_length": placement.request["prompt_len"],
                        "response_length": placement.request["response_len"]},
        }
    if reward_file:
        cfg["reward"]["custom_reward_function"] = {"path": reward_file, "name": "compute_score"}
    return cfg


def write_parquet(spec: RunSpec, path: Path) -> int:
    """verl's RLHF layout: prompt (chat messages), data_source, ability, reward_model
    {style, ground_truth}, extra_info {split, index, prompt_text}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    column = label_column(spec) or "answer"
    for i, r in enumerate(read_rows(spec)):
        if "prompt" not in r:
            continue
        answer = r.get(column, r.get("ground_truth", r.get("chosen", "")))
        msgs = as_messages(r["prompt"])
        rows.append({"data_source": "alignplan", "prompt": msgs, "ability": "alignment",
                     "reward_model": {"style": "rule" if spec.reward and spec.reward.function else "model",
                                      "ground_truth": answer if isinstance(answer, str) else str(answer)},
                     "extra_info": {"split": "train", "index": i, "prompt_text": msgs[-1]["content"]}})
    if not rows:
        raise ValueError("the data set has no 'prompt' column to train on")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)


def ray_script(placement, folder: Path) -> str:
    q = shlex.quote
    return f"""#!/usr/bin/env bash
# verl {VERL_VERSION} on {placement.nodes} x {placement.gpus_per_node} {placement.gpu} (written by alignplan).
# 1. On the head node:     bash {q(str(folder / 'ray_job.sh'))} head
# 2. On every other node:  HEAD_IP=<head address> bash {q(str(folder / 'ray_job.sh'))} worker
# 3. On the head node:     bash {q(str(folder / 'ray_job.sh'))} submit
set -euo pipefail
export_dir={q(str(folder))}
port="${{RAY_PORT:-6379}}"
case "${{1:-}}" in
  head)
    ray start --head --port "$port" --num-gpus {placement.gpus_per_node} --dashboard-host 0.0.0.0 ;;
  worker)
    ray start --address "${{HEAD_IP:?set HEAD_IP to the head node address}}:$port" --num-gpus {placement.gpus_per_node} ;;
  submit)
    ray job submit --address "${{RAY_DASHBOARD:-http://127.0.0.1:8265}}" --working-dir "$export_dir" -- \\
      python3 -m verl.trainer.main_ppo --config-path "$export_dir" --config-name {CONFIG_NAME} ;;
  *)
    echo "usage: $0 head|worker|submit" >&2; exit 2 ;;
esac
"""


def render(placement, spec: RunSpec, folder: Path) -> list[str]:
    files = []
    data_path = folder / "train.parquet"
    write_parquet(spec, data_path)
    files.append("train.parquet")
    reward_file = None
    if spec.reward and spec.reward.function:
        files += write_reward_adapter(spec, folder, "verl")
        reward_file = str(folder / ADAPTER_FILE)
    cfg = verl_config(placement, spec, train_parquet=str(data_path), reward_file=reward_file)
    header = (f"# verl {VERL_VERSION}: inherits verl's ppo_trainer (pkg://verl.trainer.config) and overrides it.\n"
              f"# Placement: {placement.nodes} x {placement.gpus_per_node} {placement.gpu}, every role colocated "
              "(hybrid engine).\n")
    (folder / f"{CONFIG_NAME}.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    (folder / "ray_job.sh").write_text(ray_script(placement, folder), encoding="utf-8")
    (folder / "ray_job.sh").chmod(0o755)
    return [*files, f"{CONFIG_NAME}.yaml", "ray_job.sh"]


# --- checks ------------------------------------------------------------------------------------------


def compose(folder: Path):
    """Compose the exported YAML with Hydra against verl's own config tree (no overrides)."""
    import verl.trainer.config  # noqa: F401  (fails here, not inside Hydra, when verl is missing)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(folder.resolve()), version_base=None):
        return hydra_compose(config_name=CONFIG_NAME)


def check_compose(folder: Path) -> str:
    cfg = compose(folder)
    legacy = [k for k in ("reward_model", "custom_reward_function") if cfg.get(k) and any(
        v is not None for v in _leaves(cfg.get(k)))]
    if legacy:
        raise ValueError(f"top-level {legacy} set: verl 0.9 ignores them (use reward.*)")
    return (f"composed with verl's ppo_trainer: adv_estimator={cfg.algorithm.adv_estimator}, "
            f"nnodes={cfg.trainer.nnodes}, n_gpus_per_node={cfg.trainer.n_gpus_per_node}")


def _leaves(node) -> list:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        return [x for k in node for x in _leaves(node.get(k))]
    if isinstance(node, ListConfig):
        return [x for v in node for x in _leaves(v)]
    return [node]


def check_validate(folder: Path) -> str:
    """verl's own validate_config, as main_ppo calls it (reference and critic need from its helpers)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = compose(folder)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    return f"verl.utils.config.validate_config passed (critic: {need_critic(cfg)}, reference: {need_reference_policy(cfg)})"


def check_dataset(folder: Path, tokenizer_dir: str) -> str:
    """The parquet through verl's RLHFDataset with the composed data config and the model's tokenizer."""
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = compose(folder)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ds = RLHFDataset(data_files=[str(folder / "train.parquet")], tokenizer=tok, config=cfg.data)
    item = ds[0]
    return f"RLHFDataset: {len(ds)} rows; item keys {sorted(item)[:8]}"
