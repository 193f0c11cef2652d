"""The planner next to the estimators it means to beat, on the same catalogue configs.

    python bench/peers.py                      # writes bench/results/peers.md and peers.json
    PYTHONPATH=/path/to/deepspeed python bench/peers.py   # adds DeepSpeed's own estimators

Each peer is run through its own code, not a re-typed formula:
  accelerate estimate-memory  accelerate.commands.estimate: calculate_maximum_sizes() of the meta-device
                              AutoModel (no LM head, as create_empty_model builds it) of the catalogue
                              config.json, estimate_training_usage()
                              for "float16" mixed precision; "Training using Adam" is the largest of
                              its components, as the CLI prints it (the hub lookup is the only step
                              skipped: this machine cannot reach it).
  DeepSpeed                   deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs
                              and stage3.estimate_zero3_model_states_mem_needs (model states of one
                              model, per GPU, no offload), when `import deepspeed` works.
  alignplan                   planner.estimate: the peak per GPU over every phase and every copy of
                              the method, and its model-states part (weights + gradients + optimizer
                              states), bf16, seq 1024, micro-batch 8, gradient checkpointing (the
                              runner's defaults).
None of the peers knows the method: their SFT, DPO and PPO figures are the same number.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import planner  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GIB = 2**30
MODELS = ("meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B", "mistralai/Mistral-7B-v0.1", "meta-llama/Llama-3.1-70B")
METHODS = ("sft", "dpo", "ppo")
# (label, GPUs, ZeRO stage): one GPU without sharding, and one 8-GPU node fully sharded.
SETUPS = (("1 x H100-80GB", 1, 0), ("8 x H100-80GB, ZeRO-3", 8, 3))


def accelerate_training_bytes(model_id: str) -> tuple[int, int]:
    """(model bytes in fp32, "Training using Adam" bytes) from accelerate's estimate-memory functions."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes
    from transformers import AutoConfig, AutoModel

    cfg = dict(planner.load_model(model_id).config)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, **{k: v for k, v in cfg.items() if k != "architectures"})
    with init_empty_weights():
        # as accelerate's create_empty_model does for a transformers model: AutoModel, the backbone
        # without the LM head
        model = AutoModel.from_config(config, dtype=torch.float32)
    total_size, _largest = calculate_maximum_sizes(model)
    usage = estimate_training_usage(total_size, "float16")
    return int(total_size), int(max(usage.values()))


def deepspeed_bytes(spec: planner.ModelSpec, gpus: int, zero: int) -> int | None:
    """DeepSpeed's per-GPU model-states estimate (ZeRO-2 for one GPU, ZeRO-3 for a node), or None."""
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    except Exception:  # not installed, or no usable accelerator backend
        return None
    if zero == 3:
        kinds = spec.params_by_kind()
        layer = (spec.params_total - kinds.get("embedding", 0) - spec.lm_head_params) // spec.num_layers
        largest = max(layer, kinds.get("embedding", 0), spec.lm_head_params)  # DeepSpeed's "largest layer"
        _cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total_params=spec.params_total, largest_layer_params=largest, num_gpus_per_node=gpus, num_nodes=1,
            cpu_offload=False, cpu_offload_params=False, zero_init=True)
        return int(gpu)
    _cpu, gpu = estimate_zero2_model_states_mem_needs(total_params=spec.params_total, num_gpus_per_node=gpus,
                                                      num_nodes=1, cpu_offload=False)
    return int(gpu)


def alignplan_bytes(model_id: str, method: str, gpus: int, zero: int) -> dict[str, int | str]:
    plan = planner.estimate(planner.PlanRequest(model_id, method=method, gpu="H100-80GB", gpus=gpus, zero=zero),
                            with_min_gpus=False)
    peak = next(p for p in plan.phases if p.get("is_peak", p["name"] == plan.peak_phase))
    states = sum(peak["components"][k] for k in ("weights", "gradients", "optimizer_states"))
    return {"peak": int(plan.peak_bytes_per_gpu), "model_states": int(states), "copies": len(plan.copies),
            "peak_phase": plan.peak_phase}


def rows() -> list[dict]:
    out = []
    for model_id in MODELS:
        spec = planner.load_model(model_id)
        acc_model, acc_train = accelerate_training_bytes(model_id)
        for label, gpus, zero in SETUPS:
            ds = deepspeed_bytes(spec, gpus, zero)
            for method in METHODS:
                ours = alignplan_bytes(model_id, method, gpus, zero)
                out.append({
                    "model": model_id, "params": spec.params_total, "setup": label, "method": method,
                    # accelerate has no sharding: the same figure for every setup
                    "accelerate_model_bytes": acc_model, "accelerate_training_bytes": acc_train,
                    "deepspeed_model_states_bytes": ds,
                    "alignplan_peak_bytes": ours["peak"], "alignplan_model_states_bytes": ours["model_states"],
                    "alignplan_copies": ours["copies"], "alignplan_peak_phase": ours["peak_phase"],
                })
    return out


def gib(n: int | None) -> str:
    return "–" if n is None else f"{n / GIB:.1f}"


def write(rows_: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version()}
    for name in ("accelerate", "deepspeed", "transformers"):
        try:
            meta[name] = __import__(name).__version__
        except Exception:
            meta[name] = None
    (RESULTS / "peers.json").write_text(json.dumps({"meta": meta, "rows": rows_}, indent=2) + "\n")
    lines = [
        "# The planner next to accelerate estimate-memory and DeepSpeed's ZeRO estimators",
        "",
        f"Written by `python bench/peers.py` on {meta['when']} (accelerate {meta['accelerate']}, "
        f"DeepSpeed {meta['deepspeed'] or 'not installed'}, transformers {meta['transformers']}). GiB per GPU.",
        "",
        "- **accelerate**: \"Training using Adam\" for float16, as `accelerate estimate-memory` prints it: the",
        "  largest of its components (model, gradients, optimizer, step), for one model without its LM head",
        "  (`AutoModel`), batch size 1, no activations, no sharding.",
        "- **DeepSpeed**: model states of one model per GPU (ZeRO-2 formula for one GPU, ZeRO-3 for eight), no",
        "  activations.",
        "- **alignplan**: the peak per GPU over the method's phases and copies (bf16, seq 1024, micro-batch 8,",
        "  checkpointing), and the model states inside that peak.",
        "",
        "| model | setup | method | accelerate | DeepSpeed | alignplan model states | alignplan peak | copies | peak phase |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows_:
        lines.append(
            f"| {r['model']} | {r['setup']} | {r['method']} | {gib(r['accelerate_training_bytes'])} | "
            f"{gib(r['deepspeed_model_states_bytes'])} | {gib(r['alignplan_model_states_bytes'])} | "
            f"{gib(r['alignplan_peak_bytes'])} | {r['alignplan_copies']} | {r['alignplan_peak_phase']} |")
    (RESULTS / "peers.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    data = rows()
    write(data)
    print((RESULTS / "peers.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
