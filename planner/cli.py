"""`alignplan plan`, `alignplan models`, `alignplan gpus`: the planner from the shell.

--json prints planner.Plan.to_dict() (one plan) or {"plans": {method: plan}} (--compare); the
schema is documented in docs/memory.md ("JSON output"). With --dataset FILE, --tokens N or --examples N
each plan also carries a `time` block (step and wall time per stage, GPU-hours, cost, each GPU type,
the cheapest setup within --within-hours): planner.timecost, documented in docs/time-cost.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from planner.errors import PlannerError
from planner.estimate import COMPONENTS, DEFAULT_BATCH_SIZE, DEFAULT_SEQ_LEN, PlanRequest, compare, estimate
from planner.hardware import GIB, GPUS
from planner.methods import METHOD_IDS, get_profile
from planner.models import catalogue


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-GPU memory of an alignment method", description=__doc__)
    p.add_argument("--model", required=True, help="catalogue name, config.json path, model dir or hub id")
    p.add_argument("--method", default="dpo", help=f"one of {', '.join(METHOD_IDS)} (default dpo)")
    p.add_argument("--compare", help="comma-separated methods to plan side by side, e.g. dpo,ppo,orpo")
    p.add_argument("--gpu", help=f"GPU type: {', '.join(GPUS)}")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per node (default 1)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN,
                   help=f"tokens per sequence, prompt + completion (default {DEFAULT_SEQ_LEN}, the runner's)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"per-GPU micro-batch (default {DEFAULT_BATCH_SIZE}, the runner's: TRL's)")
    p.add_argument("--precision", default="bf16-kahan",
                   help="bf16-kahan | bf16 | amp-bf16 | fp32 (default bf16-kahan, the runners' default on a GPU)")
    p.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank")
    p.add_argument("--quant", help="nf4 | int8: quantized frozen base (needs --lora-rank)")
    p.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True,
                   help="gradient checkpointing (default on, TRL's default)")
    p.add_argument("--optimizer", default="adamw", help="adamw | adamw-8bit | adafactor | sgd")
    p.add_argument("--zero", type=int, default=0, help="ZeRO stage 0-3 (3 = FSDP full shard)")
    p.add_argument("--engine", default="deepspeed", help="deepspeed | fsdp (implements --zero)")
    p.add_argument("--offload", help="optimizer | params (CPU offload)")
    p.add_argument("--loss", help="fused | chunked | materialised: how the loss reads the LM head (default: the "
                   "method's runner, TRL 1.16's fused LM head for sft/dpo/ipo/kto/grpo/rloo; docs/memory.md)")
    p.add_argument("--chunked-loss", action="store_true", help="the older switch for --loss fused")
    p.add_argument("--activation-offload", action="store_true",
                   help="saved activations in host memory, two layers' on the GPU (torchtune's activation offloading)")
    p.add_argument("--optimizer-in-backward", action="store_true",
                   help="each gradient freed after its own optimizer step (torchtune's optimizer_in_bwd; one GPU)")
    p.add_argument("--kbit-upcast", action=argparse.BooleanOptionalAction, default=None,
                   help="with --quant: the non-quantized parameters in fp32, as peft's prepare_model_for_kbit_training "
                        "makes them (default: on, what the runner does)")
    p.add_argument("--precompute-ref", action="store_true", help="DPO/IPO: precompute reference log-probs")
    p.add_argument("--beta", type=float, help="KL coefficient for grpo/rloo (0 drops the reference)")
    p.add_argument("--num-generations", type=int, help="completions per prompt (grpo/rloo/online-dpo)")
    p.add_argument("--reward-model", help="'rule' for a reward function, or a model; default: the policy's size")
    p.add_argument("--value-model", help="'shared' for a value head on the policy, or a model")
    p.add_argument("--judge-model", help="'api' for a remote judge, or a model")
    t = p.add_argument_group("time and cost (docs/time-cost.md)")
    t.add_argument("--dataset", help="data file (JSONL/JSON/CSV): count its rows and tokens (the model's "
                   "tokenizer when it is on this machine, else a bytes/4 estimate)")
    t.add_argument("--tokens", type=int, help="training tokens per epoch (instead of --dataset)")
    t.add_argument("--examples", type=int, help="data rows per epoch (pairs, prompts, texts), each of "
                   "--seq-len tokens per sequence (instead of --dataset)")
    t.add_argument("--epochs", type=float, default=1.0, help="epochs over the data (default 1)")
    t.add_argument("--price-file", help="YAML/JSON price table per GPU-hour (default planner/prices.yaml, indicative)")
    t.add_argument("--within-hours", type=float, help="find the cheapest setup that finishes within this many hours")
    t.add_argument("--mfu", type=float, help="model FLOPs utilisation of training (default 0.35)")
    t.add_argument("--generation-engine", default="transformers",
                   help="transformers (our recipes) | vllm | deepspeed-hybrid (rollouts of RL methods)")
    p.add_argument("--traced", action="store_true",
                   help="also build the real model under fake tensors (no memory) and trace the method's step "
                        "with torch's MemTracker; prints analytic and traced side by side (docs/memory.md)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="--traced: let transformers run the model's own code (a config with auto_map)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_plan)

    m = sub.add_parser("models", help="list the built-in model catalogue")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_models)
    g = sub.add_parser("gpus", help="list the GPU catalogue")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=run_gpus)


def request_from_args(args: argparse.Namespace) -> PlanRequest:
    return PlanRequest(
        model=args.model, method=args.method, seq_len=args.seq_len, batch_size=args.batch_size,
        precision=args.precision, lora_rank=args.lora_rank, quant=args.quant, grad_ckpt=args.grad_ckpt,
        optimizer=args.optimizer, zero=args.zero, engine=args.engine, offload=args.offload, gpu=args.gpu,
        gpus=args.gpus, nodes=args.nodes, loss=args.loss, chunked_loss=args.chunked_loss, precompute_ref=args.precompute_ref,
        activation_offload=args.activation_offload, optimizer_in_backward=args.optimizer_in_backward,
        kbit_upcast=args.kbit_upcast,
        beta=args.beta, num_generations=args.num_generations, reward_model=args.reward_model,
        value_model=args.value_model, judge_model=args.judge_model,
    )


def _gib(b: int | None) -> str:
    return "-" if b is None else f"{b / GIB:,.1f}"


def format_plan(plan) -> str:
    r = plan.request
    lines = [
        f"{get_profile(plan.method).name} on {plan.model['id']} ({plan.params_total:,} params)",
        f"  seq_len {r['seq_len']}, micro-batch {r['batch_size']}, precision {r['precision']}"
        + (f", LoRA r={r['lora_rank']}" if r["lora_rank"] else "")
        + (f", {r['quant']}" if r["quant"] else "")
        + (", grad ckpt" if r["grad_ckpt"] else "")
        + (f", ZeRO-{r['zero']}" if r["zero"] else "")
        + f", {plan.world_size} GPU(s), loss {plan.loss}",
        "",
        f"  {'copy':<10} {'params':>16} {'trainable':>16} {'weights':>9} {'grads':>9} {'optim':>9}  (GiB per GPU)",
    ]
    for c in plan.copies:
        lines.append(f"  {c['role']:<10} {c['params']:>16,} {c['trainable_params']:>16,} {_gib(c['weights_bytes']):>9} "
                     f"{_gib(c['gradients_bytes']):>9} {_gib(c['optimizer_states_bytes']):>9}")
    lines += ["", f"  {'phase':<28}" + "".join(f"{c[:9]:>10}" for c in COMPONENTS) + f"{'total':>10}"]
    for ph in plan.phases:
        name = (ph["stage"] + ":" if plan.stages else "") + ph["name"] + (" *" if ph["is_peak"] else "")
        lines.append(f"  {name:<28}" + "".join(f"{_gib(ph['components'][c]):>10}" for c in COMPONENTS)
                     + f"{_gib(ph['total_bytes']):>10}")
    lines += ["", f"  peak per GPU: {_gib(plan.peak_bytes_per_gpu)} GiB ({plan.peak_phase})"]
    if plan.assumptions:
        lines.append(f"  {plan.assumptions}")
    if plan.host_bytes_per_node:
        lines.append(f"  host RAM for offload: {_gib(plan.host_bytes_per_node)} GiB per node")
    if plan.gpu:
        verdict = "fits" if plan.fits else "does NOT fit"
        lines.append(f"  {plan.gpu} ({_gib(plan.gpu_memory_bytes)} GiB): {verdict}, headroom {_gib(plan.headroom_bytes)} GiB")
    if plan.min_gpus:
        parts = []
        for gid, d in plan.min_gpus_detail.items():
            parts.append(f"{gid}: " + ("-" if d is None else f"{d['count']}" + (f" (ZeRO-{d['zero']})" if d["zero"] else "")))
        lines.append("  fewest GPUs that fit: " + ", ".join(parts))
    for n in plan.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def _work(args: argparse.Namespace, req: PlanRequest):
    """The work to time, from --dataset (counted here, in the CLI layer), --tokens or --examples; None
    when none is given."""
    from planner import timecost

    given = [x for x in ("dataset", "tokens", "examples") if getattr(args, x, None) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise PlannerError("dataset", "give one of --dataset, --tokens, --examples")
    if args.dataset:
        from planner.dataset_tokens import count_tokens

        c = count_tokens(args.dataset, args.model)
        completion = req.completion_len or req.seq_len // 2
        seq = round(c.mean_seq_len) + (completion if c.prompt_only else 0)
        return timecost.Work(examples=c.rows, seq_len=max(1, seq), epochs=args.epochs,
                             source=f"{args.dataset}: {c.rows:,} rows, {c.tokens:,} tokens ({c.counted_with})"
                             + (f"; + {completion} generated tokens per prompt" if c.prompt_only else ""))
    if args.tokens is not None:
        return timecost.work_from_tokens(args.tokens, req, args.epochs)
    if args.examples < 1:
        raise PlannerError("examples", f"must be at least 1, got {args.examples}")
    return timecost.Work(examples=args.examples, seq_len=req.seq_len, epochs=args.epochs,
                         source=f"--examples {args.examples} x --seq-len {req.seq_len}")


def _add_time(plan, req: PlanRequest, work, args: argparse.Namespace) -> None:
    from planner import timecost

    plan.time = timecost.time_block(req.replace(method=plan.method), work, plan, within_hours=args.within_hours,
                                    price_file=args.price_file, mfu=args.mfu, engine=args.generation_engine)


def _plan_dict(plan) -> dict:
    """Plan.to_dict(), plus the `time` block when one was computed (docs/time-cost.md)."""
    d = plan.to_dict()
    if getattr(plan, "time", None) is not None:
        d["time"] = plan.time
    return d


def format_time(t: dict) -> str:
    cur = t["currency"]
    def money(x):
        return "-" if x is None else f"{x:,.0f} {cur}"

    lines = [f"  time on {t['gpus']} x {t['gpu']} (ZeRO-{t['zero']}, MFU {t['mfu']:.2f}, generation: {t['engine']}); "
             f"work: {t['work']['source']}, {t['work']['epochs']:g} epoch(s)"]
    if t.get("mfu_source"):  # which efficiency factors were used, and where they came from
        from planner.timecost import factors_line

        lines.append(f"    {factors_line(t)}")
    for s in t["stages"]:
        step = f", {s['step_seconds']:.2f} s/step x {s['optimizer_steps']:,}" if s["step_seconds"] else ""
        lines.append(f"    {s['stage']}: {s['seconds'] / 3600:,.2f} h{step} ("
                     + ", ".join(f"{p['name']} {p['seconds'] / 3600:,.2f} h" for p in s["phases"]) + ")")
    lines.append(f"  total: {t['wall_hours']:,.2f} h wall, {t['gpu_hours']:,.1f} GPU-hours, {money(t['cost'])} "
                 f"(indicative prices {t['prices']['as_of']})")
    for e, v in t["by_engine"].items():
        if e != t["engine"]:
            lines.append(f"    with {e} generation: {v['wall_seconds'] / 3600:,.2f} h, {money(v['cost'])}")
    for r in t["by_gpu_type"]:
        if r.get("count"):
            lines.append(f"    {r['gpu']:<13} x{r['count']:<3} ZeRO-{r['zero']}: {r['wall_hours']:,.2f} h, "
                         f"{r['gpu_hours']:,.1f} GPU-h, {money(r['cost'])}")
    c = t["cheapest"]
    within = f" within {t['within_hours']:g} h" if t["within_hours"] else ""
    lines.append(f"  cheapest{within}: " + ("none fits" if not c else
                 f"{c['count']} x {c['gpu']} ZeRO-{c['zero']}: {c['wall_hours']:,.2f} h, {money(c['cost'])}"))
    return "\n".join(lines)


def run_traced(args: argparse.Namespace, req: PlanRequest) -> int:
    """--traced: the analytic plan and the traced step side by side (planner.traced); progress on stderr."""
    from planner.traced import check_traceable, format_side_by_side, side_by_side, trace_plan

    if args.compare:
        raise PlannerError("traced", "trace one method at a time: drop --compare")
    check_traceable(req, get_profile(req.method))
    try:
        plan = estimate(req)
    except PlannerError as e:  # a model the analytic planner cannot read may still be built by transformers
        if e.field != "model":
            raise
        plan = None
    traced = trace_plan(req, progress=lambda line: print(line, file=sys.stderr, flush=True),
                        trust_remote_code=args.trust_remote_code)
    if args.json:
        json.dump({**(_plan_dict(plan) if plan is not None else {}), "traced": side_by_side(plan, traced)},
                  sys.stdout, indent=2)
        print()
    else:
        print((format_plan(plan) + "\n\n" if plan is not None else "") + format_side_by_side(plan, traced))
    return 0


def run_plan(args: argparse.Namespace) -> int:
    req = request_from_args(args)
    if getattr(args, "traced", False):
        return run_traced(args, req)
    work = _work(args, req)
    if args.compare:
        methods = [m.strip() for m in args.compare.split(",") if m.strip()]
        plans = compare(req, methods)
        if work is not None:
            for p in plans.values():
                _add_time(p, req, work, args)
        if args.json:
            json.dump({"plans": {m: _plan_dict(p) for m, p in plans.items()}}, sys.stdout, indent=2)
            print()
        else:
            print("\n\n".join(format_plan(p) + (("\n" + format_time(p.time)) if work is not None else "")
                              for p in plans.values()))
            print("\n  side by side (GiB per GPU): " + ", ".join(f"{m} {_gib(p.peak_bytes_per_gpu)}" for m, p in plans.items()))
        return 0
    plan = estimate(req)
    if work is not None:
        _add_time(plan, req, work, args)
    if args.json:
        json.dump(_plan_dict(plan), sys.stdout, indent=2)
        print()
    else:
        print(format_plan(plan) + (("\n" + format_time(plan.time)) if work is not None else ""))
    return 0


def run_models(args: argparse.Namespace) -> int:
    rows = [m.summary() for m in catalogue()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for r in rows:
        moe = f" MoE {r['num_experts']}x{r['experts_per_token']}" if r["num_experts"] else ""
        print(f"{r['id']:<36} {r['params_total']:>17,}  {r['model_type']:<10} L{r['num_layers']} h{r['hidden_size']}{moe}")
    return 0


def run_gpus(args: argparse.Namespace) -> int:
    rows = [{"id": g.id, "name": g.name, "memory_bytes": g.memory_bytes, "memory_gib": round(g.memory_gib, 2)}
            for g in GPUS.values()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for r in rows:
        print(f"{r['id']:<14} {r['name']:<26} {r['memory_gib']:>7.1f} GiB")
    return 0


__all__ = ["add_subcommands", "format_plan", "request_from_args", "PlannerError"]
