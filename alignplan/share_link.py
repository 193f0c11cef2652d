"""A shared link: the query parameters that carry the app's inputs, both ways.

A bad parameter never stops a page: it is reported (one line each) and the default stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignplan.inputs import (
    ADAPTERS,
    BOOL_INPUTS,
    COPY_MODEL_FIELDS,
    ENGINES,
    GPU_KEY,
    GPUS_KEY,
    INT_LIMITS,
    LOSSES,
    MODEL_KEY,
    OFFLOADS,
    OPTIMIZERS,
    PLAN_DEFAULTS,
    PRECISIONS,
    SHARED_DEFAULTS,
    ZERO_STAGES,
)
from planner.parsing import parse_bool

# What each numeric link parameter is, in the page's words.
_NUMBER_NAMES = {"rank": "LoRA rank", "seq": "sequence length", "batch": "micro-batch", "nodes": "nodes",
                 "gens": "generations per prompt", GPUS_KEY: "GPUs per node", "zero": "ZeRO stage", "beta": "beta"}


def _parse_int(name: str, raw: str) -> int:
    lo, hi = INT_LIMITS.get(name, (0, 2**31))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{_NUMBER_NAMES.get(name, name)} must be a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{_NUMBER_NAMES.get(name, name)} must be a whole number from {lo} to {hi}, not {value}")
    return value


def inputs_from_query(params: Mapping[str, str], methods: Mapping[str, Any] | None = None,
                      gpus: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Read the plan inputs a shared link carries.

    Returns (values for the names present and valid, one problem line per ignored parameter). A bad
    parameter never stops the page: it is reported and the default stays.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    choices = {"precision": PRECISIONS, "adapter": ADAPTERS, "offload": OFFLOADS, "optimizer": OPTIMIZERS,
               "engine": ENGINES, "loss": LOSSES[1:]}
    for name, raw in params.items():
        raw = str(raw)
        try:
            if name == "methods":
                ids = [m for m in (x.strip() for x in raw.split(",")) if m]
                unknown = [m for m in ids if methods is not None and m not in methods]
                if unknown:
                    raise ValueError(f"unknown method(s) {', '.join(unknown)}")
                values[name] = ids
            elif name in ("rank", "seq", "batch", "nodes", "gens", GPUS_KEY):
                values[name] = _parse_int(name, raw)
            elif name == "zero":
                stage = int(raw) if raw.strip().lstrip("-").isdigit() else None
                if stage not in ZERO_STAGES:
                    raise ValueError(f"ZeRO stage must be one of {', '.join(map(str, ZERO_STAGES))}")
                values[name] = stage
            elif name == "beta":
                try:
                    beta = float(raw)
                except ValueError:
                    beta = float("nan")
                if not (beta >= 0 and beta < float("inf")):
                    raise ValueError("beta must be a number of 0 or more")
                values[name] = beta
            elif name in BOOL_INPUTS:
                values[name] = parse_bool(raw, name)
            elif name in COPY_MODEL_FIELDS:  # a model id, a special ("rule", "shared", "api") or "" (the policy's)
                values[name] = raw.strip()
            elif name in choices:
                if raw not in choices[name]:
                    raise ValueError(f"accepted: {', '.join(choices[name])}")
                values[name] = raw
            elif name == GPU_KEY:
                if gpus is not None and raw not in gpus:
                    raise ValueError(f"unknown GPU, kept {SHARED_DEFAULTS[GPU_KEY]}; accepted: {', '.join(gpus)}")
                values[name] = raw
            elif name == MODEL_KEY:
                if not raw.strip():
                    raise ValueError("empty model id")
                values[name] = raw.strip()
            # other parameters (from other pages or tools) are not ours: ignore them silently
        except ValueError as exc:
            problems.append(f"link parameter {name}={raw!r} ignored: {exc}")
    return values, problems


def query_from_inputs(values: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters that reproduce these inputs: only the ones that differ from the defaults."""
    defaults = {**PLAN_DEFAULTS, **SHARED_DEFAULTS}
    out: dict[str, str] = {}
    for name, default in defaults.items():
        if name not in values or values[name] == default or values[name] is None:
            continue
        value = values[name]
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out
