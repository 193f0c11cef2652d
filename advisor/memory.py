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


def _request_default(req: Any, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(req) if f.name == name)


def _with(planner: Any, req: Any, **changes: Any) -> Any:
    return planner.PlanRequest(**{**request_dict(req), **changes})


def _estimate(planner: Any, req: Any, with_min_gpus: bool = True) -> Any:
    try:
        return planner.estimate(req, with_min_gpus=with_min_gpus)
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


# GPUs of one marketed size report slightly different memory (A100-80GB 80.0 GiB, H100-80GB 79.6 GiB):
# a GPU is "larger" only when it holds more than this beyond the current one, or the "fix" is the same
# GPU under another name and turns the verdict on a few hundred MiB, well inside the estimate's error.
SAME_SIZE_MARGIN_BYTES = 2 * GIB


def runner_unsharded_methods() -> dict[str, str]:
    """Methods our runner trains without ZeRO/FSDP sharding, and why: the method profiles' fact
    (planner.methods runner_unsharded), empty where the planner is absent."""
    if not planner_available():
        return {}
    import planner

    return {m: p.runner_unsharded for m, p in planner.METHODS.items() if p.runner_unsharded}


def _capacity(planner: Any, req: Any, capacity_bytes: int | None) -> int | None:
    """What the plan must fit in: the request's GPU's usable memory, else the given capacity (RAM on a CPU)."""
    if req.gpu is not None:
        return int(planner.get_gpu(req.gpu).usable_bytes)
    return capacity_bytes


def _suggestion(change: str, planner: Any, req: Any, capacity_bytes: int | None = None) -> dict[str, Any]:
    """One change, planned: the peak after it and its verdict against the request's GPU (or the capacity)."""
    plan = _estimate(planner, req, with_min_gpus=False)  # the verdict here, not the counts elsewhere
    total = int(req.gpus) * int(req.nodes)
    capacity = _capacity(planner, req, capacity_bytes)
    peak = int(plan.peak_bytes_per_gpu)
    return {
        "change": change,
        "method": req.method,
        "gpu": req.gpu,
        "gpus_total": total,
        "request": request_dict(req),
        "peak_bytes_per_gpu": peak,
        "peak_gib": _gib(peak),
        "capacity_bytes": capacity,
        "fits": capacity is not None and peak <= capacity,
        "partial": False,
    }


def _layout(n: int) -> dict[str, int]:
    """n GPUs as the planner counts them: up to 8 per node."""
    return {"gpus": min(n, 8), "nodes": math.ceil(n / 8) if n > 8 else 1}


def _keep(found: list[dict[str, Any]], base_peak: int) -> list[dict[str, Any]]:
    """The changes that fit; where none does, the ones that lower the peak, marked partial (they shrink
    the shortfall, and fix_line says by how much it is still short)."""
    fits = [s for s in found if s["fits"]]
    if fits:
        return fits
    partial = [s for s in found if s["peak_bytes_per_gpu"] < base_peak and s["capacity_bytes"] is not None]
    for s in partial:
        s["partial"] = True
    return sorted(partial, key=lambda s: s["peak_bytes_per_gpu"])


