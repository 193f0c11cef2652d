"""The hardware check: the planner's per-GPU peak for the recommended method and the runner-up, and, when the
recommendation does not fit, the changes that make it fit, each computed by the planner on a modified
request (never guessed).

The planner is imported lazily: the advisor works (without this section) where it is absent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from advisor.framework import AdvisorError, Framework
from advisor.render import fix_line

GIB = 2**30


def planner_available() -> bool:
    try:
        import planner  # noqa: F401
    except ImportError:
        return False
    return True


def _gib(n: int | None) -> float | None:
    return None if n is None else round(n / GIB, 2)


def request_dict(req: Any) -> dict[str, Any]:
    """A PlanRequest as a plain dict that PlanRequest(**d) rebuilds."""
    if dataclasses.is_dataclass(req):
        return {f.name: getattr(req, f.name) for f in dataclasses.fields(req)}
    if hasattr(req, "model_dump"):
        return req.model_dump()
    return dict(vars(req))


def _with(planner: Any, req: Any, **changes: Any) -> Any:
    return planner.PlanRequest(**{**request_dict(req), **changes})


def _estimate(planner: Any, req: Any) -> Any:
    try:
        return planner.estimate(req)
    except ValueError as exc:  # PlannerError names the field; keep that for the user
        raise AdvisorError(str(exc), field=getattr(exc, "field", None)) from None


def _entry(role: str, method: str, plan: Any) -> dict[str, Any]:
    gpu = getattr(plan, "gpu", None)
    min_gpus = (getattr(plan, "min_gpus", None) or {}).get(gpu) if gpu else None
    return {
        "role": role,
        "method": method,
        "peak_bytes_per_gpu": int(plan.peak_bytes_per_gpu),
        "peak_gib": _gib(plan.peak_bytes_per_gpu),
        "peak_phase": plan.peak_phase,
        "fits": plan.fits,
        "headroom_bytes": plan.headroom_bytes,
        "headroom_gib": _gib(plan.headroom_bytes),
        "min_gpus_of_this_type": min_gpus,
    }


def _suggestion(change: str, planner: Any, req: Any) -> dict[str, Any]:
    plan = _estimate(planner, req)
    total = int(req.gpus) * int(req.nodes)
    return {
        "change": change,
        "method": req.method,
        "gpu": req.gpu,
        "gpus_total": total,
        "request": request_dict(req),
        "peak_bytes_per_gpu": int(plan.peak_bytes_per_gpu),
        "peak_gib": _gib(plan.peak_bytes_per_gpu),
        "fits": bool(plan.fits),
    }


def _layout(n: int) -> dict[str, int]:
    """n GPUs as the planner counts them: up to 8 per node."""
    return {"gpus": min(n, 8), "nodes": math.ceil(n / 8) if n > 8 else 1}


def suggestions_to_fit(fw: Framework, planner: Any, req: Any, fallbacks: list[str]) -> list[dict[str, Any]]:
    """Changes that make `req` fit, each checked with planner.estimate: LoRA, QLoRA, ZeRO-3 over more GPUs,
    a larger GPU, a method without a reference copy. Only changes that fit are returned."""
    d = fw.defaults_for_memory
    rank = int(d.get("lora_rank", 16))
    out: list[dict[str, Any]] = []

    lora = _suggestion(f"train LoRA adapters (rank {rank}) instead of all weights", planner,
                       _with(planner, req, lora_rank=rank))
    if lora["fits"]:
        out.append(lora)
    else:
        quant = d.get("quant", "nf4")
        qlora = _suggestion(f"QLoRA: LoRA rank {rank} on a {quant}-quantised frozen base", planner,
                            _with(planner, req, lora_rank=rank, quant=quant))
        if qlora["fits"]:
            out.append(qlora)

    if planner.can_precompute_reference(req.method) and not req.lora_rank and not req.precompute_ref:
        pre = _suggestion("precompute the reference log-probs once before training (no reference copy while "
                          "training)", planner, _with(planner, req, precompute_ref=True))
        if pre["fits"]:
            out.append(pre)

    current = int(req.gpus) * int(req.nodes)
    detail = planner.min_gpus_for(req, req.gpu) if hasattr(planner, "min_gpus_for") else None
    if detail is not None:
        n, zero = max(int(detail["count"]), current), int(detail["zero"])
        if zero > 0:
            label = f"ZeRO-{zero} (fully sharded) over {'your ' if n == current else ''}{n} x {req.gpu}"
            layout = {"gpus": req.gpus, "nodes": req.nodes} if n == current else _layout(n)
            s = _suggestion(label, planner, _with(planner, req, zero=zero, **layout))
            if s["fits"]:
                out.append(s)

    usable = planner.GPUS[req.gpu].usable_bytes
    for gid, spec in sorted(planner.GPUS.items(), key=lambda kv: kv[1].usable_bytes):
        if spec.usable_bytes <= usable:
            continue
        s = _suggestion(f"a larger GPU: {current} x {gid}", planner, _with(planner, req, gpu=gid))
        if s["fits"]:
            out.append(s)
            break

    methods = getattr(planner, "METHODS", {})
    for m in fallbacks:
        if m in methods and m != req.method:
            name = fw.outcomes.get(m, {}).get("name", m)
            s = _suggestion(f"switch to {name}: no reference model copy", planner, _with(planner, req, method=m))
            if s["fits"]:
                out.append(s)
    return out


def memory_section(
    fw: Framework,
    *,
    method: str,
    runner_up: str,
    fallbacks: list[str],
    preset_method: str,
    model: str,
    gpu: str | None,
    gpus: int | None,
    assumed: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Per-GPU peaks (planner defaults for sequence length, batch and precision) for the recommendation and
    the runner-up on the user's hardware, with fit verdicts and, if needed, what makes it fit."""
    if not planner_available():
        return {"available": False, "reason": "the planner package is not installed; no memory check"}
    import planner

    d = fw.defaults_for_memory
    notes: list[str] = []
    if gpu is None:
        gpu = d.get("gpu", "A100-80GB")
        assumed = tuple(assumed) + ("gpu",)
    gpus = int(gpus or d.get("gpus", 1))
    if "gpu" in assumed:
        notes.append(f"GPU not given: assumed {gpu}")
    if "gpus" in assumed and gpus == 1:
        notes.append("GPU count not given: assumed 1")
    methods = getattr(planner, "METHODS", {})

    def planner_id(m: str) -> str:
        return m if m in methods else preset_method

    try:
        base = planner.PlanRequest(model=model, method=planner_id(method), gpu=gpu, gpus=gpus, nodes=1)
    except ValueError as exc:
        raise AdvisorError(str(exc), field=getattr(exc, "field", None)) from None
    rec_plan = _estimate(planner, base)
    up_req = _with(planner, base, method=planner_id(runner_up))
    up_plan = _estimate(planner, up_req)
    entries = [_entry("recommended", base.method, rec_plan), _entry("runner_up", up_req.method, up_plan)]
    section: dict[str, Any] = {
        "available": True,
        "model": model,
        "gpu": gpu,
        "gpus": gpus,
        "setup": {k: v for k, v in request_dict(base).items() if k not in ("model", "method", "gpu", "gpus")},
        "methods": entries,
        "recommended_fits": bool(rec_plan.fits),
        "suggestions": [],
        "notes": notes,
    }
    if not rec_plan.fits:
        section["suggestions"] = suggestions_to_fit(fw, planner, base, fallbacks)
        if not section["suggestions"]:
            notes.append("no single change tried (LoRA, QLoRA, ZeRO-3 over more GPUs, a larger GPU) fits")
    return section


