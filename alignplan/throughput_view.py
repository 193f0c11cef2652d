"""The Runs page's speed section (issue 14): a run's predicted and measured step time, tokens/s,
generation and MFU side by side, from the registry's speed columns and result.json's throughput block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (label, predicted column, measured column, unit format)
_ROWS = (
    ("step time (s)", "predicted_step_seconds", "measured_step_seconds", "{:.3g}"),
    ("tokens/s", "predicted_tokens_per_second", "measured_tokens_per_second", "{:,.0f}"),
    ("generation per step (s)", "predicted_generation_seconds", "measured_generation_seconds", "{:.3g}"),
    ("generated tokens/s", None, "measured_generation_tokens_per_second", "{:,.0f}"),
    ("MFU", "predicted_mfu", "measured_mfu", "{:.3g}"),
)


def speed_rows(rec) -> list[dict[str, Any]]:
    """Rows of predicted, measured and measured / predicted for a registry record; [] before any
    speed was measured. For times the ratio above 1 means slower than predicted."""
    out = []
    for label, pred_key, meas_key, fmt in _ROWS:
        pred = getattr(rec, pred_key, None) if pred_key else None
        meas = getattr(rec, meas_key, None)
        if pred is None and meas is None:
            continue
        out.append({"": label, "predicted": "–" if pred is None else fmt.format(pred),
                    "measured": "–" if meas is None else fmt.format(meas),
                    "measured / predicted": f"{meas / pred:.2f}" if pred and meas is not None else "–"})
    return out if any(r["measured"] != "–" for r in out) else []


def speed_caption(rec) -> str:
    """Where the prediction comes from: the device, the factors and their source (result.json)."""
    from runners.rundir.reader import RunDir

    block = (RunDir(Path(rec.run_dir)).result() or {}).get("throughput") or {}
    pred = block.get("predicted") if isinstance(block.get("predicted"), dict) else {}
    launch = block.get("predicted_at_launch") if isinstance(block.get("predicted_at_launch"), dict) else {}
    parts = [f"on {rec.device_type}"]
    if block.get("steps_measured") is not None:
        parts.append(f"medians of {block['steps_measured']} steps after {block.get('warmup_steps_excluded', 2)} "
                     "warm-up steps")
    if pred.get("seq_len"):
        parts.append(f"predicted at the run's mean length of {pred['seq_len']} tokens"
                     + (f" (at launch, {launch['seq_len']} tokens: {launch['step_time_s']:.3g} s/step)"
                        if launch.get("seq_len") and launch.get("step_time_s") else ""))
    if pred.get("mfu_source"):
        parts.append(f"MFU {pred['mfu']:.3g}: {pred['mfu_source']}")
    return "; ".join(parts) + ". Calibrate the planner from runs like this one: `alignplan calibrate`."


def render_throughput(rec) -> None:
    """The section: nothing until the run has measured its speed."""
    import streamlit as st

    rows = speed_rows(rec)
    if not rows:
        return
    with st.expander("Speed: predicted vs measured"):
        st.dataframe(rows, hide_index=True, key=f"speed_{rec.id}")
        st.caption(speed_caption(rec))
