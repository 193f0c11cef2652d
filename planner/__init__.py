"""alignplan's memory planner: pure Python, never imports torch.

    import planner
    plan = planner.estimate(planner.PlanRequest(model="meta-llama/Llama-3.1-8B", method="dpo", gpu="H100-80GB"))
    plan.peak_bytes_per_gpu, plan.components, plan.fits, plan.min_gpus
"""

from planner.errors import PlannerError
from planner.estimate import (
    COMPONENTS,
    MAX_GPUS_PER_NODE,
    PHASES,
    Plan,
    PlanRequest,
    compare,
    estimate,
    min_gpus_for,
)
from planner.hardware import GIB, GPUS, GPUSpec, get_gpu, match_gpu_name
from planner.methods import (
    METHOD_IDS,
    METHODS,
    MethodProfile,
    ModelCopy,
    can_precompute_reference,
    get_profile,
)
from planner.models import ModelSpec, catalogue, catalogue_ids, load_model, spec_from_config
from planner.terms import PRECISIONS

__all__ = [
    "COMPONENTS", "GIB", "MAX_GPUS_PER_NODE", "GPUS", "can_precompute_reference", "METHODS", "METHOD_IDS", "PHASES", "PRECISIONS", "GPUSpec", "MethodProfile",
    "ModelCopy", "ModelSpec", "Plan", "PlanRequest", "PlannerError", "catalogue", "catalogue_ids", "compare",
    "estimate", "get_gpu", "get_profile", "load_model", "match_gpu_name", "min_gpus_for", "spec_from_config",
]
