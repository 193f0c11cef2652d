"""The launch decision: which devices a run uses and how accelerate starts it (CPU, one GPU, DDP,
DeepSpeed ZeRO or FSDP2), from the planner's estimate for the spec on the devices found; and the
accelerate.yaml that carries it out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from planner.estimate import DEFAULT_BATCH_SIZE, DEFAULT_SEQ_LEN
from planner.methods import METHODS as METHOD_PROFILES
from runners.rundir import devices as dev
from runners.rundir.hparams import hparam_bool, hparam_float, hparam_int
from runners.rundir.spec import RunSpec, SpecError

# TRL 1.16 defaults used when the spec's hparams leave them out (one fact, the planner's).
DEFAULT_MAX_LENGTH = DEFAULT_SEQ_LEN


@dataclass
class Decision:
    """How the run is launched, and why."""

    kind: str  # cpu | single-gpu | ddp | deepspeed-zero2 | deepspeed-zero3 | fsdp-shard-grad-op | fsdp-full-shard
    distributed_type: str  # accelerate's: NO, MULTI_GPU, DEEPSPEED, FSDP
    num_processes: int
    gpu_ids: list[int]
    zero: int  # 0: a full replica per process; 2: gradients and optimizer states sharded; 3: weights too
    precision: str
    fits: bool | None
    usable_bytes: int | None  # memory one process may use on its device
    predicted_peak_bytes: int | None
    reason: str
    tried: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine: str = "none"  # what shards (zero > 0): deepspeed | fsdp

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# estimate(spec, precision, zero, gpus, gpu, engine) -> (planner request dict, planner plan dict)
Estimator = Callable[..., tuple[dict[str, Any], dict[str, Any]]]


# TRL/transformers `optim` names -> the planner's optimizer ids (anything else is planned as AdamW).
_PLANNER_OPTIMIZERS = {"adamw_8bit": "adamw-8bit", "paged_adamw_8bit": "adamw-8bit", "adamw_bnb_8bit": "adamw-8bit",
                       "adafactor": "adafactor", "sgd": "sgd"}


def plan_request(spec: RunSpec, *, precision: str, zero: int, gpus: int, gpu: str | None,
                 engine: str = "deepspeed") -> dict[str, Any]:
    """The planner request that describes this spec (kwargs of planner.PlanRequest): the planner
    models what the recipe will do, so every knob the recipe reads that changes memory is passed."""
    hp = spec.hparams
    req: dict[str, Any] = {
        "model": spec.model,
        "method": spec.method,
        "seq_len": hparam_int(hp, "max_length", DEFAULT_MAX_LENGTH),
        "batch_size": hparam_int(hp, "per_device_train_batch_size", DEFAULT_BATCH_SIZE),
        "precision": precision,
        "lora_rank": spec.lora.r if spec.lora else None,
        "quant": spec.lora.quant if spec.lora else None,
        "grad_ckpt": spec.gradient_checkpointing,
        "optimizer": _PLANNER_OPTIMIZERS.get(str(hp.get("optim", "")).lower(), "adamw"),
        "zero": zero,
        "engine": engine,
        "gpus": gpus,
        "nodes": 1,
        "precompute_ref": hparam_bool(hp, "precompute_ref_log_probs"),
    }
    if spec.lora:
        req["lora_dropout"] = spec.lora.dropout
        if spec.lora.target_modules != "all-linear":
            req["lora_targets"] = "attention"  # the planner knows all-linear and attention-only
    if spec.method in ("grpo", "rloo"):
        beta = hparam_float(hp, "beta")
        if beta is not None:
            req["beta"] = beta
        generations = hparam_int(hp, "num_generations")
        if generations is not None:
            req["num_generations"] = generations
        completion = hparam_int(hp, "max_completion_length")
        if completion is not None:
            req["completion_len"] = min(completion, req["seq_len"])
        if spec.reward and spec.reward.function:
            req["reward_model"] = "rule"
    if spec.method == "ppo":
        # PPOConfig's names: a rollout of per_device_train_batch_size prompts is generated at once, and
        # the update goes through it in num_mini_batches x gradient_accumulation_steps micro-batches
        from runners.rl.ppo_config import PPOConfig

        defaults = PPOConfig()
        rollout = hparam_int(hp, "per_device_train_batch_size", defaults.per_device_train_batch_size)
        splits = (hparam_int(hp, "num_mini_batches", defaults.num_mini_batches)
                  * hparam_int(hp, "gradient_accumulation_steps", defaults.gradient_accumulation_steps))
        req["rollout_batch_size"] = rollout
        req["batch_size"] = max(1, rollout // splits)
        response = hparam_int(hp, "response_length", defaults.response_length)
        req["completion_len"] = min(response, req["seq_len"])
        if spec.reward and spec.reward.function:
            req["reward_model"] = "rule"
    if spec.method in ("generate", "cai-generate"):  # sampling stages: their own config's names
        req["batch_size"] = hparam_int(hp, "batch_size", 8)  # GenerateConfig.batch_size: prompts per batch
        responses = hparam_int(hp, "num_responses")
        if responses is not None and spec.method == "generate":
            req["num_generations"] = responses
        new_tokens = hparam_int(hp, "max_new_tokens", 256)  # SamplingConfig.max_new_tokens' default
        req["completion_len"] = min(new_tokens, req["seq_len"])
    if spec.method == "rlaif-label":  # the judge: LabelConfig's names
        # batch_size pairs, each judged in both orders (the profile counts 2 sequences per pair); the
        # judge's input, prompt + both responses, is cut at max_length: the planner's context
        # (seq_len + completion_len) is that cap, split as prompt + response (2/3) and the second response
        req["batch_size"] = hparam_int(hp, "batch_size", 8)  # LabelConfig.batch_size
        cap = hparam_int(hp, "max_length", 2048)  # LabelConfig.max_length
        req["completion_len"] = max(1, cap // 3)
        req["seq_len"] = max(1, cap - req["completion_len"])
    if gpu is not None:
        req["gpu"] = gpu
    return req


def planner_estimate(spec: RunSpec, *, precision: str, zero: int, gpus: int, gpu: str | None,
                     engine: str = "deepspeed"):
    """Ask the planner; the model comes from planner.load_model (a local dir needs only config.json)."""
    import planner

    req = plan_request(spec, precision=precision, zero=zero, gpus=gpus, gpu=gpu, engine=engine)
    model = planner.load_model(spec.model)
    plan = planner.estimate(planner.PlanRequest(**{**req, "model": model}))
    req["model_id"] = getattr(model, "id", spec.model)
    return req, plan.to_dict()


def planner_gpu_id(gpu: dev.GPU) -> str | None:
    """The planner catalogue GPU most like a detected one: name match first, then nearest memory."""
    try:
        import planner
    except ImportError:
        return None
    named = planner.match_gpu_name(gpu.name, gpu.total_bytes)
    if named is not None:
        return named.id
    specs = list(planner.GPUS.values())
    return min(specs, key=lambda s: abs(int(s.memory_bytes) - gpu.total_bytes)).id if specs else None


def resolve_precision(spec: RunSpec, gpus: list[dev.GPU]) -> str:
    """The recipe's rule: the spec's precision, else bf16-kahan on a bf16-capable GPU, else fp32."""
    if spec.precision:
        return spec.precision
    return "bf16-kahan" if gpus and all(gpu_has_bf16(g) for g in gpus) else "fp32"


def gpu_has_bf16(gpu: dev.GPU) -> bool:
    """From the planner's GPU catalogue (T4: no); GPUs it does not know are assumed to have it."""
    try:
        import planner
    except ImportError:
        return True
    known = planner.match_gpu_name(gpu.name, gpu.total_bytes)
    return True if known is None else bool(known.bf16)