def suggestions_to_fit(fw: Framework, planner: Any, req: Any, fallbacks: list[str],
                       capacity_bytes: int | None = None) -> list[dict[str, Any]]:
    """Changes that make `req` fit, each planned with planner.estimate on the changed request: LoRA, QLoRA,
    precomputed reference log-probs, ZeRO-3 over more GPUs, a larger GPU, a method without a reference
    copy. Only changes that turn the verdict to "fits" are returned; where none does, the ones that
    shrink the shortfall, marked partial. On a CPU (req.gpu None) the verdict is against capacity_bytes
    (the RAM), and the GPU levers become "a GPU it fits on"."""
    d = fw.defaults_for_memory
    rank = int(d.get("lora_rank", 16))
    base_peak = int(_estimate(planner, req, with_min_gpus=False).peak_bytes_per_gpu)
    on_cpu = req.gpu is None
    found: list[dict[str, Any]] = []

    def consider(change: str, changed: Any) -> dict[str, Any]:
        s = _suggestion(change, planner, changed, capacity_bytes)
        found.append(s)
        return s

    if not req.lora_rank:
        lora = consider(f"train LoRA adapters (rank {rank}) instead of all weights", _with(planner, req, lora_rank=rank))
        if not lora["fits"] and not on_cpu:  # bitsandbytes' 4-bit base is a GPU kernel
            quant = d.get("quant", "nf4")
            consider(f"QLoRA: LoRA rank {rank} on a {quant}-quantised frozen base",
                     _with(planner, req, lora_rank=rank, quant=quant))

    if planner.can_precompute_reference(req.method) and not req.lora_rank and not req.precompute_ref:
        consider("precompute the reference log-probs once before training (no reference copy while training)",
                 _with(planner, req, precompute_ref=True))

    if on_cpu:
        if int(req.batch_size) > 1:
            consider(f"micro-batch 1 instead of {req.batch_size} (activations and logits shrink with it)",
                     _with(planner, req, batch_size=1))
        if int(req.seq_len) > 256:
            half = int(req.seq_len) // 2
            consider(f"max length {half} instead of {req.seq_len}", _with(planner, req, seq_len=half))
        for gid, spec in sorted(planner.GPUS.items(), key=lambda kv: kv[1].usable_bytes):
            # on a GPU the run trains in the runners' GPU precision (PlanRequest's default), fp32 without bf16
            on_gpu = _with(planner, req, gpu=gid, precision=_request_default(req, "precision") if spec.bf16
                           else "fp32")
            s = _suggestion(f"a machine with a GPU: 1 x {gid}", planner, on_gpu)
            if s["fits"]:  # against that GPU's memory, not this machine's RAM
                found.append(s)
                break
    else:
        current = int(req.gpus) * int(req.nodes)
        detail = planner.min_gpus_for(req, req.gpu) if hasattr(planner, "min_gpus_for") else None
        if detail is not None:
            n, zero = max(int(detail["count"]), current), int(detail["zero"])
            if zero > 0:
                unsharded = runner_unsharded_methods()
                where = (f", for the verl/OpenRLHF export (alignplan run --export verl|openrlhf; our runner "
                         f"trains {req.method} without sharding)" if req.method in unsharded else "")
                label = f"ZeRO-{zero} (fully sharded) over {'your ' if n == current else ''}{n} x {req.gpu}{where}"
                layout = {"gpus": req.gpus, "nodes": req.nodes} if n == current else _layout(n)
                consider(label, _with(planner, req, zero=zero, **layout))

        usable = planner.get_gpu(req.gpu).usable_bytes
        for gid, spec in sorted(planner.GPUS.items(), key=lambda kv: kv[1].usable_bytes):
            if spec.usable_bytes <= usable + SAME_SIZE_MARGIN_BYTES:
                continue
            s = _suggestion(f"a larger GPU: {current} x {gid}", planner, _with(planner, req, gpu=gid))
            if s["fits"]:
                found.append(s)
                break

    methods = getattr(planner, "METHODS", {})
    for m in fallbacks:
        if m in methods and m != req.method:
            name = fw.outcomes.get(m, {}).get("name", m)
            consider(f"switch to {name}: no reference model copy", _with(planner, req, method=m))
    return _keep(found, base_peak)


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
        if not any(s["fits"] for s in section["suggestions"]):
            notes.append("no single change tried (LoRA, QLoRA, precomputed reference, ZeRO-3 over more GPUs, "
                         "a larger GPU, a method without a reference) fits")
    return section


def fixes_for(req: Any, fallbacks: tuple[str, ...] = ("orpo", "simpo"),
              capacity_bytes: int | None = None) -> list[dict[str, Any]]:
    """Changes that make a planner.PlanRequest fit (each planned on the changed request), with the
    framework's defaults: the public entry for UIs (the Launch page's "will not fit" advice)."""
    import planner
    from advisor.framework import framework

    return suggestions_to_fit(framework(), planner, req, list(fallbacks), capacity_bytes=capacity_bytes)


def _available_ram() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def fixes_to_fit(request: dict[str, Any], on_gpu: bool, capacity_bytes: int | None = None) -> list[str]:
    """Changes that make a run fit, one line each (fix_line), every one planned by fixes_for on the changed
    request. On a GPU the verdict is against the GPU's usable memory; on a CPU against capacity_bytes,
    by default the RAM available now (what the runner's decision compares with). `request` is the
    PlanRequest as a dict (a "model_id" key is dropped); a request the planner cannot take gives no fixes."""
    if not request:
        return []
    try:
        import planner

        req = planner.PlanRequest(**{k: v for k, v in request.items() if k != "model_id"})
        if not on_gpu:
            req = req.replace(gpu=None)
            capacity_bytes = capacity_bytes or _available_ram()
        found = fixes_for(req, capacity_bytes=capacity_bytes)
    except Exception:  # the fix list is a help, never a reason to fail the page
        return []
    return [fix_line(s) for s in found]
