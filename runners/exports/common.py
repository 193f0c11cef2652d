"""What every export shares: the engine versions it targets, the placement it renders (asked of
planner.placement from a RunSpec), reading the spec's local data, and the export folder's
checks.json. Imports planner and runners.rundir only."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.rundir.hparams import hparam_float, hparam_int
from runners.rundir.spec import RunSpec, SpecError

#: The engine versions each renderer targets (their config names were read from these releases).
PINS = {
    "accelerate": {"accelerate": "1.15.0", "deepspeed": ">=0.16", "torch": ">=2.6"},
    "verl": {"verl": "0.9.1", "vllm": "as verl 0.9.1 requires", "ray": ">=2.41"},
    "openrlhf": {"openrlhf": "0.11.2", "vllm": "as openrlhf 0.11.2 requires", "ray": ">=2.41",
                 "deepspeed": "as openrlhf 0.11.2 requires"},
}

ENGINES = ("accelerate", "verl", "openrlhf")
RL_METHODS = ("ppo", "grpo", "rloo")
#: What each engine exports (methods outside raise a SpecError naming the engine's list).
ENGINE_METHODS = {
    "accelerate": ("sft", "rm", "dpo", "ipo", "kto", "orpo", "simpo", "grpo", "rloo"),
    "verl": RL_METHODS,
    "openrlhf": ("ppo", "grpo", "rloo", "dpo", "rm"),
}

DEFAULT_GPU = "H100-80GB"


@dataclass
class ExportResult:
    engine: str
    folder: Path
    files: list[str]
    placement: dict[str, Any]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_method(engine: str, method: str) -> None:
    if engine not in ENGINES:
        raise SpecError(f"export: {engine!r}; accepted: {', '.join(ENGINES)}")
    if method not in ENGINE_METHODS[engine]:
        raise SpecError(f"export {engine}: method {method!r} is not exported to {engine}; accepted: "
                        f"{', '.join(ENGINE_METHODS[engine])}")


def rl_lengths(spec: RunSpec) -> tuple[int, int, int]:
    """(prompt_len, response_len, samples per prompt) from the spec's hparams, with our recipes' defaults."""
    hp = spec.hparams
    max_length = hparam_int(hp, "max_length", 1024)
    response = hparam_int(hp, "response_length", None) or hparam_int(hp, "max_completion_length", None) \
        or max_length // 2
    response = min(response, max_length - 1)
    n = 1 if spec.method == "ppo" else (hparam_int(hp, "num_generations", None) or (8 if spec.method == "grpo" else 2))
    return max_length - response, response, n


def kl_coef(spec: RunSpec) -> float:
    """The KL coefficient: PPO's kl_coef (our PPOConfig default 0.05), GRPO/RLOO's beta (the planner's
    method profile default: TRL's, 0.0 for GRPO, which drops the reference)."""
    import planner

    if spec.method == "ppo":
        value = hparam_float(spec.hparams, "kl_coef")
        return 0.05 if value is None else value
    value = hparam_float(spec.hparams, "beta")
    return float(planner.get_profile(spec.method).default_beta or 0.0) if value is None else value


def plan_placement(spec: RunSpec, engine: str, *, nodes: int, gpus_per_node: int, gpu: str = DEFAULT_GPU,
                   host_ram_gib: float | None = None):
    """The planner's placement for this spec rendered for ``engine``; host RAM per node checked
    against ``host_ram_gib`` (default: the usual server of ``gpu``, planner.placement)."""
    import planner
    from planner.placement import rl_placement, training_placement

    check_method(engine, spec.method)
    model = planner.load_model(spec.model)
    hp = spec.hparams
    if engine == "accelerate" or spec.method not in RL_METHODS:
        from runners.rundir.decide import plan_request

        precision = spec.precision or "bf16"
        req = plan_request(spec, precision=precision, zero=0, gpus=gpus_per_node, gpu=gpu,
                           engine="fsdp" if spec.sharding == "fsdp" else "deepspeed")
        req = planner.PlanRequest(**{**req, "model": model})
        return training_placement(req, gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node, host_ram_gib=host_ram_gib)
    prompt_len, response_len, n = rl_lengths(spec)
    reward_model = None  # the policy's architecture
    if spec.reward and spec.reward.function:
        reward_model = "rule"
    elif spec.reward and spec.reward.model:
        reward_model = spec.reward.model
    req = planner.PlanRequest(model=model, method=spec.method, reward_model=reward_model,
                              beta=kl_coef(spec) if spec.method != "ppo" else None)
    util = hparam_float(hp, "gpu_memory_utilization")
    return rl_placement(req, gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node, framework=engine,
                        prompt_len=prompt_len, response_len=response_len, rollout_n=n,
                        micro_batch=hparam_int(hp, "micro_batch_size_per_gpu", 1),
                        gpu_memory_utilization=util, host_ram_gib=host_ram_gib)


def engines_for(method: str) -> list[str]:
    """The engines that export ``method``, the one to offer first leading: TRL under accelerate
    for what our recipes run, else verl (PPO: our trainer does not shard)."""
    found = [e for e in ENGINES if method in ENGINE_METHODS[e]]
    return sorted(found, key=lambda e: (method == "ppo") != (e == "verl"))


def fewest_nodes(spec: RunSpec, engine: str, *, gpus_per_node: int, gpu: str = DEFAULT_GPU,
                 host_ram_gib: float | None = None, max_nodes: int = 64):
    """(nodes, placement): the fewest nodes of ``gpus_per_node`` ``gpu`` whose placement fits (GPU
    memory and host RAM), up to ``max_nodes``; (None, the placement at max_nodes) when none does."""
    placement = None
    for nodes in range(1, max_nodes + 1):
        placement = plan_placement(spec, engine, nodes=nodes, gpus_per_node=gpus_per_node, gpu=gpu,
                                   host_ram_gib=host_ram_gib)
        if placement.fits:
            return nodes, placement
    return None, placement


def rl_batch_sizes(spec: RunSpec, world: int, rollout_n: int, micro: int) -> dict[str, int]:
    """Prompts per step and per mini-batch that satisfy verl's and OpenRLHF's divisibility rules:

    verl (utils/config.validate_config, ActorConfig.validate, the FSDP workers' normalisation):
      (train_batch_size x n) % world == 0; train_batch_size >= ppo_mini_batch_size;
      (ppo_mini_batch_size x n) % world == 0 and ((mini x n) / world) % micro_per_gpu == 0.
    OpenRLHF (train_ppo_ray.py's last assertion): n x rollout_batch_size / micro_rollout >= world.
    Asked sizes are rounded up to the next size that satisfies them.
    """
    hp = spec.hparams
    want_mini = hparam_int(hp, "ppo_mini_batch_size", None) or hparam_int(hp, "per_device_train_batch_size", None) or 64
    want_train = hparam_int(hp, "train_batch_size", None) or max(want_mini, 4 * want_mini)
    step = world * micro // math.gcd(world * micro, rollout_n)  # prompts: mini x n divisible by world x micro
    mini = max(step, math.ceil(want_mini / step) * step)
    train = max(mini, math.ceil(want_train / mini) * mini)
    return {"train_batch_size": train, "ppo_mini_batch_size": mini, "micro_batch_size_per_gpu": micro}


def read_rows(spec: RunSpec) -> list[dict[str, Any]]:
    """The spec's local data file as rows (.jsonl, .json, .parquet), columns renamed as the spec says.
    A hub id is not read here: the export then says so and writes no data."""
    path = Path(spec.dataset.path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {spec.dataset.path!r} is not a local file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data if isinstance(data, list) else data.get("data", [])
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"dataset {path.name}: only .jsonl/.json/.parquet are converted by exports")
    renames = spec.dataset.columns
    return [{renames.get(k, k): v for k, v in r.items()} for r in rows if isinstance(r, dict)]


def as_messages(value: Any) -> list[dict[str, str]]:
    """A prompt as chat messages: a string becomes one user turn; a message list is kept."""
    if isinstance(value, list):
        return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in value]
    return [{"role": "user", "content": str(value)}]


def as_text(value: Any) -> str:
    """A completion as text: a message list gives its last assistant content."""
    if isinstance(value, list):
        return str(value[-1].get("content", "")) if value else ""
    return str(value)


def write_checks(folder: Path, checks: dict[str, dict[str, Any]]) -> Path:
    """checks.json: each check's name -> {"status": passed|failed|skipped, "detail": ...}."""
    path = folder / "checks.json"
    path.write_text(json.dumps(checks, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def run_check(checks: dict[str, dict[str, Any]], name: str, fn, *args, **kwargs) -> None:
    """Run one check and record it: passed with its return value, failed with the error, or
    skipped when an optional engine is missing (ImportError / FileNotFoundError for a tool)."""
    try:
        detail = fn(*args, **kwargs)
        checks[name] = {"status": "passed", "detail": detail}
    except (ImportError, FileNotFoundError) as exc:
        checks[name] = {"status": "skipped", "detail": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # the check's verdict, kept in checks.json
        checks[name] = {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