def select_gpus(spec: RunSpec, devices: dev.Devices) -> list[dev.GPU]:
    if spec.devices == "cpu" or not devices.gpus:
        if isinstance(spec.devices, list) and spec.devices:
            raise SpecError(f"devices: GPU indices {spec.devices} requested but no GPU is visible")
        return []
    if spec.devices == "auto":
        chosen = list(devices.gpus)
    else:
        by_index = {g.index: g for g in devices.gpus}
        missing = [i for i in spec.devices if i not in by_index]
        if missing:
            raise SpecError(
                f"devices: GPU index {missing[0]} is not visible; visible: {sorted(by_index)} or 'cpu'/'auto'"
            )
        chosen = [by_index[i] for i in dict.fromkeys(spec.devices)]
    if spec.num_processes is not None:
        if spec.num_processes > len(chosen):
            raise SpecError(
                f"num_processes: {spec.num_processes} processes need one GPU each; {len(chosen)} selected"
            )
        chosen = chosen[: spec.num_processes]
    return chosen


def decide(spec: RunSpec, devices: dev.Devices, estimate: Estimator = planner_estimate) -> tuple[Decision, dict]:
    """Choose the accelerate setup, and return it with the plan it rests on.

    No GPU (or devices: cpu): the CPU, one process unless num_processes says more. accelerate's
    MULTI_CPU starts a single process unless given an MPI hostfile, so several CPU processes go
    through its MULTI_GPU launcher (torch.distributed.run) with CUDA hidden: each process trains on
    the CPU and they join over gloo.
    One GPU: that GPU. Several: DDP when one replica fits one GPU (planner, zero=0), else the
    first sharding stage that fits (2, then 3) with DeepSpeed ZeRO or FSDP2 (spec.sharding);
    when none does, the stage with the smallest predicted peak (usually 3; with FSDP2 and TRL's
    one-unit reference it can be 2), flagged as not fitting. spec.zero_stage skips the search.
    """
    gpus = select_gpus(spec, devices)
    precision = resolve_precision(spec, gpus)
    n = len(gpus) if gpus else (spec.num_processes or 1)
    if spec.zero_stage and not gpus:
        # accelerate turns FSDP and DeepSpeed on for GPU process groups only; CPU processes use DDP.
        raise SpecError(f"zero_stage: {spec.zero_stage} shards over GPUs, and this run is on the CPU; "
                        "use zero_stage 0 (or leave it unset) for CPU processes")
    if spec.zero_stage and n < 2:
        raise SpecError(f"zero_stage: {spec.zero_stage} shards the model over processes, and this run has one GPU; "
                        "select 2 or more GPUs, or zero_stage 0")
    if not gpus and n > max(1, devices.cpu_count):
        # each CPU process trains with its own threads; more processes than cores only contend for them
        raise SpecError(f"num_processes: {n} CPU processes on {devices.cpu_count} CPU cores; accepted: 1 to "
                        f"{max(1, devices.cpu_count)} on this machine's CPU")
    engine = sharding_engine(spec)
    tried: list[dict[str, Any]] = []
    if not gpus:
        usable = devices.ram_available_bytes // n
        plan, req, peak, err = _try(estimate, spec, precision, 0, 1, None, usable, tried)
        decision = Decision(
            kind="cpu",
            distributed_type="MULTI_GPU" if n > 1 else "NO",
            num_processes=n,
            gpu_ids=[],
            zero=0,
            precision=precision,
            fits=None if peak is None else peak <= usable,
            usable_bytes=usable,
            predicted_peak_bytes=peak,
            reason="no GPU visible" if spec.devices != "cpu" else "devices: cpu",
            tried=tried,
        )
        _note_unused_sharding(decision, spec, "the run is on the CPU")
        if peak is not None and peak > usable:
            decision.notes.append(
                f"RAM: {n} process{'es' if n > 1 else ''} x {peak / 2**30:.2f} GiB predicted each is more than the "
                f"{devices.ram_available_bytes / 2**30:.2f} GiB of RAM available; expect swapping or the OOM killer"
                + (" (fewer --num-processes)" if n > 1 else ""))
        return _note_error(decision, err), {"request": req, "plan": plan}

    usable = min(g.free_bytes for g in gpus)
    gpu_id = planner_gpu_id(gpus[0])
    unsharded = UNSHARDED_METHODS.get(spec.method)
    if spec.zero_stage and unsharded:
        raise SpecError(f"zero_stage: {spec.zero_stage} is refused for {spec.method}: {unsharded}")
    if spec.zero_stage is not None:
        check_quant_sharding(spec, spec.zero_stage, engine)
        stages: tuple[int, ...] = (spec.zero_stage,)
    elif unsharded:  # a full replica per GPU, flagged when it does not fit
        stages = (0,)
    else:  # the stages this run can use, smallest first
        stages = tuple(z for z in ((0,) if n == 1 else (0, 2, 3)) if quant_can_shard(spec, z, engine))
    chosen = None
    attempts = []
    for zero in stages:
        plan, req, peak, err = _try(estimate, spec, precision, zero, n, gpu_id, usable, tried, engine)
        if peak is None or peak <= usable:
            chosen = (zero, plan, req, peak, err)
            break
        attempts.append((zero, plan, req, peak, err))
    if chosen is None:  # nothing fits (every peak is known): the setup with the smallest peak, flagged
        chosen = min(attempts, key=lambda a: a[3])
    zero, plan, req, peak, err = chosen
    fits = None if peak is None else peak <= usable
    if n == 1:
        kind, dist = "single-gpu", "NO"
    elif zero == 0:
        kind, dist = "ddp", "MULTI_GPU"
    elif engine == "fsdp":
        kind, dist = f"fsdp-{FSDP_STAGE_NAMES[zero].replace(' ', '-')}", "FSDP"
    else:
        kind, dist = f"deepspeed-zero{zero}", "DEEPSPEED"
    reason = _reason(kind, n, peak, usable, fits, zero, forced=spec.zero_stage is not None)
    decision = Decision(kind, dist, n, [g.index for g in gpus], zero, precision, fits, usable, peak, reason, tried,
                        engine=engine if zero else "none")
    if fits is False:
        decision.notes.append("the planner predicts this run does not fit the selected GPUs; expect OOM")
        if unsharded and n > 1:
            decision.notes.append(f"{spec.method} is not sharded: {unsharded}")
    if n == 1:
        _note_unused_sharding(decision, spec, "the run has one GPU")
    if dist == "DEEPSPEED" and not deepspeed_installed():
        decision.notes.append("needs DeepSpeed, which is not installed here: pip install 'alignplan[deepspeed]' "
                              "(or set sharding: fsdp)")
    return _note_error(decision, err), {"request": req, "plan": plan}


