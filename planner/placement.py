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

verl 0.9 serves a reward *model* through a vLLM engine of its own (``reward.reward_model.rollout``,
``gpu_memory_utilization`` 0.5 by default, ``free_cache_engine``): on the colocated pool it is one
more role that pre-allocates its fraction in the reward phase and sleeps (weights to host RAM) outside
it. OpenRLHF scores with a frozen DeepSpeed model instead (planned as a frozen forward).

Host RAM per node is checked against the node's (``host_ram_bytes_per_node``; default the usual
server of the GPU type, ``NODE_HOST_RAM_GIB``): a setup whose offloaded states do not fit the node's
RAM does not fit, whatever its GPU memory.

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

#: verl 0.9's default ``reward.reward_model.rollout.gpu_memory_utilization`` (trainer/config/reward/reward.yaml).
VERL_REWARD_ENGINE_UTILIZATION = 0.5

#: Host RAM of the usual 8-GPU server of each GPU type, GiB, when the user does not give theirs:
#: NVIDIA DGX H100 and DGX H200 datasheets, 2 TB; DGX A100 640GB, 2 TB, and DGX A100 320GB, 1 TB;
#: DGX B200, 2 TB (4 TB optional). Cloud nodes differ (AWS p5.48xlarge 2 TiB, p4d.24xlarge 1,152 GiB):
#: give yours with ``host_ram_gib``. Other types have no usual server: their host RAM is not checked.
NODE_HOST_RAM_GIB = {"H100-80GB": 2048, "H200-141GB": 2048, "A100-80GB": 2048, "A100-40GB": 1024,
                     "B200-192GB": 2048}

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
    tensor_parallel: int | None = None  # vLLM engines only (rollout; verl's reward model)
    engines: int | None = None  # vLLM engines only
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
    host_ram_bytes_per_node: int | None = None  # the node's RAM the host figure is checked against
    host_fits: bool | None = None  # None: the node's RAM is not known, so not checked

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def role(self, name: str) -> RolePlan | None:
        return next((r for r in self.roles if r.role == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["world_size"] = self.world_size
        return d

    def _host_check(self) -> str:
        if self.host_ram_bytes_per_node is None:
            return " (the node's RAM is not known: not checked)"
        verdict = "fits" if self.host_fits else "DOES NOT FIT"
        return f" of {self.host_ram_bytes_per_node / GIB:.0f} GiB ({verdict})"

    def summary(self) -> str:
        """Lines a person reads: the placement, per role, in GiB."""
        lines = [f"{self.method} on {self.model}: {self.nodes} node(s) x {self.gpus_per_node} {self.gpu} "
                 f"= {self.world_size} GPUs; {'ZeRO-' + str(self.zero) if self.engine == 'deepspeed' else 'FSDP stage ' + str(self.zero)}"
                 f", offload {self.offload or 'none'}; peak {self.peak_bytes_per_gpu / GIB:.1f} GiB per GPU of "
                 f"{self.usable_bytes_per_gpu / GIB:.1f} usable ({'fits' if self.fits else 'DOES NOT FIT'}); "
                 f"host RAM {self.host_bytes_per_node / GIB:.1f} GiB per node{self._host_check()}"]
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


def node_host_ram_bytes(gpu: str, host_ram_gib: float | None) -> int | None:
    """The host RAM of one node: the user's figure, else the usual server's for the GPU type, else None."""
    if host_ram_gib is not None:
        if isinstance(host_ram_gib, bool) or not isinstance(host_ram_gib, (int, float)) or not 1 <= host_ram_gib <= 65536:
            raise ValueError(f"host_ram_gib: {host_ram_gib!r}; accepted: GiB of RAM per node, from 1 to 65536")
        return int(host_ram_gib * GIB)
    usual = NODE_HOST_RAM_GIB.get(get_gpu(gpu).id)
    return None if usual is None else usual * GIB


def _host_fits(need: int, have: int | None) -> bool | None:
    return None if have is None else need <= have


# --- training: one role on every GPU ------------------------------------------------------------------


def training_placement(req: PlanRequest, *, gpu: str, nodes: int, gpus_per_node: int,
                       setups: tuple[tuple[int, str | None], ...] = TRAINING_SETUPS,
                       host_ram_gib: float | None = None) -> Placement:
    """The first (zero, offload) of ``setups`` whose planned peak fits ``gpu``'s usable memory on
    nodes x gpus_per_node GPUs and whose host RAM per node (the planner's: offloaded states of the
    node's GPUs) fits the node's; when none does, the smallest peak, flagged."""
    _check_shape(nodes, gpus_per_node)
    spec = get_gpu(gpu)
    host_ram = node_host_ram_bytes(spec.id, host_ram_gib)
    base = _model(req)
    tried, best = [], None
    for zero, offload in setups:
        if gpus_per_node * nodes == 1 and zero:
            continue
        r = req.replace(model=base, gpu=spec.id, gpus=gpus_per_node, nodes=nodes, zero=zero, offload=offload)
        plan = estimate(r, with_min_gpus=False)
        host_ok = _host_fits(plan.host_bytes_per_node, host_ram) is not False
        fits = bool(plan.fits) and host_ok
        row = {"zero": zero, "offload": offload, "peak_bytes_per_gpu": plan.peak_bytes_per_gpu,
               "host_bytes_per_node": plan.host_bytes_per_node, "host_fits": host_ok, "fits": fits}
        tried.append(row)
        if best is None or plan.peak_bytes_per_gpu < best[1].peak_bytes_per_gpu or fits:
            best = (row, plan)
        if fits:
            break
    row, plan = best
    fits = row["fits"]
    trainer = RolePlan("trainer", nodes * gpus_per_node, nodes, gpus_per_node, [], plan.peak_bytes_per_gpu,
                       sum(c["weights_bytes"] + c["optimizer_states_bytes"] for c in plan.copies),
                       offloaded=row["offload"] is not None, zero=row["zero"],
                       detail={"components": plan.components, "peak_phase": plan.peak_phase,
                               "copies": [c["role"] for c in plan.copies]})
    notes = list(plan.notes)
    host_short = [t for t in tried if not t["host_fits"]]
    if host_short:
        notes.append(f"{len(host_short)} setup(s) fit the GPUs but need more host RAM per node than the node's "
                     f"{host_ram / GIB:.0f} GiB (offloaded states): more nodes spread them, or give the node's "
                     "real RAM with --host-ram-gib")
    if host_ram is None:
        notes.append(f"host RAM per node is not checked: no usual server is known for {spec.id} "
                     "(give it with --host-ram-gib)")
    if not fits:
        notes.append(f"no setup fits {nodes} x {gpus_per_node} {spec.id}: more nodes, a shorter max_length or "
                     "a smaller micro-batch")
    return Placement("training", req.method, base.id, spec.id, nodes, gpus_per_node, row["zero"], req.engine,
                     row["offload"], req.precision, plan.peak_bytes_per_gpu, spec.usable_bytes, fits,
                     plan.host_bytes_per_node, [trainer], tried=tried, notes=notes,
                     request={k: v for k, v in plan.request.items() if k != "model"} | {"model": base.id},
                     host_ram_bytes_per_node=host_ram, host_fits=_host_fits(plan.host_bytes_per_node, host_ram))


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
                 offload: bool | None = None, host_ram_gib: float | None = None) -> Placement:
    """Roles of an RL job (``req.method`` in ppo/grpo/rloo) on one pool of nodes x gpus_per_node
    GPUs, every role on every GPU (verl's hybrid engine; OpenRLHF's colocate_all), taking turns:

    rollout phase   = vLLM budget                 + resident states of the training roles kept on GPU
    <role> update   = role's training peak        + resident states of the other roles kept on GPU
    scoring         = largest frozen scoring peak + resident states of the training roles kept on GPU
    reward_scoring  = verl only, with a reward model: its vLLM engine's budget + the resident states
                      kept on GPU (the rollout engine sleeps meanwhile)

    ``offload`` None: keep everything resident if every phase fits, else offload the training
    roles between phases (their weights and optimizer states go to host RAM; vLLM sleeps and frees
    its memory outside the rollout). Host RAM per node = the offloaded states of the node's GPUs +
    the rollout weights vLLM's sleep (level 1) keeps in host RAM.
    ``gpu_memory_utilization`` None: colocated with offload, the largest multiple of 0.05 (at most
    0.85) of the GPU's total memory that fits its usable memory; without offload, what is left
    beside the resident states. verl's reward engine takes verl's default 0.5, or less when that
    does not fit beside what stays resident.
    A setup fits when every phase fits the GPU's usable memory, the KV pool holds one sequence, and
    the host RAM per node fits the node's (when known).
    """
    _check_shape(nodes, gpus_per_node)
    host_ram = node_host_ram_bytes(gpu, host_ram_gib)
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
    # verl serves a reward model with vLLM: an engine that sleeps outside its phase, not resident states
    reward_engine_model = _reward_model(req, base) if framework == "verl" and "reward" in rows else None
    resident = {r: rows[r]["weights_bytes"] + rows[r]["optimizer_states_bytes"] for r in rows
                if not (r == "reward" and reward_engine_model is not None)}
    frozen_peak = {}
    for r in ("reference", "reward"):
        if r in resident:
            logits = actor_plan.components.get("logits", 0) if r == "reference" else 0
            frozen_peak[r] = rows[r]["weights_bytes"] + logits + CUDA_CONTEXT_BYTES

    usable = spec.usable_bytes

    def phases(off: bool, util: float, tp_mem: dict, rm_mem: dict | None) -> dict[str, int]:
        keep = {r: (0 if off else b) for r, b in resident.items()}
        ph = {"rollout": tp_mem["budget_bytes"] + sum(keep.values())}
        for r, peak in train_peaks.items():
            ph[f"{r}_update"] = peak + sum(b for o, b in keep.items() if o != r)
        if frozen_peak:
            ph["scoring"] = max(frozen_peak[r] + sum(b for o, b in keep.items() if o != r) for r in frozen_peak)
        if rm_mem is not None:
            ph["reward_scoring"] = rm_mem["budget_bytes"] + sum(keep.values())
        return ph

    def reward_engine(off: bool) -> tuple[float, int, dict] | None:
        """verl's reward engine: its default share, lowered to what fits beside the kept states."""
        if reward_engine_model is None:
            return None
        room = usable - (0 if off else sum(resident.values()))
        util = round(max(0.05, min(VERL_REWARD_ENGINE_UTILIZATION, math.floor(room / spec.memory_bytes / 0.05) * 0.05)), 2)
        tp, mem = choose_tensor_parallel(reward_engine_model, gpu_total_bytes=spec.memory_bytes,
                                         gpu_memory_utilization=util, gpus_per_node=gpus_per_node,
                                         sequence_tokens=seq, min_concurrent_sequences=1)
        return util, tp, mem

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
        rm = reward_engine(off)
        ph = phases(off, util, mem, rm[2] if rm else None)
        peak = max(ph.values())
        host = 0
        if off:  # the training roles' states and the sleeping engines' weights (vLLM sleep level 1)
            host = (sum(resident.values()) + mem["weights_bytes"] + (rm[2]["weights_bytes"] if rm else 0)) \
                * gpus_per_node
        host_ok = _host_fits(host, host_ram) is not False
        kv_ok = mem["kv_pool_tokens"] >= seq and (rm is None or rm[2]["kv_pool_tokens"] >= seq)
        ok = peak <= usable and kv_ok and host_ok
        tried.append({"offload": off, "gpu_memory_utilization": util, "tensor_parallel": tp, "phases": ph,
                      "peak_bytes_per_gpu": peak, "kv_pool_tokens": mem["kv_pool_tokens"],
                      "host_bytes_per_node": host, "host_fits": host_ok, "fits": ok})
        choice = (off, util, tp, mem, ph, peak, ok, rm, host)
        if ok:
            break
    off, util, tp, mem, ph, peak, ok, rm, host = choice
    tp_engines = world // tp
    names = ["actor", "rollout", *[r for r in roles_present if r != "actor"]]
    role_plans = []
    for r in [x for x in ROLE_ORDER if x in names]:
        others = [o for o in names if o != r]
        if r == "rollout":
            role_plans.append(RolePlan("rollout", world, nodes, gpus_per_node, others, mem["budget_bytes"],
                                       0, offloaded=off, tensor_parallel=tp, engines=tp_engines,
                                       detail={**mem, "gpu_memory_utilization": util,
                                               "concurrent_sequences_per_engine": mem["kv_pool_tokens"] // seq}))
        elif r == "reward" and rm is not None:
            rm_util, rm_tp, rm_mem = rm
            role_plans.append(RolePlan("reward", world, nodes, gpus_per_node, others, rm_mem["budget_bytes"], 0,
                                       offloaded=off, tensor_parallel=rm_tp, engines=world // rm_tp,
                                       detail={**rm_mem, "gpu_memory_utilization": rm_util,
                                               "planned_as": "vLLM engine (verl reward.reward_model.rollout)",
                                               "model": reward_engine_model.id}))
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
    if rm is not None and rm[2]["kv_pool_tokens"] < seq:
        notes.append(f"verl's reward engine's KV pool ({rm[2]['kv_pool_tokens']} tokens) cannot hold one "
                     f"{seq}-token sequence: vLLM refuses to start")
    if host_ram is not None and host > host_ram:
        notes.append(f"host RAM: {host / GIB:.0f} GiB per node of offloaded states and sleeping engines, more "
                     f"than the node's {host_ram / GIB:.0f} GiB: more nodes, or give the real RAM with --host-ram-gib")
    elif host_ram is None and off:
        notes.append(f"host RAM per node is not checked: no usual server is known for {spec.id} "
                     "(give it with --host-ram-gib)")
    return Placement("rl", req.method, base.id, spec.id, nodes, gpus_per_node, 3, engine,
                     "between-phases" if off else None, precision, peak, usable, ok, host, role_plans,
                     phases=ph, tried=tried, notes=notes,
                     request={"framework": framework, "prompt_len": prompt_len, "response_len": response_len,
                              "rollout_n": rollout_n, "micro_batch": micro_batch,
                              "reward_model": req.reward_model if not isinstance(req.reward_model, ModelSpec)
                              else req.reward_model.id, "beta": req.beta,
                              "min_concurrent_sequences": min_concurrent_sequences},
                     host_ram_bytes_per_node=host_ram, host_fits=_host_fits(host, host_ram))


def _reward_model(req: PlanRequest, base: ModelSpec) -> ModelSpec:
    """The reward model's architecture: the request's, or the policy's when it names none."""
    rm = req.reward_model
    if isinstance(rm, ModelSpec):
        return rm
    return load_model(rm) if rm not in (None, "rule") else base
