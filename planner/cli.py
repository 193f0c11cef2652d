"""`alignplan plan`, `alignplan models`, `alignplan gpus`: the planner from the shell.

--json prints planner.Plan.to_dict() (one plan) or {"plans": {method: plan}} (--compare); the
schema is documented in docs/memory.md ("JSON output").
"""

from __future__ import annotations

import argparse
import json
import sys

from planner.errors import PlannerError
from planner.estimate import COMPONENTS, PlanRequest, compare, estimate
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
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence, prompt + completion (default 1024)")
    p.add_argument("--batch-size", type=int, default=8, help="per-GPU micro-batch (default 8, TRL's)")
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
    p.add_argument("--chunked-loss", action="store_true", help="chunked/fused cross-entropy (Liger)")
    p.add_argument("--precompute-ref", action="store_true", help="DPO/IPO: precompute reference log-probs")
    p.add_argument("--beta", type=float, help="KL coefficient for grpo/rloo (0 drops the reference)")
    p.add_argument("--num-generations", type=int, help="completions per prompt (grpo/rloo/online-dpo)")
    p.add_argument("--reward-model", help="'rule' for a reward function, or a model; default: the policy's size")
    p.add_argument("--value-model", help="'shared' for a value head on the policy, or a model")
    p.add_argument("--judge-model", help="'api' for a remote judge, or a model")
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
        gpus=args.gpus, nodes=args.nodes, chunked_loss=args.chunked_loss, precompute_ref=args.precompute_ref,
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
        + f", {plan.world_size} GPU(s)",
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


def run_plan(args: argparse.Namespace) -> int:
    req = request_from_args(args)
    if args.compare:
        methods = [m.strip() for m in args.compare.split(",") if m.strip()]
        plans = compare(req, methods)
        if args.json:
            json.dump({"plans": {m: p.to_dict() for m, p in plans.items()}}, sys.stdout, indent=2)
            print()
        else:
            print("\n\n".join(format_plan(p) for p in plans.values()))
            print("\n  side by side (GiB per GPU): " + ", ".join(f"{m} {_gib(p.peak_bytes_per_gpu)}" for m, p in plans.items()))
        return 0
    plan = estimate(req)
    if args.json:
        json.dump(plan.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(format_plan(plan))
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