# Methods whose recipe cannot run under DeepSpeed ZeRO or FSDP, and why (the method profiles' fact,
# planner.methods runner_unsharded): decide() never picks a sharding stage for them and refuses a
# forced one, before any model loads.
UNSHARDED_METHODS = {m: p.runner_unsharded for m, p in METHOD_PROFILES.items() if p.runner_unsharded}

# FSDP2's two ways to shard, by the ZeRO stage they match in memory.
FSDP_STAGE_NAMES = {2: "shard grad op", 3: "full shard"}


def quant_can_shard(spec: RunSpec, zero: int, engine: str) -> bool:
    """Sharded 4/8-bit weights need bitsandbytes' quant_storage set to match, which the recipes do
    not do. ZeRO-2 leaves weights whole; FSDP2 shards them at both of its stages."""
    return not (spec.lora and spec.lora.quant) or zero == 0 or (engine == "deepspeed" and zero == 2)


def check_quant_sharding(spec: RunSpec, zero: int, engine: str) -> None:
    """Refuse a forced stage that would shard quantized weights, before any model loads."""
    if quant_can_shard(spec, zero, engine):
        return
    how = f"FSDP2 stage {zero}" if engine == "fsdp" else "ZeRO-3"
    raise SpecError(f"lora.quant: a {spec.lora.quant} base model cannot be sharded with {how} by these recipes; "
                    "use sharding deepspeed with zero_stage 2, fewer GPUs, or drop lora.quant")


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


