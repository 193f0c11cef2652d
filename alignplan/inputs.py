"""The app's inputs: the sidebar's shared choices (model, GPU type, GPU count) and the Plan page's
setup, with their widget keys, defaults, accepted choices and limits, and the planner request built
from them. Plain data and one plain function: no Streamlit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import planner as _planner  # pure Python, never imports torch
from planner import terms as _planner_terms
from planner.estimate import LOSSES as _PLANNER_LOSSES
from runners.rundir import decide as _runner_decide  # plain data and functions: no torch at import

# Session-state keys of the sidebar widgets (app.py); every page reads them.
MODEL_KEY = "model"
GPU_KEY = "gpu"
GPUS_KEY = "gpus"

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_GPU = "H100-80GB"

# The sequence length and micro-batch a run gets when its hparams leave them out: the runner's
# (TRL's) defaults, which the planner's PlanRequest, `alignplan plan` and the advisor use too, so the
# Plan page, the Advise page and the CLI plan the same run.
DEFAULT_SEQ = _runner_decide.DEFAULT_MAX_LENGTH
DEFAULT_BATCH = _runner_decide.DEFAULT_BATCH_SIZE

# Model-size choices for the other copies (reward, value, judge): "" plans them at the policy's size
# (the planner's None); the special ids replace the copy altogether.
SAME_AS_POLICY = ""
REWARD_SPECIAL = ("rule",)  # a reward function instead of a reward model
VALUE_SPECIAL = ("shared",)  # a value head on the policy's backbone
JUDGE_SPECIAL = ("api",)  # a remote judge
COPY_MODEL_FIELDS = {"reward": "reward_model", "value": "value_model", "judge": "judge_model"}

# Plan page inputs: name -> default. The names are also the query-parameter names and, prefixed
# with "plan_", the widget keys. Every field the advisor's fixes or `alignplan plan` can change has one.
PLAN_DEFAULTS: dict[str, Any] = {
    "methods": ["dpo", "ppo"],
    "precision": "bf16-kahan",
    "adapter": "full",  # full | lora | qlora (nf4 base) | qlora8 (int8 base)
    "rank": 16,
    "seq": DEFAULT_SEQ,
    "batch": DEFAULT_BATCH,
    "ckpt": True,
    "optimizer": "adamw",
    "nodes": 1,
    "zero": 0,
    "engine": "deepspeed",
    "offload": "none",
    "preref": False,  # precompute the reference log-probs before training
    "loss": "",  # fused | chunked | materialised; "" = the method's runner default (the planner's None)
    "gens": 0,  # generations per prompt; 0 = the method's default
    "beta": None,  # KL coefficient (GRPO/RLOO; 0 drops the reference); None = the method's default
    "reward": SAME_AS_POLICY,
    "value": SAME_AS_POLICY,
    "judge": SAME_AS_POLICY,
}
SHARED_DEFAULTS: dict[str, Any] = {MODEL_KEY: DEFAULT_MODEL, GPU_KEY: DEFAULT_GPU, GPUS_KEY: 1}

ADAPTERS = ("full", "lora", "qlora", "qlora8")
ADAPTER_QUANT = {"qlora": "nf4", "qlora8": "int8"}  # the frozen base's quantisation (planner's quant)
PRECISIONS = tuple(_planner.PRECISIONS)  # the planner's ids, shared with the runners
OPTIMIZERS = tuple(_planner_terms.OPTIMIZERS)
OFFLOADS = ("none", "optimizer", "params")  # "none" stands for the planner's offload=None
ENGINES = ("deepspeed", "fsdp")
ZERO_STAGES = (0, 1, 2, 3)

# The same ranges as the widgets' (a value outside a widget's range would fail the widget).
MAX_GPUS_PER_NODE = _planner.MAX_GPUS_PER_NODE
INT_LIMITS = {"rank": (1, 1024), "seq": (1, 1_048_576), "batch": (1, 4096), "nodes": (1, 1024),
              GPUS_KEY: (1, MAX_GPUS_PER_NODE), "gens": (0, 1024)}
BOOL_INPUTS = ("ckpt", "preref")
LOSSES = ("", *_PLANNER_LOSSES)  # the planner's ids, "" first: the method's own default


def request_kwargs(values: Mapping[str, Any], model: str, gpu: str, gpus: int) -> dict[str, Any]:
    """planner.PlanRequest keyword arguments (without the method) for the plan inputs."""
    adapter = values.get("adapter", "full")
    offload = values.get("offload", "none")
    return {
        "model": model,
        "seq_len": int(values.get("seq", PLAN_DEFAULTS["seq"])),
        "batch_size": int(values.get("batch", PLAN_DEFAULTS["batch"])),
        "precision": values.get("precision", PLAN_DEFAULTS["precision"]),
        "lora_rank": int(values.get("rank", PLAN_DEFAULTS["rank"])) if adapter != "full" else None,
        "quant": ADAPTER_QUANT.get(adapter),
        "grad_ckpt": bool(values.get("ckpt", True)),
        "optimizer": values.get("optimizer", "adamw"),
        "zero": int(values.get("zero", 0)),
        "engine": values.get("engine", "deepspeed"),
        "offload": None if offload == "none" else offload,
        "gpu": gpu,
        "gpus": int(gpus),
        "nodes": int(values.get("nodes", 1)),
        "precompute_ref": bool(values.get("preref", False)),
        "loss": values.get("loss") or None,
        "num_generations": int(values.get("gens", 0)) or None,
        "beta": None if values.get("beta") is None else float(values["beta"]),
        **{field: values.get(name) or None for name, field in COPY_MODEL_FIELDS.items()},
    }


def plan_values(request: Mapping[str, Any]) -> dict[str, Any]:
    """The Plan page's inputs for planner.PlanRequest fields (the inverse of request_kwargs): what the
    advice's "Plan it" carries over, so Plan shows the same run the advice planned."""
    rank, quant = request.get("lora_rank"), request.get("quant")
    values: dict[str, Any] = {
        "precision": request.get("precision", PLAN_DEFAULTS["precision"]),
        "adapter": "full" if not rank else next((a for a, q in ADAPTER_QUANT.items() if q == quant), "lora"),
        "rank": int(rank or PLAN_DEFAULTS["rank"]),
        "seq": int(request.get("seq_len", DEFAULT_SEQ)),
        "batch": int(request.get("batch_size", DEFAULT_BATCH)),
        "ckpt": bool(request.get("grad_ckpt", True)),
        "optimizer": request.get("optimizer", "adamw"),
        "nodes": int(request.get("nodes", 1)),
        "zero": int(request.get("zero", 0)),
        "engine": request.get("engine", "deepspeed"),
        "offload": request.get("offload") or "none",
        "preref": bool(request.get("precompute_ref", False)),
        # the older chunked_loss switch is the planner's alias of "fused"
        "loss": request.get("loss") or ("fused" if request.get("chunked_loss") else ""),
        "gens": int(request.get("num_generations") or 0),
        "beta": request.get("beta"),
    }
    values.update({name: request.get(field) or SAME_AS_POLICY for name, field in COPY_MODEL_FIELDS.items()})
    return values


def setup_warnings(request: Mapping[str, Any]) -> list[str]:
    """What the plan holds that a run would trip on, one line each: a sequence longer than the model's
    context, bf16 planned on a GPU without bf16. An unloadable model gives none (planning reports it)."""
    out: list[str] = []
    try:
        spec = _planner.load_model(request["model"])
    except Exception:  # the planner's own error names it, where the plan is drawn
        spec = None
    context = getattr(spec, "max_position_embeddings", 0) or 0
    seq = int(request.get("seq_len", DEFAULT_SEQ))
    if context and seq > context:
        out.append(f"Sequence length {seq:,} is longer than the model's context of {context:,} tokens "
                   f"(max_position_embeddings): the model was not trained on positions past it.")
    gpu = request.get("gpu")
    precision = str(request.get("precision", ""))
    if gpu in _planner.GPUS and not _planner.GPUS[gpu].bf16 and "bf16" in precision:
        out.append(f"{gpu} has no bf16 support, and precision {precision} is planned: pick fp32, or a GPU "
                   "with bf16.")
    return out
