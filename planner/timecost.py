"""Time and cost before renting (issue 14): step time, wall time per stage, GPU-hours and dollars.

    import planner
    from planner import timecost
    req = planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB", gpus=8)
    t = timecost.estimate_time(req, timecost.Work(examples=50_000, seq_len=1024))
    t["wall_hours"], t["gpu_hours"], t["cost"]

The work is examples (data rows: a preference pair, a prompt, a text) x epochs, each example putting
`sequences` sequences of seq_len tokens (on average) through the method's phases. The FLOPs of each
phase come from planner.flops over the copies and phases of the method's profile (no branch on a
method's id); the seconds from the GPU catalogue's peaks (planner.hardware) times efficiencies:

  compute-bound phases (scoring, forward_backward, prefill): FLOPs / (GPUs x peak x MFU)
  decode (generation): per step, max(bytes read / (bandwidth x fraction), FLOPs / (peak x MFU))
      + the engine's per-step overhead (+ ZeRO-3's all-gather of the weights for every step under
      transformers' generate); bytes read = the generating weights + the batch's KV cache
  optimizer_step: memory bound, weights + gradients + states read and written once per step
  communication: gradient all-reduce (ZeRO-3 also gathers weights) overlapped with compute: each
      step takes the larger of the two

Defaults and their reasons are in docs/time-cost.md; every figure is an estimate to plan a
budget with, not a promise: calibrate the MFU with a short run where it matters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from planner import calibration, flops, terms
from planner.errors import PlannerError
from planner.hardware import CPU_ID, GPUS, GPUSpec, get_gpu, host_cpu
from planner.methods import MethodProfile, get_profile

PRICES_FILE = Path(__file__).parent / "prices.yaml"

# Training MFU (model FLOPs utilisation) of TRL / transformers on a bf16 GPU with SDPA attention:
# the fraction of the dense bf16 peak that the forward and backward achieve. 0.35 is the middle of
# what fine-tuning runs of 1-70B models report (30-45% with FlashAttention-2 on A100/H100; lower for
# small models and short sequences). Override with --mfu, or calibrate from a run's tokens/s.
DEFAULT_MFU = 0.35
# Optimizer step: reads and writes weights, gradients and states at this fraction of the bandwidth.
OPTIMIZER_BW_FRACTION = 0.7
# Host memory bandwidth for a CPU-offloaded optimizer (DeepSpeed's CPUAdam), bytes/s.
HOST_BW = 20e9

# Options that drop a copy from memory but not its compute: under LoRA the reference is the policy
# with its adapter switched off (it still runs a forward); precomputed reference log-probs are one
# forward per example before training instead of one per epoch.
_STILL_COMPUTES = {"lora": "every_epoch", "precompute_ref": "once"}


@dataclass(frozen=True)
class Engine:
    """How a generation engine turns the GPU's peaks into decoding speed.

    bw_fraction: achieved fraction of the memory bandwidth while decoding (reading weights + KV cache).
    step_overhead_s_per_layer: launch and Python time per decode step and layer, not hidden behind the
    GPU (eager transformers launches ~10 kernels per layer from Python; CUDA graphs remove most of it).
    prefill_mfu: MFU of the prompt's forward.
    max_batch: sequences decoded together per instance; None: the request's rollout batch.
    kv_memory_fraction: share of the GPU's memory for the KV cache (continuous batching fills it).
    tensor_parallel: shards the generating weights over GPUs of a node when they are large, instead
    of gathering ZeRO-3 shards for every step.
    gathers_zero3: under ZeRO-3 the weights are all-gathered for every decode step.
    """

    id: str
    name: str
    bw_fraction: float
    step_overhead_s_per_layer: float
    prefill_mfu: float
    max_batch: int | None = None
    kv_memory_fraction: float = 0.0
    tensor_parallel: bool = False
    gathers_zero3: bool = True
    source: str = ""


ENGINES: dict[str, Engine] = {
    e.id: e
    for e in [
        Engine("transformers", "transformers generate (our recipes)", bw_fraction=0.5,
               step_overhead_s_per_layer=150e-6, prefill_mfu=0.35,
               source="eager PyTorch, static batch, no CUDA graphs: ~25-30 ms per step for an 8B model "
                      "at batch 1 on an H100 where the weights alone take 5 ms to read"),
        Engine("vllm", "vLLM (OpenRLHF, verl)", bw_fraction=0.75, step_overhead_s_per_layer=10e-6,
               prefill_mfu=0.5, max_batch=256, kv_memory_fraction=0.4, tensor_parallel=True, gathers_zero3=False,
               source="paged KV cache, continuous batching up to max_num_seqs 256, CUDA graphs; colocated "
                      "with the trainer (gpu_memory_utilization ~0.4-0.5 in OpenRLHF/verl recipes)"),
        Engine("deepspeed-hybrid", "DeepSpeed-Chat Hybrid Engine", bw_fraction=0.6,
               step_overhead_s_per_layer=30e-6, prefill_mfu=0.4, tensor_parallel=True, gathers_zero3=False,
               source="DeepSpeed-Inference kernels with tensor parallelism in the generation phase "
                      "(Yao et al. 2023, DeepSpeed-Chat §4); the training batch as the generation batch"),
    ]
}
DEFAULT_ENGINE = "transformers"


@dataclass(frozen=True)
class Work:
    """What the run processes: `examples` data rows per epoch, each sequence `seq_len` tokens on
    average (None: the request's seq_len), for `epochs` epochs; `source` says where the numbers
    came from (a tokenizer count of a file, a bytes estimate, --tokens, rows x length)."""

    examples: int
    seq_len: int | None = None
    epochs: float = 1.0
    source: str = "given"


def work_from_tokens(tokens: int, req, epochs: float = 1.0, source: str = "--tokens") -> Work:
    """Work for `tokens` training tokens per epoch: examples = tokens / (sequences per example x seq_len)
    of the method's first stage (a DPO pair is two sequences)."""
    if tokens <= 0:
        raise PlannerError("tokens", f"must be a positive number of tokens, got {tokens!r}")
    profile = get_profile(req.method)
    first = get_profile(profile.stages[0]) if profile.stages else profile
    per = _sequences(req, first) * req.seq_len
    return Work(examples=max(1, round(tokens / per)), seq_len=req.seq_len, epochs=epochs, source=source)


# --- prices -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceTable:
    """Indicative prices per GPU-hour: gpu id -> price; where they come from and when."""

    prices: dict[str, float]
    currency: str = "USD"
    as_of: str = ""
    source: str = ""
    path: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def get(self, gpu: str) -> float | None:
        return self.prices.get(gpu)


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The price table: planner/prices.yaml, or the file given (--price-file). YAML (or JSON) with
    `prices: {gpu id: number | {usd_per_gpu_hour: number, source: text}}` and optional currency,
    as_of, source. GPU names are matched as the catalogue matches them ("H100" is H100-80GB)."""
    return _load_prices(str(path or PRICES_FILE))


@lru_cache(maxsize=16)
def _load_prices(path: str) -> PriceTable:
    import yaml  # lazily: `import planner` parses no YAML

    p = Path(path)
    try:
        if not p.is_file():
            raise PlannerError("price_file", f"{path}: not a file")
        if p.stat().st_size > 1_000_000:
            raise PlannerError("price_file", f"{path}: over 1 MB; a price table is a few lines")
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PlannerError("price_file", f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
        raise PlannerError("price_file", f"{path}: expected a mapping with 'prices: {{gpu: price per GPU-hour}}'")
    prices, notes = {}, {}
    for name, value in doc["prices"].items():
        src = ""
        if isinstance(value, dict):
            src = str(value.get("source", ""))
            value = value.get("per_gpu_hour", value.get("usd_per_gpu_hour"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PlannerError("price_file", f"{path}: price of {name!r} must be a number >= 0, got {value!r}")
        gid = get_gpu(str(name)).id
        prices[gid] = float(value)
        if src:
            notes[gid] = src
    return PriceTable(prices, str(doc.get("currency", "USD")), str(doc.get("as_of", "")), str(doc.get("source", "")),
                      path, notes)


# --- copies and shapes ---------------------------------------------------------------------------------


def _sequences(req, profile: MethodProfile) -> int:
    """Sequences one example trains on: the profile's sequences_per_example, or its completions per
    prompt when it samples more (GRPO's G; online DPO's two completions are its pair)."""
    gens = req.num_generations or profile.default_generations
    return max(gens, profile.sequences_per_example)


def flop_copies(req, profile: MethodProfile | None = None) -> list[tuple[flops.CopyFlops, str]]:
    """The copies that compute in a stage, from its profile: (CopyFlops, "every_epoch" | "once").
    A copy dropped from memory by an option that keeps its compute (_STILL_COMPUTES) stays: under
    LoRA the reference forward runs through the policy with its adapter off."""
    from planner.estimate import _active_options, _copy_model, validate

    base = validate(req)
    profile = profile or get_profile(req.method)
    opts = _active_options(req, profile)
    out = []
    for c in profile.copies:
        hit = [o for o in c.dropped_by if o in opts]
        if hit and hit[0] not in _STILL_COMPUTES:
            continue
        when = _STILL_COMPUTES[hit[0]] if hit else "every_epoch"
        model = base if hit and hit[0] == "lora" else _copy_model(c.role, req, base)
        lora = req.lora_rank if (req.lora_rank and c.peft and c.trainable) else None
        out.append((flops.CopyFlops(c.role, model, c.trainable, c.scalar_head, lora, req.lora_targets), when))
    return out


def _generation_shape(req, profile: MethodProfile, seq_len: int) -> tuple[int, int, int]:
    """(contexts per example, prompt tokens, decoded tokens per context) of a generation phase, from
    the profile: a context is generated_context_seq_lens x seq_len + generated_context_completions x
    completion long, of which (1 + generated_context_completions) completions are decoded."""
    completion = min(req.completion_len or req.seq_len // 2, seq_len)
    per_context = 1 + profile.generated_context_completions
    contexts = max(1, _sequences(req, profile) // per_context)
    prompt = max(1, profile.generated_context_seq_lens * seq_len - completion)
    return contexts, prompt, per_context * completion


# --- time of one stage --------------------------------------------------------------------------------


@dataclass
class _Setup:
    gpu: GPUSpec
    world: int
    gpus_per_node: int
    nodes: int
    mfu: float
    engine: Engine

    @property
    def peak(self) -> float:
        return self.gpu.bf16_tflops * 1e12

    @property
    def bw(self) -> float:
        return self.gpu.hbm_gbps * 1e9

    @property
    def link(self) -> float:
        """Bandwidth of a collective over all GPUs: NVLink inside one node, the network across nodes."""
        return (self.gpu.interconnect_gbps if self.nodes == 1 else self.gpu.network_gbps) * 1e9


def _generation_seconds(req, profile, setup: _Setup, engine: Engine, copies, examples: float, seq_len: int) -> dict:
    """Generation of `examples` examples over all GPUs with `engine`: prefill (compute bound) and decode
    (bandwidth bound per step), batched as the engine batches."""
    gen = copies[0][0]  # the first copy that computes generates (the profile's convention)
    m = gen.model
    prec = terms.PRECISIONS[req.precision]
    contexts_per_ex, prompt, new = _generation_shape(req, profile, seq_len)
    weights = terms.weight_bytes(m, prec.act, req.quant if gen.lora_rank else None)
    usable = setup.gpu.usable_bytes
    tp = 1
    if engine.tensor_parallel:
        while weights / tp > 0.5 * usable and tp < min(setup.gpus_per_node, 8):
            tp *= 2
    instances = max(1, setup.world // tp)
    contexts = math.ceil(examples * contexts_per_ex / instances)
    kv_per_token = terms.kv_cache_bytes(m, 1, 1, prec.act)
    if engine.max_batch:
        kv_room = max(engine.kv_memory_fraction * usable * tp - weights, 0)
        fit = max(1, int(kv_room // (kv_per_token * (prompt + new))))
        batch = max(1, min(engine.max_batch, contexts, fit))
    else:
        per_ex = (req.num_generations or profile.default_generations) if profile.kv_cache_holds_all_generations else 1
        batch = max(1, min((req.rollout_batch_size or req.batch_size) * per_ex * tp, contexts))
    batches = math.ceil(contexts / batch)
    link = setup.link
    gather_step = 0.0
    if req.zero == 3 and setup.world > 1 and engine.gathers_zero3:
        gather_step = weights * (setup.world - 1) / setup.world / link
    gather_batch = weights * (setup.world - 1) / setup.world / link if (req.zero == 3 and setup.world > 1
                                                                          and not engine.gathers_zero3) else 0.0
    prefill = batch * flops.prefill_flops(m, prompt) / tp / (setup.peak * engine.prefill_mfu)
    avg_ctx = prompt + new / 2
    step_bytes = (weights + batch * kv_per_token * avg_ctx) / tp
    step_flops = batch * (flops.forward_flops_per_token(m, int(avg_ctx))) / tp
    t_mem = step_bytes / (setup.bw * engine.bw_fraction)
    t_cmp = step_flops / (setup.peak * engine.prefill_mfu)
    step = max(t_mem, t_cmp) + engine.step_overhead_s_per_layer * m.num_layers + gather_step
    seconds = batches * (prefill + new * step + gather_batch)
    return {
        "engine": engine.id, "seconds": seconds, "batch": batch, "tensor_parallel": tp, "batches_per_instance": batches,
        "decode_step_seconds": step, "decode_bound": "memory" if t_mem >= t_cmp else "compute",
        "prefill_seconds_per_batch": prefill, "prompt_tokens": prompt, "new_tokens_per_context": new,
        "contexts_per_example": contexts_per_ex, "zero3_gather_seconds_per_step": gather_step,
        "flops": examples * sum(flops.generation_phase_flops(m, contexts_per_ex, prompt, new)),
    }


def _stage_time(req, stage: str, work: Work, setup: _Setup, plan_copies: list[dict], update_epochs: int | None) -> dict:
    profile = get_profile(stage)
    sreq = req.replace(method=stage)
    copies = flop_copies(sreq, profile)
    seq_len = work.seq_len or req.seq_len
    seqs = _sequences(sreq, profile)
    examples = work.examples * work.epochs
    upd = update_epochs or getattr(profile, "update_epochs", 1)
    rate = setup.world * setup.peak * setup.mfu
    prec = terms.PRECISIONS[req.precision]
    phases, total = [], 0.0
    steps = 0
    if "forward_backward" in profile.phases:
        steps = math.ceil(examples * upd * seqs / profile.sequences_per_example / (req.batch_size * setup.world))
    for name in profile.phases:
        row: dict[str, Any] = {"name": name}
        if name == "generation":
            g = _generation_seconds(sreq, profile, setup, setup.engine, copies, examples, seq_len)
            row.update(flops=g["flops"], seconds=g["seconds"], bound=f"decode: {g['decode_bound']}", detail=g)
            row["by_engine"] = {e.id: _generation_seconds(sreq, profile, setup, setup.engine if e.id == setup.engine.id
                                                          else e, copies, examples, seq_len)["seconds"]
                                for e in ENGINES.values()}
        elif name == "scoring":
            every = [c for c, when in copies if when == "every_epoch"]
            once = [c for c, when in copies if when == "once"]
            f = examples * flops.scoring_phase_flops(every, seqs, seq_len, profile.scores_trainable_copies)
            f += work.examples * flops.scoring_phase_flops(once, seqs, seq_len, profile.scores_trainable_copies)
            row.update(flops=f, seconds=f / rate, bound="compute")
        elif name == "forward_backward":
            f = examples * upd * flops.forward_backward_phase_flops([c for c, _ in copies], seqs, seq_len, req.grad_ckpt)
            compute = f / rate
            # Gradients all-reduced (ring: 2 (W-1)/W of them per GPU) each step; ZeRO-3 also gathers
            # every weight for the forward and again for the backward (Rajbhandari et al. 2020 §7).
            comm = 0.0
            if setup.world > 1:
                ring = 2 * (setup.world - 1) / setup.world
                grad_bytes = sum(c.trainable_params for c in _trainables(plan_copies)) * prec.grad
                comm = ring * grad_bytes
                if req.zero == 3:
                    comm += 2 * (setup.world - 1) / setup.world * sum(
                        c["params"] * prec.weight for c in plan_copies)
                comm = steps * comm / setup.link
            row.update(flops=f, seconds=max(compute, comm), bound="compute" if compute >= comm else "communication",
                       compute_seconds=compute, communication_seconds=comm)
        elif name == "optimizer_step":
            per_gpu = sum(c["weights_bytes"] + c["gradients_bytes"] + c["optimizer_states_bytes"]
                          for c in plan_copies if c["trainable"])
            sec = 2 * per_gpu / (setup.bw * OPTIMIZER_BW_FRACTION)
            if req.offload:
                host = sum(c.trainable_params for c in _trainables(plan_copies)) * 12 / setup.world
                sec += 2 * host / HOST_BW
            row.update(flops=0, seconds=steps * sec, bound="memory")
        else:  # a phase this module does not know: no time, said so
            row.update(flops=0, seconds=0.0, bound="not modelled")
        total += row["seconds"]
        phases.append(row)
    return {
        "stage": stage, "examples": examples, "sequences_per_example": seqs, "seq_len": seq_len,
        "update_epochs": upd, "optimizer_steps": steps, "phases": phases, "seconds": total,
        "step_seconds": total / steps if steps else None,
        "tokens": examples * seqs * seq_len,
        "flops": sum(p["flops"] for p in phases),
    }


@dataclass
class _TrainableRow:
    trainable_params: int


def _trainables(plan_copies: list[dict]) -> list[_TrainableRow]:
    return [_TrainableRow(c["trainable_params"]) for c in plan_copies if c["trainable"]]


def device_spec(gpu: str | GPUSpec | None) -> GPUSpec:
    """A catalogue GPU, or "cpu": this machine's CPU as a pseudo-GPU (planner.hardware.host_cpu)."""
    if isinstance(gpu, GPUSpec):
        return gpu
    if str(gpu or "").strip().lower() == CPU_ID:
        return host_cpu()
    return get_gpu(gpu or "H100-80GB")


def efficiency(device: str, mfu: float | None = None, engine: str = DEFAULT_ENGINE) -> dict[str, Any]:
    """The factors a time estimate on `device` uses and where each came from: the MFU given (--mfu),
    else the calibration file's for this device (planner.calibration), else DEFAULT_MFU; the engine's
    decode bandwidth fraction, calibrated for our recipes' engine (transformers) where the file has one."""
    cal = calibration.factors_for(device)
    if mfu is not None:
        used, source = mfu, "given (--mfu)"
    elif cal["mfu"] is not None:
        used, source = cal["mfu"], cal["mfu_source"]
    else:
        used, source = DEFAULT_MFU, "default"
    bw, bw_source = ENGINES[engine].bw_fraction, "default"
    if engine == DEFAULT_ENGINE and cal["decode_bw_fraction"] is not None:
        bw, bw_source = cal["decode_bw_fraction"], cal["decode_bw_source"]
    return {"mfu": used, "mfu_source": source, "decode_bw_fraction": bw, "decode_bw_source": bw_source}


def factors_line(t: dict[str, Any]) -> str:
    """Which efficiency factors a time estimate used and where they came from, in one line (the CLI's
    text and the Plan page)."""
    return (f"MFU {t['mfu']:.3g}: {t['mfu_source']}; decode bandwidth {t['decode_bw_fraction']:.0%}: "
            f"{t['decode_bw_source']}")


def estimate_time(req, work: Work, gpu: str | GPUSpec | None = None, *, mfu: float | None = None,
                  engine: str = DEFAULT_ENGINE, prices: PriceTable | None = None, update_epochs: int | None = None,
                  plan=None) -> dict[str, Any]:
    """Time and cost of `work` with the request's setup on `gpu` (default the request's GPU; "cpu": this
    machine's CPU): per stage and phase, wall seconds, GPU-hours and cost (None without a price). `plan`:
    the memory plan of this request, when the caller has it (its per-GPU copy sizes size the optimizer
    step). The MFU and decode bandwidth fraction: `mfu`, else calibrated for the device, else the
    defaults (efficiency(); the result's mfu_source and decode_bw_source say which)."""
    from planner.estimate import estimate

    g = device_spec(gpu or req.gpu)
    gid = g.id
    if engine not in ENGINES:
        raise PlannerError("engine", f"unknown generation engine {engine!r}; accepted: {', '.join(ENGINES)}")
    if mfu is not None and not 0 < mfu <= 1:
        raise PlannerError("mfu", f"must be in (0, 1], got {mfu!r}")
    if work.examples < 1 or not work.epochs > 0:
        raise PlannerError("work", "needs at least one example and epochs > 0")
    in_catalogue = gid in GPUS
    if plan is None or plan.gpu != (gid if in_catalogue else None):
        # a pseudo-device (the CPU) is not in the catalogue: the plan's copies without a GPU verdict
        plan = estimate(req.replace(gpu=gid if in_catalogue else None), with_min_gpus=False)
    eff = efficiency(gid, mfu, engine)
    eng = replace(ENGINES[engine], bw_fraction=eff["decode_bw_fraction"])
    setup = _Setup(g, req.gpus * req.nodes, req.gpus, req.nodes, eff["mfu"], eng)
    profile = get_profile(req.method)
    stages = profile.stages or (req.method,)
    plan_copies = {s["stage"]: s["copies"] for s in plan.stages} if plan.stages else {req.method: plan.copies}
    rows = [_stage_time(req, s, work, setup, plan_copies.get(s, plan.copies), update_epochs) for s in stages]
    wall = sum(r["seconds"] for r in rows)
    gpu_hours = wall * setup.world / 3600
    prices = prices or load_prices()
    price = prices.get(gid)
    by_engine = {}
    for e in ENGINES:
        gen_now = sum(p["seconds"] for r in rows for p in r["phases"] if p["name"] == "generation")
        gen_e = sum(p.get("by_engine", {}).get(e, 0.0) for r in rows for p in r["phases"] if p["name"] == "generation")
        if gen_now:
            by_engine[e] = {"generation_seconds": gen_e, "wall_seconds": wall - gen_now + gen_e,
                            "cost": None if price is None else (wall - gen_now + gen_e) * setup.world / 3600 * price}
    return {
        "gpu": gid, "gpus": setup.world, "gpus_per_node": req.gpus, "nodes": req.nodes, "zero": req.zero,
        "fits": plan.fits, "engine": engine, **eff, "peak_flops": setup.peak, "memory_bandwidth": setup.bw,
        "work": {**asdict(work), "tokens": sum(r["tokens"] for r in rows[:1])},
        "stages": rows, "wall_seconds": wall, "wall_hours": wall / 3600, "gpu_hours": gpu_hours,
        "price_per_gpu_hour": price, "currency": prices.currency, "cost": None if price is None else gpu_hours * price,
        "by_engine": by_engine,
    }


# --- per GPU type, and the cheapest setup ---------------------------------------------------------------

COUNTS = (1, 2, 4, 8, 16, 32, 64)
SHARDINGS = (0, 2, 3)


def by_gpu_type(req, work: Work, plan, **kw) -> list[dict[str, Any]]:
    """Each GPU type at the fewest GPUs that fit (the plan's min_gpus_detail): time and cost."""
    out = []
    for gid, d in plan.min_gpus_detail.items():
        if d is None:
            out.append({"gpu": gid, "count": None, "fits": False})
            continue
        n = d["count"]
        r = req.replace(gpu=gid, gpus=min(n, 8), nodes=max(1, n // 8), zero=d["zero"])
        t = estimate_time(r, work, **kw)
        out.append(_summary(t, n))
    return out


def _summary(t: dict, n: int) -> dict[str, Any]:
    return {"gpu": t["gpu"], "count": n, "zero": t["zero"], "fits": t["fits"], "wall_hours": t["wall_hours"],
            "gpu_hours": t["gpu_hours"], "cost": t["cost"]}


def cheapest_setup(req, work: Work, within_hours: float | None = None, *, gpus: list[str] | None = None,
                   prices: PriceTable | None = None, **kw) -> dict[str, Any]:
    """The cheapest setup (GPU type x count x sharding) that fits in memory and finishes within
    `within_hours` (any time when None); ties go to the faster. Counts 1-64 (powers of two; over 8 as
    nodes of 8), sharding DDP, ZeRO-2 or ZeRO-3; GPU types with a price. Also every candidate that fits
    (the app's cost-vs-time chart)."""
    from planner.estimate import estimate

    prices = prices or load_prices()
    cands = []
    for gid in gpus or list(GPUS):
        if prices.get(gid) is None:
            continue
        for n in COUNTS:
            for z in SHARDINGS:
                if n == 1 and z:
                    continue
                r = req.replace(gpu=gid, gpus=min(n, 8), nodes=max(1, n // 8), zero=z, offload=None)
                try:
                    plan = estimate(r, with_min_gpus=False)
                except PlannerError:
                    continue
                if not plan.fits:
                    continue
                t = estimate_time(r, work, prices=prices, plan=plan, **kw)
                cands.append(_summary(t, n))
                break  # the least sharding that fits at this count is the fastest
    ok = [c for c in cands if within_hours is None or c["wall_hours"] <= within_hours]
    best = min(ok, key=lambda c: (c["cost"], c["wall_hours"])) if ok else None
    return {"within_hours": within_hours, "cheapest": best, "candidates": cands}


def time_block(req, work: Work, plan, *, within_hours: float | None = None, price_file: str | None = None,
               mfu: float | None = None, engine: str = DEFAULT_ENGINE, update_epochs: int | None = None) -> dict:
    """The `time` block of `alignplan plan --json` (docs/time-cost.md): this setup's time and cost,
    each GPU type at its fewest GPUs, and the cheapest setup within the hours given."""
    prices = load_prices(price_file)
    kw = {"mfu": mfu, "engine": engine, "update_epochs": update_epochs}
    gpu = req.gpu or "H100-80GB"
    this = estimate_time(req.replace(gpu=gpu), work, prices=prices, plan=plan if plan.gpu else None, **kw)
    cheap = cheapest_setup(req, work, within_hours, prices=prices, **kw)
    return {
        **this,
        "by_gpu_type": by_gpu_type(req, work, plan, prices=prices, **kw) if plan.min_gpus_detail else [],
        "cheapest": cheap["cheapest"], "within_hours": within_hours, "candidates": cheap["candidates"],
        "prices": {"file": prices.path, "as_of": prices.as_of, "source": prices.source, "indicative": True},
        "assumptions": [
            f"MFU {this['mfu']:.2f} of the dense bf16 peak for forward/backward/scoring ({this['mfu_source']})",
            f"generation with {ENGINES[engine].name}: {this['decode_bw_fraction']:.0%} of the memory bandwidth per "
            f"decode step ({this['decode_bw_source']}) plus per-step overhead; by_engine says what another engine "
            "would take",
            "one optimizer step per micro-batch (gradient_accumulation_steps 1); communication overlapped with compute",
            "prices are indicative on-demand list prices per GPU-hour; use --price-file for yours",
        ],
    }


__all__ = ["DEFAULT_ENGINE", "DEFAULT_MFU", "ENGINES", "Engine", "PriceTable", "Work", "by_gpu_type",
           "cheapest_setup", "device_spec", "efficiency", "estimate_time", "factors_line", "flop_copies", "load_prices", "time_block", "work_from_tokens"]