def sharding_engine(spec: RunSpec) -> str:
    """Which library shards when a stage above 0 is used: the spec's choice; 'auto' is DeepSpeed
    where it is installed, else FSDP2, which ships with torch."""
    if spec.sharding != "auto":
        return spec.sharding
    return "deepspeed" if deepspeed_installed() else "fsdp"


def _try(estimate, spec, precision, zero, n, gpu_id, usable, tried, engine="deepspeed"):
    engine = engine if zero else "deepspeed"  # the planner's default engine; it only matters when sharding
    try:
        req, plan = estimate(spec, precision=precision, zero=zero, gpus=n, gpu=gpu_id, engine=engine)
    except Exception as exc:  # the planner cannot place this model (offline hub id, ...): launch anyway
        err = f"{type(exc).__name__}: {exc}"
        tried.append({"zero": zero, "gpus": n, "error": err})
        return None, plan_request(spec, precision=precision, zero=zero, gpus=n, gpu=gpu_id, engine=engine), None, err
    peak = int(plan["peak_bytes_per_gpu"])
    tried.append({"zero": zero, "gpus": n, "peak_bytes_per_gpu": peak, "usable_bytes": usable, "fits": peak <= usable})
    return plan, req, peak, None


def decide_with_reference_fallback(spec: RunSpec, devices: dev.Devices,
                                   estimate: Estimator = planner_estimate) -> tuple[RunSpec, Decision, dict]:
    """decide(), and when the plan says a full fine-tune with a reference model will not fit, try
    TRL's precompute_ref_log_probs: the reference scores the data once before training and is gone
    while the policy trains. Taken when it makes the run fit; a value the user set is never changed.
    (With LoRA there is no reference copy to drop: the adapter-off policy is the reference.)"""
    from planner import can_precompute_reference

    decision, planned = decide(spec, devices, estimate)
    if (decision.fits is not False or not can_precompute_reference(spec.method) or spec.lora is not None
            or "precompute_ref_log_probs" in spec.hparams):
        return spec, decision, planned
    lighter = spec.model_copy(update={"hparams": {**spec.hparams, "precompute_ref_log_probs": True}})
    lighter_decision, lighter_planned = decide(lighter, devices, estimate)
    if not lighter_decision.fits:
        return spec, decision, planned
    saved = (decision.predicted_peak_bytes or 0) - (lighter_decision.predicted_peak_bytes or 0)
    lighter_decision.notes.append(
        f"the run does not fit with a reference model in memory ({_gib(decision.predicted_peak_bytes)} per "
        f"device, {decision.kind}); hparams.precompute_ref_log_probs set to true: the reference scores the "
        f"data once before training ({_gib(lighter_decision.predicted_peak_bytes)}, {_gib(saved)} less). "
        "Set it to false in hparams to keep the reference instead")
    return lighter, lighter_decision, lighter_planned


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _note_unused_sharding(decision: Decision, spec: RunSpec, why: str) -> None:
    if spec.sharding != "auto":
        decision.notes.append(f"sharding: {spec.sharding} is not used, since {why}: it shards over 2 or more GPUs")


