"""Predicted and measured speed of a run (issue 14): the time estimate written at launch (plan.json's
`time`) and the `throughput` block of result.json, side by side as predicted and measured memory are.

A *step* is what metrics.jsonl counts: an optimizer step of a TRL recipe (per_device_train_batch_size x
gradient_accumulation_steps examples per process), a PPO iteration (a rollout of
per_device_train_batch_size prompts per process, then its updates), or a batch of a generation stage.
The prediction times the examples of one step with planner.timecost on the run's device: its GPU type,
or "cpu" (planner.hardware.host_cpu). Pure Python: the recipes call it after training, without torch.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

WARMUP_STEPS = 2  # steps left out of the medians: the first allocations, lazy imports, caches filling


def device_type(decision: dict[str, Any], request: dict[str, Any]) -> str:
    """The device a run's speed is timed and calibrated for: "cpu" or the planner's GPU id."""
    if decision.get("kind") == "cpu" or not request.get("gpu"):
        return "cpu"
    return str(request["gpu"])


def examples_per_step(request: dict[str, Any], hparams: dict[str, Any], processes: int) -> int:
    """Examples (data rows) one logged step takes over all processes."""
    if request.get("rollout_batch_size"):  # PPO: one iteration is one rollout
        per = int(request["rollout_batch_size"])
    else:
        try:
            accumulation = max(1, int(hparams.get("gradient_accumulation_steps", 1) or 1))
        except (TypeError, ValueError):
            accumulation = 1
        per = int(request.get("batch_size") or 1) * accumulation
    return max(1, per * max(1, processes))


def predict(request: dict[str, Any], device: str, examples: int, *, seq_len: int | None = None,
            completion_len: int | None = None) -> dict[str, Any]:
    """planner.timecost's time for `examples` examples (one step) of this request on `device`;
    seq_len / completion_len replace the request's (the lengths a run actually had)."""
    import planner
    from planner import timecost

    kw = {k: v for k, v in request.items() if k != "model_id"}
    kw["model"] = planner.load_model(str(request["model"]))
    req = planner.PlanRequest(**kw)
    if device == "cpu":  # the whole CPU is one device; its processes share its cores
        req = req.replace(gpu=None, gpus=1, nodes=1, zero=0)
    else:
        req = req.replace(gpu=device)
    if seq_len:
        req = req.replace(seq_len=seq_len)
    if completion_len or (seq_len and req.completion_len):
        req = req.replace(completion_len=max(1, min(completion_len or req.completion_len, req.seq_len)))
    t = timecost.estimate_time(req, timecost.Work(examples=examples, seq_len=req.seq_len,
                                                  source="one step of this run"), device)
    stage = t["stages"][0]
    gen = [p for p in stage["phases"] if p["name"] == "generation"]
    gen_s = sum(p["seconds"] for p in gen)
    gen_tokens = sum(examples * p["detail"]["contexts_per_example"] * p["detail"]["new_tokens_per_context"]
                     for p in gen)
    seconds = stage["seconds"]
    return {
        "device": t["gpu"], "examples_per_step": examples, "seq_len": stage["seq_len"],
        "sequences_per_example": stage["sequences_per_example"],
        "step_time_s": seconds, "generation_time_s": gen_s if gen else None,
        "tokens_per_second": stage["tokens"] / seconds if seconds else None,
        "generation_tokens_per_second": gen_tokens / gen_s if gen_s else None,
        "flops_per_step": stage["flops"], "peak_flops": t["peak_flops"], "devices": t["gpus"],
        "mfu": t["mfu"], "mfu_source": t["mfu_source"],
        "decode_bw_fraction": t["decode_bw_fraction"], "decode_bw_source": t["decode_bw_source"],
    }