def fixes_for(req: Any, fallbacks: tuple[str, ...] = ("orpo", "simpo")) -> list[dict[str, Any]]:
    """Changes that make a planner.PlanRequest fit (each checked with the planner), with the
    framework's defaults: the public entry for UIs (the Launch page's "will not fit" advice)."""
    import planner
    from advisor.framework import framework

    return suggestions_to_fit(framework(), planner, req, list(fallbacks))


# Plain levers for a run on a CPU (nothing for the planner to check against).
CPU_FIXES = ("turn on LoRA adapters (the frozen base needs no gradients or optimizer states)",
             "lower the batch per device or the max length (activations and logits shrink with both)",
             "use a machine with a GPU (see the Plan page for which)")


def fixes_to_fit(request: dict[str, Any], on_gpu: bool) -> list[str]:
    """Changes that make a run fit, one line each: fixes_for's planner-checked suggestions on a GPU
    (fix_line: "<change>: <N> GiB per GPU"), plain levers on a CPU. `request` is the PlanRequest as a
    dict (a "model_id" key is dropped); a request the planner cannot take gives no fixes."""
    if not request:
        return []
    if not on_gpu:
        return list(CPU_FIXES)
    try:
        import planner

        found = fixes_for(planner.PlanRequest(**{k: v for k, v in request.items() if k != "model_id"}))
    except Exception:  # the fix list is a help, never a reason to fail the page
        return []
    return [fix_line(s) for s in found]