def _note_error(decision: Decision, err: str | None) -> Decision:
    if err:
        decision.notes.append(f"no memory estimate ({err}); setup chosen from the device count alone")
    return decision


def _reason(kind: str, n: int, peak: int | None, usable: int, fits: bool | None, zero: int = 0,
            forced: bool = False) -> str:
    gib = 2**30
    if peak is None:
        return f"{n} GPU(s), no estimate: {kind}"
    est = f"predicted {peak / gib:.1f} GiB per GPU vs {usable / gib:.1f} GiB free"
    if kind == "single-gpu":
        return f"one GPU; {est}"
    if forced:
        return f"{kind} over {n} GPUs, as zero_stage {zero} asks ({est})"
    if kind == "ddp":
        return f"a full replica fits one GPU ({est}): DDP over {n} GPUs"
    how = f"ZeRO-{zero}" if kind.startswith("deepspeed") else f"FSDP2 {FSDP_STAGE_NAMES[zero]}"
    if fits:
        return f"a replica does not fit one GPU; {how} over {n} GPUs does ({est})"
    return f"does not fit even with {how} over {n} GPUs ({est})"


def accelerate_config(decision: Decision, spec: RunSpec) -> dict[str, Any]:
    """accelerate's config file contents for the decision; num_processes always explicit."""
    on_cpu = decision.kind == "cpu"
    cpu_processes = on_cpu and decision.num_processes > 1  # torch.distributed.run, CUDA hidden
    deepspeed = decision.distributed_type == "DEEPSPEED"
    # amp-bf16 autocasts; a bf16-loaded model needs no autocast except under DeepSpeed, whose
    # bf16 mode must be on to accept bf16 parameters.
    mixed = ("bf16" if decision.precision == "amp-bf16" or (deepspeed and decision.precision in ("bf16", "bf16-kahan"))
             else "no")
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": decision.distributed_type,
        "downcast_bf16": "no",
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": mixed,
        "num_machines": 1,
        "num_processes": decision.num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": on_cpu and not cpu_processes,
    }
    if not on_cpu:
        cfg["gpu_ids"] = gpu_ids_for_env(decision.gpu_ids)
    if decision.num_processes > 1:
        # torch.distributed's default port 29500 would collide between runs on one machine.
        cfg["main_process_ip"] = "127.0.0.1"
        cfg["main_process_port"] = free_port()
    if deepspeed:
        cfg["deepspeed_config"] = {
            "zero_stage": decision.zero,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "gradient_accumulation_steps": int(spec.hparams.get("gradient_accumulation_steps", 1)),
            "gradient_clipping": float(spec.hparams.get("max_grad_norm", 1.0)),
            "zero3_init_flag": decision.zero == 3,
        }
        if decision.zero == 3:
            cfg["deepspeed_config"]["zero3_save_16bit_model"] = True
    if decision.distributed_type == "FSDP":
        cfg["fsdp_config"] = fsdp_config(decision, spec)
    return cfg