def launch_estimate(request: dict[str, Any], decision: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """plan.json's `time`: the predicted step of this run at the request's lengths (max_length), or
    {"skipped": why} when the planner cannot time it."""
    device = device_type(decision, request)
    try:
        return predict(request, device, examples_per_step(request, hparams, int(decision.get("num_processes") or 1)))
    except Exception as exc:  # noqa: BLE001 - a run must launch even when its time cannot be predicted
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", "device": device}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(rows: list[dict[str, Any]], warmup: int = WARMUP_STEPS) -> dict[str, Any]:
    """Medians over the training rows after the first `warmup` steps: step time, tokens/s, generation
    time and generated tokens/s per step, tokens per step and the mean response length. A generation
    stage's rows (batch_seconds: its step counter counts prompts) are batches: its step is a batch, and
    its first `warmup` batches are left out."""
    rows = [r for r in rows if isinstance(r, dict) and not any(str(k).startswith("eval_") for k in r)
            and isinstance(r.get("step"), int | float)]
    if any("batch_seconds" in r for r in rows):
        rows = [{**r, "step_time_s": r.get("batch_seconds")} for r in rows[warmup:]]
    else:
        rows = [r for r in rows if r["step"] > warmup]

    def col(key):
        return [v for v in (_num(r.get(key)) for r in rows) if v is not None and v > 0]

    per_step_tokens = [t * s for t, s in ((_num(r.get("tokens_per_second")), _num(r.get("step_time_s")))
                                          for r in rows) if t and s]
    return {
        "steps_measured": len(rows),
        "step_time_s": _median(col("step_time_s")),
        "tokens_per_second": _median(col("tokens_per_second")),
        "tokens_per_step": _median(per_step_tokens),
        "generation_time_s": _median(col("generation_time_s")),
        "generation_tokens_per_second": _median(col("generation_tokens_per_second")),
        "response_length": _median(col("response_length")),
    }


def throughput(run_dir: str | Path, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """result.json's `throughput` block for a run directory: measured medians (measure()), the
    prediction written at launch, the prediction at the lengths the run actually had (what calibration
    compares with), and the MFU achieved: the step's model FLOPs (planner.flops at those lengths) /
    (step time x devices x the device's peak)."""
    run_dir = Path(run_dir)
    plan = _read(run_dir / "plan.json")
    if rows is None:
        rows = _rows(run_dir / "metrics.jsonl")
    m = measure(rows)
    launch = plan.get("time") if isinstance(plan.get("time"), dict) else None
    out: dict[str, Any] = {**m, "warmup_steps_excluded": WARMUP_STEPS, "predicted_at_launch": launch}
    request = plan.get("request")
    if not isinstance(request, dict) or not launch or "skipped" in launch:
        out["predicted"] = None
        out["device_type"] = launch.get("device") if launch else None
        return out
    device = launch["device"]
    out["device_type"] = device
    seq_len = completion = None
    examples = int(launch["examples_per_step"])
    seqs = int(launch.get("sequences_per_example") or 1)
    if m["response_length"]:
        completion = max(1, round(m["response_length"]))
    if m["tokens_per_step"] and launch.get("generation_time_s") is None:
        # a training step: its tokens over its sequences is the mean length it trained on
        seq_len = max(1, round(m["tokens_per_step"] / (examples * seqs)))
    try:
        pred = predict(request, device, examples, seq_len=seq_len, completion_len=completion) \
            if (seq_len or completion) else dict(launch)
    except Exception as exc:  # noqa: BLE001 - the measurements are kept whatever the planner says
        pred = {"skipped": f"{type(exc).__name__}: {exc}"}
    out["predicted"] = pred
    if m["step_time_s"] and pred.get("flops_per_step") and pred.get("peak_flops"):
        out["mfu_achieved"] = pred["flops_per_step"] / (m["step_time_s"] * pred["devices"] * pred["peak_flops"])
    else:
        out["mfu_achieved"] = None
    return out


def registry_fields(block: dict[str, Any] | None) -> dict[str, Any]:
    """The registry's speed columns from a throughput block (runners.registry.store)."""
    if not isinstance(block, dict):
        return {}
    pred = block.get("predicted") if isinstance(block.get("predicted"), dict) else {}
    fields = {
        "device_type": block.get("device_type"),
        "measured_step_seconds": _num(block.get("step_time_s")),
        "measured_tokens_per_second": _num(block.get("tokens_per_second")),
        "measured_generation_seconds": _num(block.get("generation_time_s")),
        "measured_generation_tokens_per_second": _num(block.get("generation_tokens_per_second")),
        "measured_mfu": _num(block.get("mfu_achieved")),
        "predicted_step_seconds": _num(pred.get("step_time_s")),
        "predicted_tokens_per_second": _num(pred.get("tokens_per_second")),
        "predicted_generation_seconds": _num(pred.get("generation_time_s")),
        "predicted_mfu": _num(pred.get("mfu")),
        "predicted_decode_bw_fraction": _num(pred.get("decode_bw_fraction")),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _rows(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out
