"""Placements beyond one machine: which GPUs each role of a job gets, with what sharding and
offload, and how much host RAM that needs per node. Pure Python (no torch); every number comes
from planner.estimate or from the formulas below.

Two kinds of job:

* **training** (SFT, RM, DPO family, TRL's GRPO/RLOO under accelerate): one role, ``trainer``, on
  every GPU of every node. The placement is the first setup that fits, tried in this order:
  ZeRO-0 (a replica per GPU), ZeRO-2, ZeRO-3, ZeRO-3 + optimizer offload, ZeRO-3 + parameter
  offload (ZeRO paper, Rajbhandari et al. 2020, §5; ZeRO-Offload/Infinity for the offloads).
* **RL with a rollout engine** (verl's hybrid engine, OpenRLHF's ``--train.colocate_all``):
  actor, rollout engine (vLLM), reference, critic and reward share all N GPUs and take turns;
  the training roles' states go to host RAM between their phases when keeping them resident
  does not fit (verl ``fsdp_config.param_offload/optimizer_offload``; OpenRLHF
  ``--ds.enable_sleep`` with ``--vllm.enable_sleep``).

Per role (each planned with ZeRO-3 over the whole pool, as both engines shard every model over it):

* actor: the policy's update, planned as an SFT step over prompt + response tokens at the
  update micro-batch (the same forward/backward of one trainable causal LM; planner.estimate).
* critic: the value model's update, planned as a reward-model step (a trainable model with a
  1-wide score head); the RM profile puts 2 sequences per example, so the micro-batch is halved,
  rounded up (conservative by one sequence when the micro-batch is odd).
* reference, reward: frozen copies; their weights shard (ZeRO-3 / FSDP over N) come from the
  PPO plan's copy rows; scoring adds the actor's logits term (reference) or nothing (reward,
  1-wide head) plus the CUDA context.
* rollout: vLLM pre-allocates ``gpu_memory_utilization`` x the GPU's total memory at start-up
  and keeps it (vLLM docs, "gpu_memory_utilization: the fraction of GPU memory to be used for the
  model executor"): weights / TP, the profile run's activations, and the KV-cache pool filling
  the rest (``rollout_memory``).

The rollout's tensor-parallel size is the smallest power of two dividing the GPUs of a node whose
KV pool holds ``min_concurrent_sequences`` full-length sequences (prompt + response) per engine:
below that a decode step runs too few sequences to use the GPU (vLLM's throughput grows with the
running batch). vLLM itself refuses to start when the pool cannot hold one ``max_model_len``
sequence; that is a hard limit here too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from planner.estimate import PlanRequest, estimate
from planner.hardware import get_gpu
from planner.models import ModelSpec, load_model
from planner.terms import CUDA_CONTEXT_BYTES

GIB = 2**30

#: Training setups tried for a one-role job, in order: (zero, offload).
TRAINING_SETUPS: tuple[tuple[int, str | None], ...] = ((0, None), (2, None), (3, None), (3, "optimizer"),
                                                        (3, "params"))

#: vLLM's default ``max_num_batched_tokens`` in verl's rollout config (the profile run's size).
VLLM_PROFILE_TOKENS = 8192

#: Roles in the order they are reported.
ROLE_ORDER = ("trainer", "actor", "rollout", "reference", "critic", "reward")

_COPY_ROLES = {"policy": "actor", "value": "critic", "reference": "reference", "reward": "reward"}


@dataclass
class RolePlan:
    """One role of a job: its GPUs, how it is sharded, its per-GPU memory in its own phase."""

    role: str  # trainer | actor | rollout | reference | critic | reward
    gpus: int  # GPUs the role runs on (in all)
    nodes: int
    gpus_per_node: int
    shares_gpus_with: list[str]  # the other roles on the same GPUs (colocated, taking turns)
    peak_bytes_per_gpu: int  # in its own phase
    resident_bytes_per_gpu: int  # what stays on the GPU between its phases unless offloaded
    offloaded: bool  # states moved to host RAM between its phases
    zero: int | None = None
    tensor_parallel: int | None = None  # rollout engine only
    engines: int | None = None  # rollout engine only
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Placement:
    """A multi-node placement: the answer an export renders."""

    kind: str  # training | rl
    method: str
    model: str
    gpu: str
    nodes: int
    gpus_per_node: int
    zero: int
    engine: str  # deepspeed | fsdp
    offload: str | None  # None | optimizer | params (training); "between-phases" (rl)
    precision: str
    peak_bytes_per_gpu: int
    usable_bytes_per_gpu: int
    fits: bool
    host_bytes_per_node: int
    roles: list[RolePlan]
    phases: dict[str, int] = field(default_factory=dict)  # rl: per-GPU total in each phase
    tried: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def role(self, name: str) -> RolePlan | None:
        return next((r for r in self.roles if r.role == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["world_size"] = self.world_size
        return d

    def summary(self) -> str:
        """Lines a person reads: the placement, per role, in GiB."""
        lines = [f"{self.method} on {self.model}: {self.nodes} node(s) x {self.gpus_per_node} {self.gpu} "
                 f"= {self.world_size} GPUs; {'ZeRO-' + str(self.zero) if self.engine == 'deepspeed' else 'FSDP stage ' + str(self.zero)}"
                 f", offload {self.offload or 'none'}; peak {self.peak_bytes_per_gpu / GIB:.1f} GiB per GPU of "
                 f"{self.usable_bytes_per_gpu / GIB:.1f} usable ({'fits' if self.fits else 'DOES NOT FIT'}); "
                 f"host RAM {self.host_bytes_per_node / GIB:.1f} GiB per node"]
        for r in self.roles:
            extra = f", TP {r.tensor_parallel} x {r.engines} engines" if r.tensor_parallel else ""
            share = f", shares GPUs with {', '.join(r.shares_gpus_with)}" if r.shares_gpus_with else ""
            lines.append(f"  {r.role}: {r.gpus} GPUs ({r.nodes} x {r.gpus_per_node}){extra}; "
                         f"{r.peak_bytes_per_gpu / GIB:.1f} GiB per GPU in its phase"
                         f"{', offloaded between phases' if r.offloaded else ''}{share}")
        return "\n".join(lines)


def _model(req: PlanRequest) -> ModelSpec:
    return req.model if isinstance(req.model, ModelSpec) else load_model(req.model)


def _check_shape(nodes: int, gpus_per_node: int) -> None:
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 512:
        raise ValueError(f"nodes: {nodes!r}; accepted: an integer from 1 to 512")
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or not 1 <= gpus_per_node <= 16:
        raise ValueError(f"gpus_per_node: {gpus_per_node!r}; accepted: an integer from 1 to 16")


# --- training: one role on every GPU ------------------------------------------------------------------


def training_placement(req: PlanRequest, *, gpu: str, nodes: int, gpus_per_node: int,
                       setups: tuple[tuple[int, str | None], ...] = TRAINING_SETUPS) -> Placement:
    """The first (zero, offload) of ``setups`` whose planned peak fits ``gpu``'s usable memory on
    nodes x gpus_per_node GPUs; when none does, the smallest peak, flagged. Host RAM per node is
    the planner's (offloaded states of the node's GPUs)."""
    _check_shape(nodes, gpus_per_node)
    spec = get_gpu(gpu)
    base = _model(req)
    tried, best = [], None
    for zero, offload in setups:
        if gpus_per_node * nodes == 1 and zero:
            continue
        r = req.replace(model=base, gpu=spec.id, gpus=gpus_per_node, nodes=nodes, zero=zero, offload=offload)
        plan = estimate(r, with_min_gpus=False)
        row = {"zero": zero, "offload": offload, "peak_bytes_per_gpu": plan.peak_bytes_per_gpu,
               "host_bytes_per_node": plan.host_bytes_per_node, "fits": bool(plan.fits)}
        tried.append(row)
        if best is None or plan.peak_bytes_per_gpu < best[1].peak_bytes_per_gpu or plan.fits:
            best = (row, plan)
        if plan.fits:
            break
    row, plan = best
    trainer = RolePlan("trainer", nodes * gpus_per_node, nodes, gpus_per_node, [], plan.peak_bytes_per_gpu,
                       sum(c["weights_bytes"] + c["optimizer_states_bytes"] for c in plan.copies),
                       offloaded=row["offload"] is not None, zero=row["zero"],
                       detail={"components": plan.components, "peak_phase": plan.peak_phase,
                               "copies": [c["role"] for c in plan.copies]})
    notes = list(plan.notes)
    if not plan.fits:
        notes.append(f"no setup fits {nodes} x {gpus_per_node} {spec.id}: more nodes, a shorter max_length or "
                     "a smaller micro-batch")
    return Placement("training", req.method, base.id, spec.id, nodes, gpus_per_node, row["zero"], req.engine,
                     row["offload"], req.precision, plan.peak_bytes_per_gpu, spec.usable_bytes, bool(plan.fits),
                     plan.host_bytes_per_node, [trainer], tried=tried, notes=notes,
                     request={k: v for k, v in plan.request.items() if k != "model"} | {"model": base.id})


# --- the rollout engine ------------------------------------------------------------------------------


def kv_bytes_per_token(model: ModelSpec, tensor_parallel: int, dtype_bytes: int = 2) -> int:
    """KV cache of one token on one GPU of a TP group: 2 (K, V) x layers x ceil(kv_heads / TP) x
    head_dim x bytes. vLLM splits the KV heads over the TP ranks, and replicates them when TP is
    larger than the number of KV heads (vLLM's ``get_num_kv_heads``: max(1, kv_heads // tp))."""
    heads = max(1, math.ceil(model.num_kv_heads / tensor_parallel))
    return 2 * model.num_layers * heads * model.head_dim * dtype_bytes


def rollout_memory(model: ModelSpec, *, gpu_total_bytes: int, gpu_memory_utilization: float, tensor_parallel: int,
                   dtype_bytes: int = 2, profile_tokens: int = VLLM_PROFILE_TOKENS) -> dict[str, int]:
    """vLLM's memory on one GPU: it takes ``gpu_memory_utilization`` x total memory at start-up.

    budget      = gpu_memory_utilization x total bytes                      (vLLM: requested memory)
    weights     = params x dtype_bytes / TP                                 (column/row-parallel layers)
    activations = profile_tokens x (4 hidden + 2 intermediate / TP) x dtype_bytes + CUDA context
                  (the profile run of max_num_batched_tokens tokens: a rough bound of its peak)
    kv_pool     = budget - weights - activations                            (vLLM fills the rest with KV blocks)
    """
    budget = int(gpu_memory_utilization * gpu_total_bytes)
    weights = model.params_total * dtype_bytes // tensor_parallel
    activations = profile_tokens * (4 * model.hidden_size + 2 * model.intermediate_size // tensor_parallel) \
        * dtype_bytes + CUDA_CONTEXT_BYTES
    kv_pool = budget - weights - activations
    per_token = kv_bytes_per_token(model, tensor_parallel, dtype_bytes)
    return {"budget_bytes": budget, "weights_bytes": weights, "activations_bytes": activations,
            "kv_pool_bytes": kv_pool, "kv_bytes_per_token": per_token,
            "kv_pool_tokens": max(0, kv_pool) // per_token}


def choose_tensor_parallel(model: ModelSpec, *, gpu_total_bytes: int, gpu_memory_utilization: float,
                           gpus_per_node: int, sequence_tokens: int, min_concurrent_sequences: int) -> tuple[int, dict]:
    """The smallest power-of-two TP (dividing the GPUs of a node and the attention heads) whose KV
    pool holds ``min_concurrent_sequences`` sequences of ``sequence_tokens``; else the largest that
    holds one (vLLM's own start-up limit); else the largest TP, whose memory is reported as it is."""
    candidates = [t for t in (1, 2, 4, 8, 16) if t <= gpus_per_node and gpus_per_node % t == 0
                  and model.num_heads % t == 0]
    mems = {t: rollout_memory(model, gpu_total_bytes=gpu_total_bytes, gpu_memory_utilization=gpu_memory_utilization,
                              tensor_parallel=t) for t in candidates}
    for t in candidates:
        if mems[t]["kv_pool_tokens"] >= min_concurrent_sequences * sequence_tokens:
            return t, mems[t]
    holding = [t for t in candidates if mems[t]["kv_pool_tokens"] >= sequence_tokens]
    t = holding[-1] if holding else candidates[-1]
    return t, mems[t]


# --- RL: the roles on one colocated pool ---------------------------------------------------------------


def rl_placement(req: PlanRequest, *, gpu: str, nodes: int, gpus_per_node: int, framework: str,
                 prompt_len: int, response_len: int, rollout_n: int = 1, micro_batch: int = 1,
                 gpu_memory_utilization: float | None = None, min_concurrent_sequences: int = 32,
                 offload: bool | None = None) -> Placement:
    """Roles of an RL job (``req.method`` in ppo/grpo/rloo) on one pool of nodes x gpus_per_node
    GPUs, every role on every GPU (verl's hybrid engine; OpenRLHF's colocate_all), taking turns:

    rollout phase   = vLLM budget                 + resident states of the training roles kept on GPU
    <role> update   = role's training peak        + resident states of the other roles kept on GPU
    scoring         = largest frozen scoring peak + resident states of the training roles kept on GPU

    ``offload`` None: keep everything resident if every phase fits, else offload the training
    roles between phases (their weights and optimizer states go to host RAM; vLLM sleeps and frees
    its memory outside the rollout). Host RAM per node = the offloaded states of the node's GPUs +
    the rollout weights vLLM's sleep (level 1) keeps in host RAM.
    ``gpu_memory_utilization`` None: colocated with offload, the largest multiple of 0.05 (at most
    0.85) of the GPU's total memory that fits its usable memory; without offload, what is left
    beside the resident states.
    """
    _check_shape(nodes, gpus_per_node)
    if framework not in ("verl", "openrlhf"):
        raise ValueError(f"framework: {framework!r}; accepted: verl, openrlhf")
    spec = get_gpu(gpu)
    base = _model(req)
    world = nodes * gpus_per_node
    # verl trains with FSDP (fp32 master weights, bf16 compute); OpenRLHF with DeepSpeed ZeRO-3 in bf16
    engine, precision = ("fsdp", "amp-bf16") if framework == "verl" else ("deepspeed", "bf16")
    seq = prompt_len + response_len
    common = dict(model=base, gpu=spec.id, gpus=gpus_per_node, nodes=nodes, zero=3, engine=engine,
                  precision=precision, seq_len=seq, grad_ckpt=True, lora_rank=None, quant=None)
    full = estimate(req.replace(**common, batch_size=micro_batch, completion_len=response_len,
                                num_generations=rollout_n if req.method != "ppo" else None), with_min_gpus=False)
    roles_present = [_COPY_ROLES[c["role"]] for c in full.copies if c["role"] in _COPY_ROLES]
    rows = {_COPY_ROLES[c["role"]]: c for c in full.copies if c["role"] in _COPY_ROLES}

    actor_plan = estimate(PlanRequest(**common, method="sft", batch_size=micro_batch, optimizer=req.optimizer),
                          with_min_gpus=False)
    train_peaks = {"actor": actor_plan.peak_bytes_per_gpu}
    if "critic" in roles_present:
        critic_plan = estimate(PlanRequest(**common, method="rm", batch_size=max(1, math.ceil(micro_batch / 2)),
                                           optimizer=req.optimizer), with_min_gpus=False)
        train_peaks["critic"] = critic_plan.peak_bytes_per_gpu
    resident = {r: rows[r]["weights_bytes"] + rows[r]["optimizer_states_bytes"] for r in rows}
    frozen_peak = {}
    for r in ("reference", "reward"):
        if r in rows:
            logits = actor_plan.components.get("logits", 0) if r == "reference" else 0
            frozen_peak[r] = rows[r]["weights_bytes"] + logits + CUDA_CONTEXT_BYTES

    usable = spec.usable_bytes

    def phases(off: bool, util: float, tp_mem: dict) -> dict[str, int]:
        keep = {r: (0 if off else b) for r, b in resident.items()}
        ph = {"rollout": tp_mem["budget_bytes"] + sum(keep.values())}
        for r, peak in train_peaks.items():
            ph[f"{r}_update"] = peak + sum(b for o, b in keep.items() if o != r)
        if frozen_peak:
            ph["scoring"] = max(frozen_peak[r] + sum(b for o, b in keep.items() if o != r) for r in frozen_peak)
        return ph

    def util_for(off: bool) -> float:
        if gpu_memory_utilization is not None:
            return gpu_memory_utilization
        room = usable - (0 if off else sum(resident.values()))
        return max(0.05, min(0.85, math.floor(room / spec.memory_bytes / 0.05) * 0.05))

    tried = []
    choice = None
    for off in ((False, True) if offload is None else (offload,)):
        util = round(util_for(off), 2)
        tp, mem = choose_tensor_parallel(base, gpu_total_bytes=spec.memory_bytes, gpu_memory_utilization=util,
                                         gpus_per_node=gpus_per_node, sequence_tokens=seq,
                                         min_concurrent_sequences=min_concurrent_sequences)
        ph = phases(off, util, mem)
        peak = max(ph.values())
        ok = peak <= usable and mem["kv_pool_tokens"] >= seq
        tried.append({"offload": off, "gpu_memory_utilization": util, "tensor_parallel": tp, "phases": ph,
                      "peak_bytes_per_gpu": peak, "kv_pool_tokens": mem["kv_pool_tokens"], "fits": ok})
        choice = (off, util, tp, mem, ph, peak, ok)
        if ok:
            break
    off, util, tp, mem, ph, peak, ok = choice
    tp_engines = world // tp
    host = 0
    if off:
        host = sum(resident.values()) * gpus_per_node + mem["weights_bytes"] * gpus_per_node
    names = ["actor", "rollout", *[r for r in roles_present if r != "actor"]]
    role_plans = []
    for r in [x for x in ROLE_ORDER if x in names]:
        others = [o for o in names if o != r]
        if r == "rollout":
            role_plans.append(RolePlan("rollout", world, nodes, gpus_per_node, others, mem["budget_bytes"],
                                       0, offloaded=off, tensor_parallel=tp, engines=tp_engines,
                                       detail={**mem, "gpu_memory_utilization": util,
                                               "concurrent_sequences_per_engine": mem["kv_pool_tokens"] // seq}))
        else:
            pk = train_peaks.get(r, frozen_peak.get(r, 0))
            role_plans.append(RolePlan(r, world, nodes, gpus_per_node, others, pk, resident.get(r, 0),
                                       offloaded=off, zero=3,
                                       detail={"trainable": r in train_peaks,
                                               "planned_as": {"actor": "sft step", "critic": "rm step"}.get(
                                                   r, "frozen forward")}))
    notes = list(full.notes)
    if not ok:
        notes.append(f"no colocated setup fits {nodes} x {gpus_per_node} {spec.id}: more nodes, shorter "
                     "sequences or a smaller micro-batch")
    if mem["kv_pool_tokens"] < seq:
        notes.append(f"vLLM's KV pool ({mem['kv_pool_tokens']} tokens per engine) cannot hold one "
                     f"{seq}-token sequence: vLLM refuses to start")
    return Placement("rl", req.method, base.id, spec.id, nodes, gpus_per_node, 3, engine,
                     "between-phases" if off else None, precision, peak, usable, ok, host, role_plans,
                     phases=ph, tried=tried, notes=notes,
                     request={"framework": framework, "prompt_len": prompt_len, "response_len": response_len,
                              "rollout_n": rollout_n, "micro_batch": micro_batch,
                              "reward_model": req.reward_model, "beta": req.beta,
                              "min_concurrent_sequences": min_concurrent_sequences})