def loads_one_model(method: str) -> bool:
    """Whether the method's recipe loads a single model (no reference or reward model), from the
    planner's method profile."""
    import planner

    return len(planner.get_profile(method).copies) == 1


def fsdp_config(decision: Decision, spec: RunSpec) -> dict[str, Any]:
    """accelerate's FSDP2 settings for zero 2 (weights gathered once per step) or 3 (gathered per layer)."""
    return {
        "fsdp_version": 2,
        # False keeps each layer's gathered weights from forward to backward: ZeRO-2's memory, less traffic.
        "fsdp_reshard_after_forward": decision.zero == 3,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one shard group per decoder layer
        # Each process writes its own shard of a checkpoint (no gather on one process), and resume
        # reads them back; the final model is still saved whole (see recipes/common.py).
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        # Rank 0 loads the weights and sends each process its shard: one copy in CPU memory, not one
        # per process. Only where the policy is the sole model loaded: the other ranks load on the meta
        # device, and TRL shards a reference or reward model without the broadcast that fills it in.
        "fsdp_cpu_ram_efficient_loading": loads_one_model(spec.method),
        "fsdp_offload_params": False,
        # FSDP's own recomputation; the recipe leaves transformers' gradient checkpointing off, since
        # both together add an all-gather to every backward.
        "fsdp_activation_checkpointing": spec.gradient_checkpointing,
    }


def free_port() -> int:
    """A TCP port free now on 127.0.0.1 (chosen at prepare time; very unlikely to be taken by launch)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gpu_ids_for_env(indices: list[int]) -> str:
    """accelerate's gpu_ids: "all", or the entries of CUDA_VISIBLE_DEVICES behind the visible indices.

    accelerate writes gpu_ids into CUDA_VISIBLE_DEVICES, so visible index 1 under
    CUDA_VISIBLE_DEVICES=4,5 must be written as 5.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in visible.split(",")] if visible else None
    if entries is None and indices == list(range(len(indices))):
        return "all" if len(indices) > 1 else "0"
    if entries is None:
        return ",".join(str(i) for i in indices)
    return ",".join(entries[i] for i in indices)
