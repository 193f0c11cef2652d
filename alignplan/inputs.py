"""The app's inputs: the sidebar's shared choices (model, GPU type, GPU count) and the Plan page's
setup, with their widget keys, defaults, accepted choices and limits, and the planner request built
from them. Plain data and one plain function: no Streamlit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import planner as _planner  # pure Python, never imports torch
from planner import terms as _planner_terms

# Session-state keys of the sidebar widgets (app.py); every page reads them.
MODEL_KEY = "model"
GPU_KEY = "gpu"
GPUS_KEY = "gpus"

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_GPU = "H100-80GB"

# Plan page inputs: name -> default. The names are also the query-parameter names and, prefixed
# with "plan_", the widget keys.
PLAN_DEFAULTS: dict[str, Any] = {
    "methods": ["dpo", "ppo"],
    "precision": "bf16-kahan",
    "adapter": "full",  # full | lora | qlora
    "rank": 16,
    "seq": 2048,
    "batch": 1,
    "ckpt": True,
    "optimizer": "adamw",
    "nodes": 1,
    "zero": 0,
    "engine": "deepspeed",
    "offload": "none",
}
SHARED_DEFAULTS: dict[str, Any] = {MODEL_KEY: DEFAULT_MODEL, GPU_KEY: DEFAULT_GPU, GPUS_KEY: 1}

ADAPTERS = ("full", "lora", "qlora")
PRECISIONS = tuple(_planner.PRECISIONS)  # the planner's ids, shared with the runners
OPTIMIZERS = tuple(_planner_terms.OPTIMIZERS)
OFFLOADS = ("none", "optimizer", "params")  # "none" stands for the planner's offload=None
ENGINES = ("deepspeed", "fsdp")
ZERO_STAGES = (0, 1, 2, 3)

# The same ranges as the widgets' (a value outside a widget's range would fail the widget).
MAX_GPUS_PER_NODE = _planner.MAX_GPUS_PER_NODE
INT_LIMITS = {"rank": (1, 1024), "seq": (1, 1_048_576), "batch": (1, 4096), "nodes": (1, 1024),
              GPUS_KEY: (1, MAX_GPUS_PER_NODE)}


def request_kwargs(values: Mapping[str, Any], model: str, gpu: str, gpus: int) -> dict[str, Any]:
    """planner.PlanRequest keyword arguments (without the method) for the plan inputs."""
    adapter = values.get("adapter", "full")
    offload = values.get("offload", "none")
    return {
        "model": model,
        "seq_len": int(values.get("seq", PLAN_DEFAULTS["seq"])),
        "batch_size": int(values.get("batch", PLAN_DEFAULTS["batch"])),
        "precision": values.get("precision", PLAN_DEFAULTS["precision"]),
        "lora_rank": int(values.get("rank", PLAN_DEFAULTS["rank"])) if adapter in ("lora", "qlora") else None,
        "quant": "nf4" if adapter == "qlora" else None,
        "grad_ckpt": bool(values.get("ckpt", True)),
        "optimizer": values.get("optimizer", "adamw"),
        "zero": int(values.get("zero", 0)),
        "engine": values.get("engine", "deepspeed"),
        "offload": None if offload == "none" else offload,
        "gpu": gpu,
        "gpus": int(gpus),
        "nodes": int(values.get("nodes", 1)),
    }
